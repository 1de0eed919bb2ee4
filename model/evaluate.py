"""The evaluation of the field, for our checkpoints and for a peer's generated-image dump.

    python -m model.evaluate --checkpoint runs/full/checkpoint --mnist ../shared/data/mnist.npz --out runs/full/eval
    python -m model.evaluate --samples runs/peer_mmvaeplus/samples.npz --mnist ../shared/data/mnist.npz --out ...
    python -m model.evaluate compare runs/*/eval/metrics.json --out runs/compare

Metrics (each for every stage of the samples: the generator's proposals, latent-revised, and
MCMC-revised = latent + data revision on the EBM; a 'vae' checkpoint has an untrained EBM, so its
data stage is left out):
- conditional coherence: for every non-empty proper subset S of the M modalities, generate the
  modalities outside S from the test tuples' S, classify them with the per-modality classifiers, compare
  with the tuple's label. Mean per subset size |S| = 1..M-1 (and the mean of those).
- joint coherence: N prior samples; coherent if the M predicted digits agree.
- Fréchet distance per modality between prior samples and real test images, in the feature space of
  the digit classifiers' hidden layer (Inception weights cannot be downloaded offline; pass
  ``--inception FILE`` with a torchvision inception_v3 state_dict to use its pool features instead).
  The output states which feature space was used: numbers from different spaces do not compare.
- the sampling-efficiency curve: coherence and Fréchet distance against the number of data-space
  Langevin steps, for data chains started from the generator vs from uniform noise.

Outputs in --out: metrics.json (every number), metrics.md (table), curve.png, samples.png (prior samples).
A peer's dump (.npz, written by ``save_dump``; see scripts/peer_mmvae_plus.py) is scored by the same code.
This module holds the metrics over a test set and the command; model.report writes the tables and plots.
The judges (--classifier) default to the bundled checkpoints/classifier, found from any working folder.
"""
from __future__ import annotations

import itertools
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .classifier import Classifiers
from .cli import ConfigParser, HelpFormatter, add_chain_args, add_dataclass_args, chain_overrides
from .config import DATASETS, VARIANTS
from .data import load_dataset
from .device import DeviceError
from .paths import find_checkpoint
from .langevin import STAGES, data_revision, latent_revision, run
from .metrics import ClassifierFeatures, InceptionFeatures, digit_entropy, frechet_distance, hits, one_digit
from .networks import observed_mask
from .report import compare, markdown, plot_curve, save_sample_grid, write_report
from .sampler import PRIORS, Sampler, seeded_generator


class EvalError(RuntimeError):
    """A missing or mismatched input (checkpoint, classifier, data, dump)."""


def subsets(M: int) -> list[tuple[int, ...]]:
    """Every non-empty proper subset of range(M), by size then lexicographically."""
    return [s for k in range(1, M) for s in itertools.combinations(range(M), k)]


def ordered_stages(names) -> list[str]:
    """Stage names without repeats, in the chain's order (model.langevin.STAGES; others after, as given):
    conditional and prior samples may run different stages (e.g. the EBM latent chain only for the latter)."""
    names = list(dict.fromkeys(names))
    return [s for s in STAGES if s in names] + [s for s in names if s not in STAGES]


def subset_key(s) -> str:
    return ",".join(map(str, s))


def eval_indices(n_test: int, n: int, seed: int) -> np.ndarray:
    """The test tuples that condition the generation: a seeded draw of n of them (sorted).
    A peer's dump must use the same (``scripts/peer_mmvae_plus.py`` calls this function)."""
    n = min(n, n_test)
    return np.sort(np.random.default_rng([seed, 777]).permutation(n_test)[:n])


# ---------------------------------------------------------------- where the images come from

class ModelSampler:
    """Our model's samples for the metrics: every stage of a ``model.Sampler``'s chains, on the CPU."""

    def __init__(self, sampler: Sampler, data_init: str | None = None, prior: str = "normal"):
        self.sampler, self.prior_kind = sampler, prior
        self.has_ebm = sampler.has_ebm
        # an EBM trained on chains from noise is sampled the way it was trained (the curve shows both)
        self.data_init = data_init or ("noise" if sampler.variant == "noise_init" else "generator")
        self.cond_stages = sampler.stages(conditioned=True)
        self.prior_stages = sampler.stages(conditioned=False)   # no latent revision: the posterior is the prior

    def conditional(self, idx, x, observed, g):
        out = self.sampler.conditional(x, observed, generator=g, data_init=self.data_init)
        return {s: out[s].cpu() for s in self.cond_stages}

    def prior(self, start, n, g):
        out = self.sampler.joint(n, prior=self.prior_kind, generator=g, data_init=self.data_init)
        return {s: out[s].cpu() for s in self.prior_stages}


def save_dump(path, conditionals: dict, cond_index, joint: dict, meta: dict, extra: dict | None = None):
    """Write a generated-image dump for ``--samples`` (``extra``: more arrays, stored as given).

    conditionals: {subset tuple: {stage: float [n, M - |S|, 3, 28, 28]}} — the generated missing
    modalities (in increasing modality order) for the test tuples ``cond_index`` (from eval_indices).
    joint: {stage: float [N, M, 3, 28, 28]} prior samples. Stored as uint8, whole or not at all (a temporary file,
    then a rename: a recipe's next step never reads half a dump).
    """
    arrays = {"cond_index": np.asarray(cond_index, np.int64), "meta": np.array(json.dumps(meta))}
    to_u8 = lambda x: (torch.as_tensor(x).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    for s, stages in conditionals.items():
        for stage, x in stages.items():
            arrays[f"cond/{subset_key(s)}/{stage}"] = to_u8(x)
    for stage, x in joint.items():
        arrays[f"joint/{stage}"] = to_u8(x)
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays, **(extra or {}))
    tmp.replace(path)


class DumpSampler:
    """A peer's generated images, read from a ``save_dump`` file."""

    def __init__(self, path):
        if not Path(path).is_file():
            raise EvalError(f"sample dump not found: {str(path)!r}")
        self.f = np.load(path, allow_pickle=False)
        self.meta = json.loads(str(self.f["meta"]))
        self.row = {int(i): r for r, i in enumerate(self.f["cond_index"])}
        keys = list(self.f.keys())
        self.cond_stages = tuple(dict.fromkeys(k.split("/")[2] for k in keys if k.startswith("cond/")))
        # the subsets the dump holds (model.sample writes the single modalities by default)
        self.subsets = {tuple(int(m) for m in k.split("/")[1].split(",")) for k in keys if k.startswith("cond/")}
        self.prior_stages = tuple(k.split("/")[1] for k in keys if k.startswith("joint/"))
        self.n_prior = min((len(self.f[f"joint/{s}"]) for s in self.prior_stages), default=0)
        self._cache = {}

    def _get(self, key):
        if key not in self._cache:
            if key not in self.f:
                raise EvalError(f"the dump has no array {key!r}")
            self._cache = {key: torch.from_numpy(self.f[key])}  # keep one array in memory
        return self._cache[key]

    def conditional(self, idx, x, observed, g):
        try:
            rows = torch.tensor([self.row[int(i)] for i in idx])
        except KeyError as e:
            raise EvalError(f"the dump has no conditional generation for test tuple {e}; it must be made with "
                            f"model.evaluate.eval_indices and the same seed and --n-cond") from None
        missing = (~observed).nonzero().flatten()
        key = subset_key(observed.nonzero().flatten().tolist())
        out = {}
        for stage in self.cond_stages:
            full = x.clone()
            full[:, missing] = self._get(f"cond/{key}/{stage}")[rows].float() / 255
            out[stage] = full
        return out

    def prior(self, start, n, g):
        if start + n > self.n_prior:
            raise EvalError(f"the dump holds {self.n_prior} prior samples; lower --n-joint/--n-fid")
        return {s: self._get(f"joint/{s}")[start:start + n].float() / 255 for s in self.prior_stages}


# ---------------------------------------------------------------- the metrics over a test set

def fix_and_break(proposal: torch.Tensor, stage: torch.Tensor) -> np.ndarray:
    """Counts [fixed, wrong at the proposal, broken, right at the proposal] of generated modalities, from their hits
    (1.0 = read as the tuple's digit, model.metrics.hits) at the proposal and at a later stage."""
    wrong, right = proposal == 0, proposal == 1
    return np.array([(wrong & (stage == 1)).sum().item(), wrong.sum().item(), (right & (stage == 0)).sum().item(),
                     right.sum().item()], np.int64)


def fix_break_rates(counts) -> dict:
    """{"fix_rate": fixed / wrong at the proposal, "break_rate": broken / right at the proposal, and their n}
    (a rate of no proposal is None)."""
    fixed, wrong, broken, right = (int(c) for c in counts)
    return {"fix_rate": fixed / wrong if wrong else None, "n_wrong": wrong,
            "break_rate": broken / right if right else None, "n_right": right}


@torch.no_grad()
def conditional_coherence(sampler, clf, test, idx, seed=0, batch=500, progress=True) -> dict:
    """{stage: {"by_subset": {key: c}, "by_size": {k: mean}, "mean": mean over sizes, "one_to_one": {"m>j": c of
    modality j generated from modality m alone}, "one_to_one_mean", and against the proposal, pooled over every
    generated modality of every subset: "fix_rate" (share of those the judge reads wrong at the proposal that it
    reads right at this stage), "break_rate" (right at the proposal, wrong here), "n_wrong", "n_right"}}."""
    M = test.x.shape[1]
    tally, one, fb = {}, {}, {}
    have = getattr(sampler, "subsets", None)   # a dump may hold only some subsets: sizes without any are left out
    todo = [(s, i) for s in subsets(M) if have is None or s in have for i in range(0, len(idx), batch)]
    for s, i in tqdm(todo, desc="conditional coherence", disable=not progress, dynamic_ncols=True):
        b = idx[i:i + batch]
        x, y = test.batch(torch.as_tensor(b))
        observed = observed_mask(s, M)
        out = sampler.conditional(b, x, observed, seeded_generator(seed, 1, *s, i))
        proposal = None
        for stage in ordered_stages(out):
            digit, _ = clf.predict(out[stage])
            right = hits(digit, y, observed)
            proposal = right if proposal is None else proposal
            h = tally.setdefault(stage, {}).setdefault(subset_key(s), [0.0, 0])
            h[0] += right.sum().item()
            h[1] += right.numel()
            fb[stage] = fb.get(stage, 0) + fix_and_break(proposal, right)
            if len(s) == 1:   # 1 -> 1: each generated modality from the single observed one
                for k, j in enumerate(m for m in range(M) if m not in s):
                    h = one.setdefault(stage, {}).setdefault(f"{s[0]}>{j}", [0.0, 0])
                    h[0] += right[:, k].sum().item()
                    h[1] += len(right)
    res = {}
    for stage, by in tally.items():
        by_subset = {k: v[0] / v[1] for k, v in by.items()}
        by_size = {str(k): float(np.mean([by_subset[subset_key(s)] for s in subsets(M)
                                          if len(s) == k and subset_key(s) in by_subset]))
                   for k in range(1, M) if any(len(s) == k and subset_key(s) in by_subset for s in subsets(M))}
        res[stage] = {"by_subset": by_subset, "by_size": by_size, "mean": float(np.mean(list(by_size.values()))),
                      **fix_break_rates(fb[stage])}
        if stage in one:
            res[stage]["one_to_one"] = {k: v[0] / v[1] for k, v in one[stage].items()}
            res[stage]["one_to_one_mean"] = float(np.mean(list(res[stage]["one_to_one"].values())))
    return res


@torch.no_grad()
def prior_metrics(sampler, clf, features, real_feats, n_joint, n_fid, seed=0, batch=500, progress=True) -> dict:
    """Joint coherence of n_joint prior samples and the Fréchet distance per modality of n_fid of them
    against the real features. {stage: {"joint_coherence", "fd": [per modality], "fd_mean"}}."""
    n = max(n_joint, n_fid)
    agree, feats, hist = {}, {}, {}
    for i in tqdm(range(0, n, batch), desc="prior samples", disable=not progress, dynamic_ncols=True):
        nb = min(batch, n - i)
        out = sampler.prior(i, nb, seeded_generator(seed, 2, i))
        for stage, xg in out.items():
            if i < n_joint:
                digit, _ = clf.predict(xg[:max(0, min(nb, n_joint - i))])
                ok = one_digit(digit)
                agree.setdefault(stage, []).append(ok)
                counts = hist.setdefault(stage, torch.zeros(10))
                counts += torch.bincount(digit.flatten(), minlength=10).float()
                coherent = hist.setdefault(stage + "/coherent", torch.zeros(10))   # digits of the coherent tuples
                coherent += torch.bincount(digit[ok, 0], minlength=10).float()
            if i < n_fid:
                k = min(nb, n_fid - i)
                for m in range(xg.shape[1]):
                    feats.setdefault(stage, [[] for _ in range(xg.shape[1])])[m].append(features(xg[:k, m], m))
    res = {}
    for stage in dict.fromkeys(list(agree) + list(feats)):
        r = {}
        if stage in agree:
            r["joint_coherence"] = torch.cat(agree[stage]).float().mean().item()
            r["digit_entropy"] = digit_entropy(hist[stage])
            r["coherent_digit_entropy"] = digit_entropy(hist[stage + "/coherent"])
            r["coherent_digit_counts"] = hist[stage + "/coherent"].int().tolist()
        if stage in feats and n_fid >= 2:
            fd = [frechet_distance(np.concatenate(feats[stage][m]), real_feats[m]) for m in range(len(real_feats))]
            r["fd"], r["fd_mean"] = fd, float(np.mean(fd))
        res[stage] = r
    return res


def real_features(features, test, idx, batch=1000) -> list[np.ndarray]:
    M = test.x.shape[1]
    out = [[] for _ in range(M)]
    for i in range(0, len(idx), batch):
        x, _ = test.batch(torch.as_tensor(idx[i:i + batch]))
        for m in range(M):
            out[m].append(features(x[:, m], m))
    return [np.concatenate(f) for f in out]


@torch.no_grad()
def sampling_curve(sampler, clf, features, real_feats, test, idx, steps, n, seed=0, progress=True) -> dict:
    """Coherence and Fréchet distance against the number of data-space Langevin steps, for chains
    started from the generator (after latent revision, for conditionals) and from uniform noise.
    n prior samples (joint coherence, FD mean over modalities) and n conditionals from one observed
    modality (n / M per modality; coherence of the missing ones). Chains: ``sampler.chains``."""
    model, chains = sampler.model, sampler.chains
    cfg, G, E = model.config, model.generator, model.energy
    M, steps = cfg.n_modalities, sorted(set(int(s) for s in steps))
    latent, data = chains.latent, chains.data
    res = {"steps": steps, "n": n}
    per = max(1, n // M)
    dev = sampler.device
    for init in ("generator", "noise"):
        g = seeded_generator(seed, 3, device=dev)
        joint, fds, cond = {s: [] for s in steps}, {s: [[] for _ in range(M)] for s in steps}, {s: [] for s in steps}
        jobs = [("prior", None, i) for i in range(0, n, 500)] + [("cond", m, 0) for m in range(M)]
        for kind, m, i in tqdm(jobs, desc=f"curve ({init} init)", disable=not progress, dynamic_ncols=True):
            if kind == "prior":
                nb = min(500, n - i)
                observed = None
                x0 = G(torch.randn(nb, cfg.latent_dim, generator=g, device=dev)) if init == "generator" else \
                    torch.rand(nb, M, 3, 28, 28, generator=g, device=dev)
            else:
                b = idx[:per]
                x_obs, y = test.batch(torch.as_tensor(b))
                x_obs, observed = x_obs.to(dev), observed_mask([m], M).to(dev)
                if init == "generator":
                    z = model.inference.sample(x_obs, observed, generator=g)
                    if latent.steps > 0:
                        z = run(latent_revision(G, z, x_obs, latent.steps, latent.step_size, latent.noise, observed,
                                                generator=g)).x
                    x0 = G(z)
                else:
                    x0 = torch.rand(x_obs.shape, generator=g, device=dev)
                x0 = torch.where(observed.view(1, -1, 1, 1, 1), x_obs, x0)
            for st in data_revision(E, x0, steps[-1], data.step_size, data.noise, observed, generator=g):
                if st.step not in joint:
                    continue
                xs = st.x.cpu()
                digit, _ = clf.predict(xs)
                if kind == "prior":
                    joint[st.step].append(one_digit(digit).float())
                    for mm in range(M):
                        fds[st.step][mm].append(features(xs[:, mm], mm))
                else:
                    cond[st.step].append(hits(digit, y, observed.cpu()).flatten())
        res[init] = {
            "joint_coherence": [torch.cat(joint[s]).mean().item() for s in steps],
            "coherence_cond1": [torch.cat(cond[s]).mean().item() for s in steps],
            "fd_mean": [float(np.mean([frechet_distance(np.concatenate(fds[s][mm]), real_feats[mm])
                                       for mm in range(M)])) for s in steps],
        }
    return res


# ---------------------------------------------------------------- loading

def load_sampler(checkpoint, variant=None, device="auto", prior="normal", chains: dict | None = None) -> Sampler:
    """``Sampler.from_pretrained`` with one-line errors (EvalError). ``prior``: normal, ex-post (the one beside the
    weights; an error if there is none) or an ex-post prior file."""
    path = find_checkpoint(checkpoint)
    if not (path / "config.json").is_file():
        raise EvalError(f"no model checkpoint at {str(checkpoint)!r} (expected config.json + model.safetensors, "
                        f"as written by model.train or save_pretrained)")
    if prior not in PRIORS and not Path(prior).is_file():
        raise EvalError(f"ex-post prior file not found: {prior!r} (written by python -m model.prior)")
    try:
        sampler = Sampler.from_pretrained(path, device=device, variant=variant,
                                          prior_file=None if prior in PRIORS else prior, **(chains or {}))
    except DeviceError as e:
        raise EvalError(str(e)) from None
    except Exception as e:
        reason = str(e).splitlines()[0][:160] if str(e) else ""
        raise EvalError(f"the checkpoint {str(checkpoint)!r} does not load ({type(e).__name__}"
                        f"{': ' + reason if reason else ''}); is it complete and written by this version?") from None
    if prior == "ex-post" and sampler.prior is None:
        raise EvalError(f"--prior ex-post: the checkpoint {str(checkpoint)!r} has no usable ex-post prior "
                        f"({'; '.join(n for n in sampler.notes if 'prior' in n)})")
    return sampler


def checkpoint_info(path, variant: str) -> dict:
    """What metrics.json says about a checkpoint: its folder, variant, and the iteration and training minutes
    of the run's state.pt when there is one."""
    info = {"checkpoint": str(path), "variant": variant}
    state = find_checkpoint(path) / "state.pt"
    if state.is_file():
        try:
            st = torch.load(state, map_location="cpu", weights_only=True)
            info["iteration"], info["train_minutes"] = st.get("iteration"), st.get("elapsed", 0) / 60
        except Exception:   # a state from another version: these numbers are only informative
            pass
    return info


def load_classifier(path, M, data_seed):
    """The judges in ``path`` (a relative path missing here is looked up in the repository checkout), checked
    against the samples' number of modalities and data seed."""
    found = find_checkpoint(path)
    if not (found / "config.json").is_file():
        raise EvalError(f"no classifier at {str(path)!r}; train one with python -m model.classifier "
                        f"--mnist PATH --out {path}")
    try:
        clf = Classifiers.from_pretrained(str(found)).eval()
    except Exception as e:
        reason = str(e).splitlines()[0][:160] if str(e) else ""
        raise EvalError(f"the classifier {str(path)!r} does not load ({type(e).__name__}"
                        f"{': ' + reason if reason else ''})") from None
    if clf.config.n_modalities != M:
        raise EvalError(f"the classifier has {clf.config.n_modalities} modalities, the samples {M}")
    if clf.config.data_seed != data_seed:
        raise EvalError(f"the classifier was trained on data seed {clf.config.data_seed}, the model on {data_seed}")
    return clf


# ---------------------------------------------------------------- the command

@dataclass
class EvalConfig:
    """One evaluation, saved in metrics.json ("settings"). Give --checkpoint or --samples."""

    checkpoint: str | None = None  # a model directory (config.json + model.safetensors; a relative path missing
                                   # here is looked up in the repository checkout)
    samples: str | None = None     # a generated-image dump (.npz written by model.sample or evaluate.save_dump)
    classifier: str = "checkpoints/classifier"  # the per-modality digit classifiers that judge coherence (the
                                                # bundled judge A; checkpoints/classifier_b: judge B)
    mnist: str | None = None       # local MNIST .npz (e.g. ../shared/data/mnist.npz) or torchvision root; none =
                                   # download
    cache_dir: str = "data_cache"  # where the built test set is cached
    dataset: str = "builtin"       # builtin: the PolyMNIST-style set built from MNIST; polymnist: the released files
                                   # in --data-dir (then --classifier must be trained on them too)
    data_dir: str | None = None    # the PolyMNIST release: train/ and test/ with m0..m4 of <index>.<label>.png
    device: str = "auto"           # auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps: where the model's
                                   # chains run (the judges stay on the CPU)
    out: str | None = None         # output folder, created (none = CHECKPOINT/../eval, or beside the dump: eval)
    name: str | None = None        # the model's name in tables (none = the run folder's name, or the dump's)
    variant: str | None = None     # override the variant read from train_config.json ('vae': no EBM stages)
    n_cond: int = 1000             # test tuples per subset for conditional coherence
    n_joint: int = 10000           # prior samples for joint coherence
    n_fid: int = 10000             # prior samples (and real test images) per modality for FD
    n_curve: int = 1000            # samples per point of the sampling-efficiency curve
    curve_steps: str = "0,5,10,20,30,60"  # data-Langevin step counts of the curve ('' = off)
    prior: str = "normal"          # prior samples start from: normal = N(0, I), ex-post = the ex-post prior beside
                                   # the weights, or an ex-post prior file (python -m model.prior)
    data_init: str | None = None   # start of the data chains: generator or noise (none = noise for a 'noise_init'
                                   # checkpoint, else the generator)
    inception: str | None = None   # torchvision inception_v3 state_dict file: FD on its pool features
    batch: int = 500               # samples generated per call
    seed: int = 0                  # seeds the test tuples and the chains
    threads: int | None = None     # torch.set_num_threads (none = torch's default)
    quiet: bool = False            # no progress bars
    chains: dict = field(default_factory=dict)  # chain settings overriding the checkpoint's, by flat name

    def __post_init__(self):
        if (self.checkpoint is None) == (self.samples is None):
            raise EvalError("give one of --checkpoint or --samples")
        for name in ("n_cond", "n_joint", "n_fid", "n_curve"):
            if getattr(self, name) < 0:
                raise EvalError(f"--{name.replace('_', '-')} must be at least 0")
        if self.batch < 1:
            raise EvalError("--batch must be at least 1")
        if self.out is None:
            self.out = str(Path(self.checkpoint or self.samples).resolve().parent / "eval")

    @property
    def curve(self) -> list[int]:
        return [int(s) for s in self.curve_steps.split(",") if s.strip()]


def evaluate(cfg: EvalConfig) -> dict:
    """Score a checkpoint or a dump on the test split; write metrics.json, metrics.md and the figures in
    ``cfg.out``; return what metrics.json holds."""
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    n_joint, n_fid = cfg.n_joint, cfg.n_fid
    model = None
    if cfg.checkpoint:
        model = load_sampler(cfg.checkpoint, cfg.variant, cfg.device, cfg.prior, cfg.chains)
        sampler = ModelSampler(model, cfg.data_init, prior=cfg.prior if cfg.prior in PRIORS else "ex-post")
        source = checkpoint_info(cfg.checkpoint, model.variant)
        M, data_seed = model.config.n_modalities, model.config.data_seed
        name = cfg.name or Path(cfg.checkpoint).resolve().parent.name
    else:
        sampler = DumpSampler(cfg.samples)
        source = {"samples": str(cfg.samples), **sampler.meta}
        M, data_seed = int(sampler.meta.get("n_modalities", 5)), int(sampler.meta.get("data_seed", 0))
        name = cfg.name or sampler.meta.get("name", Path(cfg.samples).stem)
        n_joint, n_fid = min(n_joint, sampler.n_prior), min(n_fid, sampler.n_prior)
    clf = load_classifier(cfg.classifier, M, data_seed)
    try:
        test = load_dataset("test", M, data_seed, cfg.mnist, cfg.cache_dir, cfg.dataset, cfg.data_dir)
    except Exception as e:
        raise EvalError(f"could not load the test split: {e}") from None
    try:
        features = InceptionFeatures(cfg.inception) if cfg.inception else ClassifierFeatures(clf)
    except (OSError, RuntimeError) as e:
        raise EvalError(str(e)) from e
    idx = eval_indices(len(test), cfg.n_cond, cfg.seed)
    if isinstance(sampler, DumpSampler):  # the test tuples the peer was conditioned on
        idx = np.asarray(sampler.f["cond_index"])[:cfg.n_cond]
    fid_idx = eval_indices(len(test), n_fid, cfg.seed + 1)
    progress = not cfg.quiet

    if not len(fid_idx) and not len(idx):
        raise EvalError("nothing to score: give --n-cond or --n-joint/--n-fid above 0 (and a dump that holds them)")
    # without FD (--n-fid 0, e.g. a dump of conditionals only) the real tuples' reference is read on the
    # conditioning tuples and there is no sampling curve (it plots FD)
    real = real_features(features, test, fid_idx) if len(fid_idx) else None
    x_ref, y_ref = test.batch(torch.as_tensor(fid_idx if len(fid_idx) else idx))
    d_ref, _ = clf.predict(x_ref)
    reference = {"joint_coherence_real": one_digit(d_ref).float().mean().item(),
                 "classifier_accuracy": (d_ref == y_ref[:, None]).float().mean(0).tolist()}

    cond = conditional_coherence(sampler, clf, test, idx, cfg.seed, cfg.batch, progress) if cfg.n_cond else {}
    prior = prior_metrics(sampler, clf, features, real, n_joint, n_fid, cfg.seed, cfg.batch, progress)
    curve = None
    if model is not None and model.has_ebm and cfg.curve and cfg.n_curve and real is not None:
        curve = sampling_curve(model, clf, features, real, test, idx, cfg.curve, cfg.n_curve, cfg.seed, progress)

    stages = ordered_stages(list(sampler.cond_stages) + list(sampler.prior_stages))
    summary = {}
    for key, stage in (("proposal", "proposal"), ("revised", stages[-1])):
        c, p = cond.get(stage), prior.get(stage) or prior.get("proposal", {})
        summary[key] = {"stage": stage, "coherence_cond": c and c["mean"],
                        "coherence_cond1": c and c["by_size"].get("1"), "joint_coherence": p.get("joint_coherence"),
                        "digit_entropy": p.get("digit_entropy"), "fd_mean": p.get("fd_mean")}
    settings = {**{k: v for k, v in asdict(cfg).items() if k not in ("chains", "quiet", "threads", "out")},
                "n_modalities": M, "data_seed": data_seed, "n_cond": len(idx), "n_joint": n_joint, "n_fid": n_fid,
                "n_fid_real": len(fid_idx), "feature_space": features.name}
    if model is not None:
        chains = model.chains
        settings["chains"] = {**chains.flat(), "latent_temperature": chains.latent.temperature,
                              "data_temperature": chains.data.temperature, "data_init": sampler.data_init,
                              "prior": "N(0, I)" if cfg.prior == "normal" else cfg.prior}
    r = {"name": name, "source": source, "settings": settings, "stages": stages, "summary": summary,
         "conditional": cond, "prior": prior, "reference": reference, "curve": curve,
         "minutes": (time.time() - t0) / 60}

    out = write_report(cfg.out, "metrics", r, markdown(r))
    if curve:
        plot_curve(curve, out / "curve.png")
    n_grid = min(8, sampler.n_prior) if isinstance(sampler, DumpSampler) else 8
    (out / "samples.png").unlink(missing_ok=True)
    if n_grid:   # a dump of conditionals only has no prior samples to show
        save_sample_grid(sampler.prior(0, n_grid, seeded_generator(cfg.seed, 4)), out / "samples.png")
    return r


def build_parser() -> ConfigParser:
    p = ConfigParser(prog="python -m model.evaluate", description=__doc__, formatter_class=HelpFormatter)
    add_dataclass_args(p, EvalConfig, skip=("chains",),
                       choices={"variant": VARIANTS, "dataset": DATASETS, "data_init": ("generator", "noise")})
    add_chain_args(p)
    return p


def parse_args(argv=None) -> EvalConfig:
    p = build_parser()
    values = vars(p.parse_args(argv))
    chains = chain_overrides(values)
    try:
        return EvalConfig(**values, chains=chains)
    except EvalError as e:
        p.error(str(e))


def compare_main(argv):
    p = ConfigParser(prog="python -m model.evaluate compare", formatter_class=HelpFormatter,
                     description="Combined table + headline FD-vs-coherence plot.")
    p.add_argument("metrics", nargs="+", help="metrics.json files written by python -m model.evaluate")
    p.add_argument("--out", required=True, help="output folder: comparison.md, comparison.json, headline.png")
    p.add_argument("--names", default=None, help="comma-separated display names, one per file (none = theirs)")
    p.add_argument("--x", default=None, help="comma-separated numbers, one per file (e.g. the training "
                   "data steps of a step ablation): also plot every metric against them (trend.png)")
    p.add_argument("--x-label", default="training data-space Langevin steps", help="the x axis of trend.png")
    a = p.parse_args(argv)
    x = [float(v) for v in a.x.split(",")] if a.x else None
    print(compare(a.metrics, a.out, a.names.split(",") if a.names else None, x, a.x_label))
    print(f"wrote {a.out}/comparison.md, comparison.json, headline.png" + (", trend.png" if x else ""))


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["compare"]:
            return compare_main(argv[1:])
        cfg = parse_args(argv)
        r = evaluate(cfg)
        print(markdown(r))
        grid = ", samples.png" if (Path(cfg.out) / "samples.png").exists() else ""
        print(f"wrote {cfg.out}/metrics.json, metrics.md{grid}" + (", curve.png" if r["curve"] else ""))
    except (EvalError, DeviceError, ValueError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
