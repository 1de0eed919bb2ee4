"""The evaluation of a model with the caption modality (docs/captions.md), every number per stage of the chains and
by both judges:

    python -m model.caption_eval --checkpoint runs/captions/full/final --mnist ../shared/data/mnist.npz \\
        --out runs/captions/eval/full

- caption -> image coherence: images generated from each test tuple's caption alone; the fraction of generated
  images (every modality) that a judge reads as the caption's digit. Held-in wordings (the templates of training)
  and held-out wordings (never seen in training) are reported apart.
- image -> caption coherence: captions generated from all the tuple's images; the fraction that name the tuple's
  digit (a caption naming no digit, or two different ones, counts as wrong).
- attribute agreement: a caption's thickness / slant / size word against the measured attributes of the digit of
  modality 0 (model.captions.measure, the same thresholds as the captions of the data): caption -> image (the word
  typed, the generated digit measured) and the reverse (the word generated, the observed digit measured), over the
  captions that name the attribute. Chance is the agreement of a word drawn independently of the digit with the
  same frequencies: sum over the classes of p(word) * p(measured).
- joint coherence: prior samples; the fraction whose images the judge reads as one digit, and the fraction whose
  generated caption also names that digit.
- stage changes: what each stage changes in caption -> image and image -> caption coherence, paired (the same test
  tuples through the stages), with a 95 % bootstrap interval over the tuples (model.metrics.bootstrap_interval).

Outputs in --out: caption_metrics.json (every number) and caption_metrics.md (the tables). A 'vae' checkpoint
(variant from its train_config.json) is scored without the EBM stages: the MoE VAE baseline.
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .captions import ATTRIBUTE_WORDS, ATTRIBUTES, DIGIT_WORDS, NUMERALS, TEMPLATES, Tokenizer, attribute_classes, \
    build_captions, ink_mask, measure
from .cli import ConfigParser, HelpFormatter, add_dataclass_args
from .config import DATASETS, VARIANTS
from .device import DeviceError
from .langevin import stage_title
from .metrics import bootstrap_interval, digit_entropy
from .report import write_report
from .sampler import PRIORS, seeded_generator

WORDINGS = ("held_in", "held_out")
JUDGES = ("A", "B")
DIGIT_OF = {**{w: d for d, w in enumerate(DIGIT_WORDS)}, **{w: d for d, w in enumerate(NUMERALS)}}
# the word (or last word of a two-word phrase) that names each attribute class
CLASS_OF = [{words.split()[-1]: c for c, words in enumerate(ATTRIBUTE_WORDS[a])} for a in ATTRIBUTES]


# ---------------------------------------------------------------- reading captions and digits

def _words(text: str) -> list[str]:
    return text.lower().replace(",", " ").split()


def caption_digit(text: str) -> int:
    """The digit a caption names (its digit word or numeral), or -1 if it names none or two different ones."""
    named = {DIGIT_OF[w] for w in _words(text) if w in DIGIT_OF}
    return named.pop() if len(named) == 1 else -1


def digit_position(text: str) -> int:
    """The token position (model.captions.Tokenizer: commas are tokens) of the caption's first digit word or
    numeral, -1 if it names none: where a reader of the caption finds the digit."""
    return next((i for i, w in enumerate(Tokenizer().split(text)) if w in DIGIT_OF), -1)


def caption_attributes(text: str) -> np.ndarray:
    """The attribute classes a caption names, int [3] (thickness, slant, size; model.captions.ATTRIBUTE_WORDS),
    -1 where it names none or contradicts itself ("left" and "right")."""
    words = _words(text)
    out = np.full(3, -1)
    for a, classes in enumerate(CLASS_OF):
        named = {classes[w] for w in words if w in classes}
        out[a] = named.pop() if len(named) == 1 else -1
    return out


def measured_attributes(images: torch.Tensor, labels) -> np.ndarray:
    """The attribute classes int [B, 3] of the digits of images [B, 3, 28, 28] in [0, 1] (one modality), measured
    as the data's captions are (ink mask, ``measure``, thresholds; size by the class of ``labels``)."""
    mask = ink_mask(images.detach().cpu().numpy())
    return attribute_classes(measure(mask), np.asarray(labels)).astype(np.int64)


def agreement(said: np.ndarray, measured: np.ndarray) -> dict:
    """Agreement of attribute classes ``said`` [N] (-1: not named, left out) with ``measured`` [N]:
    {"agreement", "chance", "n"}. Chance: sum_c p(said = c) p(measured = c) over the named pairs, the agreement of
    words drawn independently of the digits with the same frequencies."""
    said, measured = np.asarray(said), np.asarray(measured)
    keep = said >= 0
    n = int(keep.sum())
    if n == 0:
        return {"agreement": None, "chance": None, "n": 0}
    s, m = said[keep], measured[keep]
    chance = sum(float((s == c).mean() * (m == c).mean()) for c in range(3))
    return {"agreement": float((s == m).mean()), "chance": chance, "n": n}


# ---------------------------------------------------------------- the metrics

class Tally:
    """Per-stage sums of hits and counts, per-tuple hit rates, and per-stage lists of attribute pairs."""

    def __init__(self):
        self.hits, self.pairs, self.digits, self.rows = {}, {}, {}, {}

    def add(self, stage: str, key: str, right: torch.Tensor | np.ndarray):
        """Hits ``right`` [B] or [B, K] (K images per tuple) of B tuples at ``stage``."""
        right = np.asarray(right, np.float64)
        h = self.hits.setdefault(stage, {}).setdefault(key, [0.0, 0])
        h[0] += float(right.sum())
        h[1] += int(right.size)
        self.rows.setdefault(key, {}).setdefault(stage, []).append(right.reshape(len(right), -1).mean(1))

    def changes(self, key: str, n_boot: int = 2000, seed: int = 0) -> dict:
        """{stage: {"change", "low", "high"}} for every stage after the first: the mean over tuples of the change
        of ``key``'s per-tuple hit rate from the stage before, and its 95 % bootstrap interval."""
        rows = {stage: np.concatenate(v) for stage, v in self.rows.get(key, {}).items()}
        stages, out = list(rows), {}
        for before, stage in zip(stages, stages[1:]):
            d = rows[stage] - rows[before]
            low, high = bootstrap_interval(d, n_boot, seed)
            out[stage] = {"change": float(d.mean()), "low": low, "high": high}
        return out

    def add_pairs(self, stage: str, said: np.ndarray, measured: np.ndarray):
        p = self.pairs.setdefault(stage, [[], []])
        p[0].append(said)
        p[1].append(measured)

    def add_digits(self, stage: str, key: str, digits: torch.Tensor):
        """Count the digits ``digits`` (any shape, 0..9) read at ``stage`` under ``key``."""
        h = self.digits.setdefault(stage, {}).setdefault(key, torch.zeros(10))
        h += torch.bincount(torch.as_tensor(digits).flatten(), minlength=10).float()

    def digit_counts(self, stage: str) -> dict:
        """{key: {"counts": [10], "entropy": normalised entropy (model.metrics.digit_entropy)}}."""
        return {k: {"counts": h.int().tolist(), "entropy": digit_entropy(h)}
                for k, h in self.digits.get(stage, {}).items()}

    def rates(self, stage: str) -> dict:
        return {k: v[0] / v[1] if v[1] else None for k, v in self.hits.get(stage, {}).items()}

    def attributes(self, stage: str) -> dict:
        said, measured = (np.concatenate(p) for p in self.pairs[stage])
        return {a: agreement(said[:, i], measured[:, i]) for i, a in enumerate(ATTRIBUTES)}


def _stages(out) -> list[str]:
    return [s for s in out if s != "final"]


@torch.no_grad()
def caption_to_image(sampler, judges: dict, test, idx, wording: str, seed: int = 0, batch: int = 250,
                     progress: bool = False, boot: int = 2000) -> dict:
    """Images from each tuple's caption alone (``wording``: held_in = the stored test captions, held_out = the
    held-out templates): {stage: {"coherence": {judge: fraction}, "templates": {template: {judge: fraction, "n":
    captions, "digit_positions": [token positions of the digit word]}}, "digits": {judge: {"counts",
    "entropy"}, judge + "_coherent": ... of the images read as the caption's digit}, "attributes": {attribute:
    agreement}, "change": {judge: change from the stage before (Tally.changes), after the first stage}}}."""
    labels = test.y.numpy()
    texts, templates = (test.captions.text, test.captions.template) if wording == "held_in" else build_captions(
        labels, test.captions.classes, split="test", held_out=True)
    names = list(TEMPLATES)
    tally, positions, count = Tally(), {}, dict.fromkeys(names, 0)
    for i in tqdm(range(0, len(idx), batch), desc=f"caption -> image ({wording})", disable=not progress):
        b = np.asarray(idx[i:i + batch])
        y = torch.as_tensor(labels[b])
        said = np.stack([caption_attributes(t) for t in texts[b]])
        used = {names[t]: np.asarray(templates[b]) == t for t in np.unique(templates[b])}
        for name, rows in used.items():
            positions.setdefault(name, set()).update(digit_position(t) for t in texts[b][rows])
            count[name] += int(rows.sum())
        out = sampler.conditional(None, None, text=sampler.encode(list(texts[b])),
                                  generator=seeded_generator(seed, 11, WORDINGS.index(wording), i))
        for stage in _stages(out):
            x = out[stage].cpu()
            for j, clf in judges.items():
                digit = clf.predict(x)[0]
                right = (digit == y[:, None]).numpy()
                tally.add(stage, j, right)
                tally.add_digits(stage, j, digit)
                tally.add_digits(stage, f"{j}_coherent", digit[torch.as_tensor(right)])
                for name, rows in used.items():
                    tally.add(stage, f"{j}@{name}", right[rows])
            tally.add_pairs(stage, said, measured_attributes(x[:, 0], y.numpy()))
    res, changes = {}, {j: tally.changes(j, boot, seed) for j in judges}
    for s in tally.hits:
        rates = tally.rates(s)
        res[s] = {"coherence": {j: rates[j] for j in judges},
                  **({"change": {j: changes[j][s] for j in judges}} if s in changes[next(iter(judges))] else {}),
                  "templates": {name: {**{j: rates[f"{j}@{name}"] for j in judges}, "n": count[name],
                                       "digit_positions": sorted(positions[name])} for name in names if count[name]},
                  "digits": tally.digit_counts(s), "attributes": tally.attributes(s)}
    return res


@torch.no_grad()
def image_to_caption(sampler, test, idx, seed: int = 0, batch: int = 250, progress: bool = False,
                     boot: int = 2000) -> dict:
    """Captions from all the tuple's images: {stage: {"coherence": fraction naming the digit, "no_digit": fraction
    naming none (or two), "attributes": {attribute: agreement of the generated word with the observed digit},
    "change": coherence's change from the stage before (Tally.changes), after the first stage}}."""
    M = sampler.config.n_modalities
    observed = torch.tensor([True] * M + [False])
    tally = Tally()
    for i in tqdm(range(0, len(idx), batch), desc="image -> caption", disable=not progress):
        b = np.asarray(idx[i:i + batch])
        x, y = test.batch(torch.as_tensor(b))
        measured = test.captions.classes[b].astype(np.int64)
        out = sampler.conditional(x, observed, generator=seeded_generator(seed, 12, i))
        for stage in _stages(out):
            named = np.array([caption_digit(t) for t in out.captions[stage]])
            tally.add(stage, "coherence", named == y.numpy())
            tally.add(stage, "no_digit", named < 0)
            tally.add_pairs(stage, np.stack([caption_attributes(t) for t in out.captions[stage]]), measured)
    changes = tally.changes("coherence", boot, seed)
    return {s: {**tally.rates(s), "attributes": tally.attributes(s), **({"change": changes[s]} if s in changes else {})}
            for s in tally.hits}


@torch.no_grad()
def joint(sampler, judges: dict, n: int, prior: str = "normal", seed: int = 0, batch: int = 250,
          progress: bool = False) -> dict:
    """Prior samples: {stage: {"images": {judge: fraction whose M images read as one digit}, "with_caption":
    {judge: fraction whose caption also names it}, "digits": {"images_" + judge: {"counts", "entropy"} of the digit
    of the coherent samples, "with_caption_" + judge: the same of those whose caption names it too}}}."""
    tally = Tally()
    for i in tqdm(range(0, n, batch), desc="joint samples", disable=not progress):
        out = sampler.joint(min(batch, n - i), prior=prior, generator=seeded_generator(seed, 13, i))
        for stage in _stages(out):
            named = torch.tensor([caption_digit(t) for t in out.captions[stage]])
            for j, clf in judges.items():
                digit = clf.predict(out[stage].cpu())[0]
                one = (digit == digit[:, :1]).all(1)
                both = one & (digit[:, 0] == named)
                tally.add(stage, f"images_{j}", one.numpy())
                tally.add(stage, f"with_caption_{j}", both.numpy())
                tally.add_digits(stage, f"images_{j}", digit[one, 0])
                tally.add_digits(stage, f"with_caption_{j}", digit[both, 0])
    return {s: {**{part: {j: tally.rates(s)[f"{part}_{j}"] for j in judges} for part in ("images", "with_caption")},
                "digits": tally.digit_counts(s)} for s in tally.hits}


# ---------------------------------------------------------------- the report

def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def _attr_cells(attrs: dict) -> list[str]:
    return [f"{_pct(attrs[a]['agreement'])} ({_pct(attrs[a]['chance'])})" for a in ATTRIBUTES]


def _pair(v: dict, key: str = "", judges=JUDGES) -> str:
    """'A / B' of a per-judge dict (keys judge + key)."""
    return " / ".join(_pct(v.get(j + key)) for j in judges)


def _entropies(digits: dict, key: str, judges=JUDGES) -> str:
    return " / ".join("–" if j + key not in digits else f"{digits[j + key]['entropy']:.2f}" for j in judges)


def _positions(p: list) -> str:
    return ", ".join(map(str, p)) if p else "–"


def markdown(r: dict) -> str:
    """The tables of caption_metrics.json (percent; chance in brackets)."""
    c2i, joint_r = r["caption_to_image"], r["joint"]
    lines = [f"# {r['name']}: the caption modality", "",
             f"{r['settings']['n']} test tuples per direction, {r['settings']['n_joint']} prior samples; judges A and "
             f"B. Attribute agreement in %, chance in brackets (a word drawn independently of the digit). Digit "
             f"entropy: of the digits the judge reads, over log 10 (1: every digit equally often, 0: one digit).", "",
             "## caption → image", "",
             "| wording | stage | coherence A | coherence B | thickness | slant | size | digit entropy A / B | "
             "coherent-digit entropy A / B |",
             "|---|---|---|---|---|---|---|---|---|"]
    for w in WORDINGS:
        for stage, v in c2i.get(w, {}).items():
            c = v["coherence"]
            lines.append(f"| {w.replace('_', '-')} | {stage_title(stage)} | {_pct(c['A'])} | {_pct(c['B'])} | "
                         + " | ".join(_attr_cells(v["attributes"]))
                         + f" | {_entropies(v['digits'], '')} | {_entropies(v['digits'], '_coherent')} |")
    for w in WORDINGS:
        stages = list(c2i.get(w, {}))
        if not stages:
            continue
        lines += ["", f"## caption → image by template, {w.replace('_', '-')} wordings", "",
                  "Coherence A / B per stage; digit at: the token positions of the digit word in its captions "
                  "(from 0; a comma is a token).", "",
                  "| template | digit at | n | " + " | ".join(stage_title(s) for s in stages) + " |",
                  "|---|---|---|" + "---|" * len(stages)]
        for name, t in c2i[w][stages[0]]["templates"].items():
            lines.append(f"| `{name}` | {_positions(t['digit_positions'])} | {t['n']} | "
                         + " | ".join(_pair(c2i[w][s]["templates"][name]) for s in stages) + " |")
    lines += ["", "## image → caption", "",
              "| stage | coherence | no digit named | thickness | slant | size |", "|---|---|---|---|---|---|"]
    for stage, v in r["image_to_caption"].items():
        lines.append(f"| {stage_title(stage)} | {_pct(v['coherence'])} | {_pct(v['no_digit'])} | "
                     + " | ".join(_attr_cells(v["attributes"])) + " |")
    lines += ["", "## stage changes, paired", "",
              "Coherence change (points) from the stage before, the same test tuples through the stages, with its "
              "95 % bootstrap interval over the tuples.", "",
              "| direction | stage | judge | change | 95 % interval |", "|---|---|---|---|---|"]
    rows = [(f"caption → image, {w.replace('_', '-')}", stage, j, v["change"][j])
            for w in WORDINGS for stage, v in c2i.get(w, {}).items() if "change" in v for j in JUDGES]
    rows += [("image → caption", stage, "–", v["change"]) for stage, v in r["image_to_caption"].items()
             if "change" in v]
    for what, stage, j, c in rows:
        lines.append(f"| {what} | {stage_title(stage)} | {j} | {100 * c['change']:+.2f} | "
                     f"[{100 * c['low']:+.2f}, {100 * c['high']:+.2f}] |")
    lines += ["", "## joint coherence", "",
              "| stage | images A | images B | with the caption A | with the caption B | coherent-digit entropy A / B "
              "| with the caption: digit entropy A / B |", "|---|---|---|---|---|---|---|"]
    for stage, v in joint_r.items():
        lines.append(f"| {stage_title(stage)} | {_pct(v['images']['A'])} | {_pct(v['images']['B'])} | "
                     f"{_pct(v['with_caption']['A'])} | {_pct(v['with_caption']['B'])} | "
                     f"{_entropies(v['digits'], '', [f'images_{j}' for j in JUDGES])} | "
                     f"{_entropies(v['digits'], '', [f'with_caption_{j}' for j in JUDGES])} |")
    lines += ["", "## the coherent samples' digits", "",
              "Share of each digit (%) among the coherent samples: caption → image, the images read as the caption's "
              "digit; joint, the samples whose images read as one digit.", "",
              "| samples | stage | judge | " + " | ".join(map(str, range(10))) + " |", "|---|---|---|" + "---|" * 10]
    rows = [(f"caption → image, {w.replace('_', '-')}", stage, j, v["digits"].get(f"{j}_coherent"))
            for w in WORDINGS for stage, v in c2i.get(w, {}).items() for j in JUDGES]
    rows += [("joint", stage, j, v["digits"].get(f"images_{j}")) for stage, v in joint_r.items() for j in JUDGES]
    for what, stage, j, d in rows:
        if d:
            total = max(1, sum(d["counts"]))
            lines.append(f"| {what} | {stage_title(stage)} | {j} | "
                         + " | ".join(f"{100 * c / total:.1f}" for c in d["counts"]) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the command

class CaptionEvalError(RuntimeError):
    """A missing or mismatched input (one-line message)."""


@dataclass
class CaptionEvalConfig:
    """One evaluation of a captioned checkpoint, saved in caption_metrics.json ("settings")."""

    checkpoint: str = "runs/captions/full/final"  # a model directory with the caption modality (config.json with
                                                  # "text" + model.safetensors)
    classifier: str = "checkpoints/classifier"    # judge A (the bundled one, found from any working folder)
    classifier_b: str = "checkpoints/classifier_b"  # judge B
    mnist: str | None = None       # local MNIST .npz (e.g. ../shared/data/mnist.npz) or torchvision root; none =
                                   # download
    cache_dir: str = "data_cache"  # where the built test set and its captions are cached
    dataset: str = "builtin"       # builtin: the PolyMNIST-style set built from MNIST; polymnist: the released files
                                   # in --data-dir
    data_dir: str | None = None    # the PolyMNIST release: train/ and test/ with m0..m4 of <index>.<label>.png
    device: str = "auto"           # auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps
    out: str | None = None         # output folder (none = CHECKPOINT/../caption_eval)
    name: str | None = None        # the model's name in the tables (none = the run folder's name)
    variant: str | None = None     # override the variant read from train_config.json ('vae': no EBM stages)
    n: int = 1000                  # test tuples per direction (caption -> image per wording, image -> caption)
    n_joint: int = 1000            # prior samples for joint coherence
    prior: str = "normal"          # prior samples start from: normal = N(0, I), ex-post = the one beside the weights
    batch: int = 250               # samples generated per call
    seed: int = 0                  # seeds the test tuples, the chains and the bootstrap
    boot: int = 2000               # bootstrap resamples of the stage changes' intervals
    threads: int | None = None     # torch.set_num_threads (none = torch's default)
    quiet: bool = False            # no progress bars

    def __post_init__(self):
        for name in ("n", "n_joint"):
            if getattr(self, name) < 0:
                raise CaptionEvalError(f"--{name.replace('_', '-')} must be at least 0")
        if self.batch < 1:
            raise CaptionEvalError("--batch must be at least 1")
        if self.boot < 1:
            raise CaptionEvalError("--boot must be at least 1")
        if self.prior not in PRIORS:
            raise CaptionEvalError(f"--prior must be one of {', '.join(PRIORS)}")
        if self.out is None:
            self.out = str(Path(self.checkpoint).resolve().parent / "caption_eval")


def caption_evaluate(cfg: CaptionEvalConfig, sampler=None, judges: dict | None = None, test=None) -> dict:
    """Score a captioned checkpoint; write caption_metrics.json and caption_metrics.md in ``cfg.out``; return what
    the json holds. ``sampler``, ``judges`` ({"A": ..., "B": ...}) and ``test`` (the test split with captions)
    are loaded from ``cfg`` unless given."""
    from .data import load_dataset
    from .evaluate import EvalError, checkpoint_info, eval_indices, load_classifier, load_sampler

    t0 = time.time()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        sampler = sampler or load_sampler(cfg.checkpoint, cfg.variant, cfg.device, cfg.prior)
        if sampler.config.text is None:
            raise CaptionEvalError(f"the checkpoint {cfg.checkpoint!r} has no caption modality (model.text is none)")
        M, data_seed = sampler.config.n_modalities, sampler.config.data_seed
        judges = judges or {"A": load_classifier(cfg.classifier, M, data_seed),
                            "B": load_classifier(cfg.classifier_b, M, data_seed)}
    except EvalError as e:
        raise CaptionEvalError(str(e)) from None
    if test is None:
        try:
            test = load_dataset("test", M, data_seed, cfg.mnist, cfg.cache_dir, cfg.dataset, cfg.data_dir,
                                captions=True)
        except Exception as e:
            raise CaptionEvalError(f"could not load the test split: {e}") from None
    idx = eval_indices(len(test), cfg.n, cfg.seed)
    progress = not cfg.quiet
    r = {"name": cfg.name or Path(cfg.checkpoint).resolve().parent.name,
         "source": checkpoint_info(cfg.checkpoint, sampler.variant) if Path(cfg.checkpoint).exists() else {},
         "settings": {**{k: v for k, v in asdict(cfg).items() if k not in ("quiet", "threads", "out")},
                      "n": len(idx), "chains": sampler.chains.flat(),
                      "caption_latent_weight": sampler.config.text.latent_weight},
         "caption_to_image": {w: caption_to_image(sampler, judges, test, idx, w, cfg.seed, cfg.batch, progress,
                                                  cfg.boot) for w in WORDINGS} if len(idx) else {},
         "image_to_caption": image_to_caption(sampler, test, idx, cfg.seed, cfg.batch, progress, cfg.boot)
         if len(idx) else {},
         "joint": joint(sampler, judges, cfg.n_joint, cfg.prior, cfg.seed, cfg.batch, progress) if cfg.n_joint else {}}
    r["minutes"] = (time.time() - t0) / 60
    write_report(cfg.out, "caption_metrics", r, markdown(r))
    return r


def build_parser() -> ConfigParser:
    p = ConfigParser(prog="python -m model.caption_eval", description=__doc__, formatter_class=HelpFormatter)
    add_dataclass_args(p, CaptionEvalConfig, choices={"variant": VARIANTS, "dataset": DATASETS, "prior": PRIORS})
    return p


def main(argv=None):
    from .cli import fail

    values = vars(build_parser().parse_args(argv))
    try:
        cfg = CaptionEvalConfig(**values)
        r = caption_evaluate(cfg)
    except (CaptionEvalError, DeviceError, ValueError, OSError) as e:
        fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    print(markdown(r))
    print(f"wrote {cfg.out}/caption_metrics.json, caption_metrics.md")


if __name__ == "__main__":
    main(sys.argv[1:])
