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
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .device import DeviceError
from . import render
from .metrics import ClassifierFeatures, InceptionFeatures, frechet_distance, hits, one_digit

STAGE_LABELS = {"proposal": "generator proposal", "latent": "latent-revised",
                "ebm_latent": "EBM latent-revised", "data": "MCMC-revised (latent + data)"}


def stage_label(r: dict, stage: str) -> str:
    if stage == "data" and (r["settings"].get("chains") or {}).get("data_init") == "noise":
        return "EBM chain from noise (observed clamped)"
    return STAGE_LABELS.get(stage, stage)


class EvalError(RuntimeError):
    """A missing or mismatched input (checkpoint, classifier, data, dump)."""


def subsets(M: int) -> list[tuple[int, ...]]:
    """Every non-empty proper subset of range(M), by size then lexicographically."""
    return [s for k in range(1, M) for s in itertools.combinations(range(M), k)]


def ordered_stages(names) -> list[str]:
    """Stage names without repeats, in the chain's order (model.langevin.STAGES; others after, as given):
    conditional and prior samples may run different stages (e.g. the EBM latent chain only for the latter)."""
    from .langevin import STAGES

    names = list(dict.fromkeys(names))
    return [s for s in STAGES if s in names] + [s for s in names if s not in STAGES]


def subset_key(s) -> str:
    return ",".join(map(str, s))


def eval_indices(n_test: int, n: int, seed: int) -> np.ndarray:
    """The test tuples that condition the generation: a seeded draw of n of them (sorted).
    A peer's dump must use the same (``scripts/peer_mmvae_plus.py`` calls this function)."""
    n = min(n, n_test)
    return np.sort(np.random.default_rng([seed, 777]).permutation(n_test)[:n])


def _mask(s, M):
    m = torch.zeros(M, dtype=torch.bool)
    m[list(s)] = True
    return m


def _generator(seed: int, *key: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, *key]).generate_state(1)[0]))


# ---------------------------------------------------------------- samplers: where the images come from

class ModelSampler:
    """Our model: proposals, latent-revised and MCMC-revised samples (model.langevin's chains)."""

    def __init__(self, model, variant: str = "full", latent_steps=None, data_steps=None, data_init=None,
                 ebm_latent_steps=None, prior=None):
        self.model, self.variant = model.eval(), variant
        self.latent_steps, self.data_steps, self.ebm_latent_steps = latent_steps, data_steps, ebm_latent_steps
        self.has_ebm = variant != "vae"
        self.ex_post = prior  # None = N(0, I); or an ex-post prior (model.prior.GaussianMixture)
        # an EBM trained on chains from noise is sampled the way it was trained (the curve shows both)
        self.data_init = data_init or ("noise" if variant == "noise_init" else "generator")
        cfg = model.config
        ebm = lambda default: 0 if not self.has_ebm else default if ebm_latent_steps is None else ebm_latent_steps
        steps = {"proposal": 1, "latent": cfg.latent_steps if latent_steps is None else latent_steps,
                 "ebm_latent": ebm(cfg.ebm_latent_cond_steps),   # conditional: its own steps (0 = skipped)
                 "data": 0 if not self.has_ebm else cfg.data_steps if data_steps is None else data_steps}
        self.cond_stages = tuple(s for s, k in steps.items() if k > 0)
        steps.update(latent=0, ebm_latent=ebm(cfg.ebm_latent_steps))   # prior samples: no latent revision
        self.prior_stages = tuple(s for s, k in steps.items() if k > 0)

    def _kw(self):
        kw = {"data_steps": 0 if not self.has_ebm else self.data_steps, "data_init": self.data_init,
              "ebm_latent_steps": 0 if not self.has_ebm else self.ebm_latent_steps}
        if self.latent_steps is not None:
            kw["latent_steps"] = self.latent_steps
        return kw

    def _on_device(self, g):
        """The model's device, and the chain's generator there (seeded from the CPU one)."""
        dev = next(self.model.parameters()).device
        return dev, (g if dev.type == "cpu" else torch.Generator(dev).manual_seed(g.initial_seed()))

    def conditional(self, idx, x, observed, g):
        from .langevin import conditional_generate

        dev, g = self._on_device(g)
        out = conditional_generate(self.model, x.to(dev), observed.to(dev), generator=g, **self._kw())
        return {s: out[s].cpu() for s in self.cond_stages}

    def prior(self, start, n, g):
        from .langevin import conditional_generate

        dev, g = self._on_device(g)
        out = conditional_generate(self.model, None, None, n=n, generator=g, prior=self.ex_post, **self._kw())
        return {s: out[s].cpu() for s in self.prior_stages}


def save_dump(path, conditionals: dict, cond_index, joint: dict, meta: dict):
    """Write a generated-image dump for ``--samples``.

    conditionals: {subset tuple: {stage: float [n, M - |S|, 3, 28, 28]}} — the generated missing
    modalities (in increasing modality order) for the test tuples ``cond_index`` (from eval_indices).
    joint: {stage: float [N, M, 3, 28, 28]} prior samples. Stored as uint8.
    """
    arrays = {"cond_index": np.asarray(cond_index, np.int64), "meta": np.array(json.dumps(meta))}
    to_u8 = lambda x: (torch.as_tensor(x).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    for s, stages in conditionals.items():
        for stage, x in stages.items():
            arrays[f"cond/{subset_key(s)}/{stage}"] = to_u8(x)
    for stage, x in joint.items():
        arrays[f"joint/{stage}"] = to_u8(x)
    np.savez(path, **arrays)


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

@torch.no_grad()
def conditional_coherence(sampler, clf, test, idx, seed=0, batch=500, progress=True) -> dict:
    """{stage: {"by_subset": {key: c}, "by_size": {k: mean}, "mean": mean over sizes}}."""
    M = test.x.shape[1]
    tally = {}
    have = getattr(sampler, "subsets", None)   # a dump may hold only some subsets: sizes without any are left out
    todo = [(s, i) for s in subsets(M) if have is None or s in have for i in range(0, len(idx), batch)]
    for s, i in tqdm(todo, desc="conditional coherence", disable=not progress, dynamic_ncols=True):
        b = idx[i:i + batch]
        x, y = test.batch(torch.as_tensor(b))
        observed = _mask(s, M)
        out = sampler.conditional(b, x, observed, _generator(seed, 1, *s, i))
        for stage, xg in out.items():
            digit, _ = clf.predict(xg)
            right = hits(digit, y, observed)
            h = tally.setdefault(stage, {}).setdefault(subset_key(s), [0.0, 0])
            h[0] += right.sum().item()
            h[1] += right.numel()
    res = {}
    for stage, by in tally.items():
        by_subset = {k: v[0] / v[1] for k, v in by.items()}
        by_size = {str(k): float(np.mean([by_subset[subset_key(s)] for s in subsets(M)
                                          if len(s) == k and subset_key(s) in by_subset]))
                   for k in range(1, M) if any(len(s) == k and subset_key(s) in by_subset for s in subsets(M))}
        res[stage] = {"by_subset": by_subset, "by_size": by_size, "mean": float(np.mean(list(by_size.values())))}
    return res


@torch.no_grad()
def prior_metrics(sampler, clf, features, real_feats, n_joint, n_fid, seed=0, batch=500, progress=True) -> dict:
    """Joint coherence of n_joint prior samples and the Fréchet distance per modality of n_fid of them
    against the real features. {stage: {"joint_coherence", "fd": [per modality], "fd_mean"}}."""
    n = max(n_joint, n_fid)
    agree, feats, hist = {}, {}, {}
    for i in tqdm(range(0, n, batch), desc="prior samples", disable=not progress, dynamic_ncols=True):
        nb = min(batch, n - i)
        out = sampler.prior(i, nb, _generator(seed, 2, i))
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
            q = hist[stage] / hist[stage].sum()
            r["digit_entropy"] = float(-(q[q > 0] * q[q > 0].log()).sum() / np.log(10))
            h = hist[stage + "/coherent"]
            q = h / h.sum().clamp_min(1)
            r["coherent_digit_entropy"] = float(-(q[q > 0] * q[q > 0].log()).sum() / np.log(10))
            r["coherent_digit_counts"] = h.int().tolist()
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
def sampling_curve(model, clf, features, real_feats, test, idx, steps, n, seed=0, latent_steps=None,
                   progress=True) -> dict:
    """Coherence and Fréchet distance against the number of data-space Langevin steps, for chains
    started from the generator (after latent revision, for conditionals) and from uniform noise.
    n prior samples (joint coherence, FD mean over modalities) and n conditionals from one observed
    modality (n / M per modality; coherence of the missing ones)."""
    from .langevin import data_revision, latent_revision, run

    cfg, G, E = model.config, model.generator, model.energy
    M, steps = cfg.n_modalities, sorted(set(int(s) for s in steps))
    ls = cfg.latent_steps if latent_steps is None else latent_steps
    res = {"steps": steps, "n": n}
    per = max(1, n // M)
    dev = next(model.parameters()).device
    for init in ("generator", "noise"):
        g = _generator(seed, 3)
        if dev.type != "cpu":
            g = torch.Generator(dev).manual_seed(g.initial_seed())
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
                x_obs, observed = x_obs.to(dev), _mask([m], M).to(dev)
                if init == "generator":
                    z = model.inference.sample(x_obs, observed, generator=g)
                    if ls > 0:
                        z = run(latent_revision(G, z, x_obs, ls, cfg.latent_step_size, cfg.latent_noise, observed,
                                                generator=g)).x
                    x0 = G(z)
                else:
                    x0 = torch.rand(x_obs.shape, generator=g, device=dev)
                x0 = torch.where(observed.view(1, -1, 1, 1, 1), x_obs, x0)
            for st in data_revision(E, x0, steps[-1], cfg.data_step_size, cfg.data_noise, observed, generator=g):
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


# ---------------------------------------------------------------- loading, reporting

def load_checkpoint(path, variant=None):
    from .config import TrainConfig
    from .networks import MultimodalEBMVAE

    path = Path(path)
    if not (path / "config.json").is_file():
        raise EvalError(f"no model checkpoint at {str(path)!r} (expected config.json + model.safetensors, "
                        f"as written by model.train or save_pretrained)")
    try:
        model = MultimodalEBMVAE.from_pretrained(str(path), strict=True)
    except Exception as e:
        reason = str(e).splitlines()[0][:160] if str(e) else ""
        raise EvalError(f"the checkpoint {str(path)!r} does not load ({type(e).__name__}"
                        f"{': ' + reason if reason else ''}); is it complete and written by this version?") from None
    info = {"checkpoint": str(path)}
    for tc in (path / "train_config.json", path.parent / "train_config.json"):
        if tc.is_file():
            cfg = TrainConfig.from_json(tc)
            info["variant"] = cfg.variant
            break
    state = path / "state.pt"
    if state.is_file():
        try:
            st = torch.load(state, map_location="cpu", weights_only=True)
            info["iteration"], info["train_minutes"] = st.get("iteration"), st.get("elapsed", 0) / 60
        except Exception:
            pass
    info["variant"] = variant or info.get("variant", "full")
    return model, info


def load_classifier(path, M, data_seed):
    from .classifier import Classifiers

    if not (Path(path) / "config.json").is_file():
        raise EvalError(f"no classifier at {str(path)!r}; train one with python -m model.classifier "
                        f"--mnist PATH --out {path}")
    try:
        clf = Classifiers.from_pretrained(str(path)).eval()
    except Exception as e:
        reason = str(e).splitlines()[0][:160] if str(e) else ""
        raise EvalError(f"the classifier {str(path)!r} does not load ({type(e).__name__}"
                        f"{': ' + reason if reason else ''})") from None
    if clf.config.n_modalities != M:
        raise EvalError(f"the classifier has {clf.config.n_modalities} modalities, the samples {M}")
    if clf.config.data_seed != data_seed:
        raise EvalError(f"the classifier was trained on data seed {clf.config.data_seed}, the model on {data_seed}")
    return clf


def _pct(v):
    return "–" if v is None else f"{100 * v:.1f}"


def _fd(v):
    return "–" if v is None else f"{v:.2f}"


def markdown(r: dict) -> str:
    M = r["settings"]["n_modalities"]
    lines = [f"# Evaluation: {r['name']}", "",
             f"Source: `{r['source']}`. Test tuples conditioning: {r['settings']['n_cond']}; prior samples: "
             f"joint coherence {r['settings']['n_joint']}, Fréchet distance {r['settings']['n_fid']} per modality "
             f"against {r['settings']['n_fid_real']} real test images. Seed {r['settings']['seed']}.",
             "Digit entropy: entropy of the digits read in prior samples / log 10 (1 = all digits equally often; "
             "a collapsed generator scores high joint coherence with a low digit entropy).",
             f"Fréchet distance feature space: **{r['settings']['feature_space']}** (comparable only within "
             f"this space; not an FID).", "",
             "Coherence in %. Conditional: mean over the subsets of each size of the accuracy of the generated "
             "missing modalities. FD: mean over modalities.", "",
             "| stage | " + " | ".join(f"cond. {k} in" for k in range(1, M)) + " | cond. mean | joint | digit entropy | FD |",
             "|---|" + "---|" * (M + 3)]
    for stage in r["stages"]:
        c = r["conditional"].get(stage)
        p = r["prior"].get(stage, {})
        row = [stage_label(r, stage)] + [_pct(c["by_size"].get(str(k))) if c else "–" for k in range(1, M)]
        row += [_pct(c["mean"]) if c else "–", _pct(p.get("joint_coherence")), _fd(p.get("digit_entropy")),
                _fd(p.get("fd_mean"))]
        lines.append("| " + " | ".join(row) + " |")
    if "latent" in r["stages"]:
        lines += ["", "Prior samples have no latent revision (the posterior is the prior): their latent-revised "
                      "joint and FD are the proposal's."]
    lines += ["", "Fréchet distance per modality:", "",
              "| stage | " + " | ".join(f"m{m}" for m in range(M)) + " |", "|---|" + "---|" * M]
    for stage, p in r["prior"].items():
        if "fd" in p:
            lines.append(f"| {stage_label(r, stage)} | " + " | ".join(_fd(v) for v in p["fd"]) + " |")
    ref = r.get("reference", {})
    if ref:
        lines += ["", f"Reference, real test tuples: joint coherence {_pct(ref['joint_coherence_real'])} %, "
                      f"classifier accuracy per modality {[round(100 * a, 1) for a in ref['classifier_accuracy']]} %."]
    cv = r.get("curve")
    if cv:
        lines += ["", f"Sampling-efficiency curve ({cv['n']} prior samples, {cv['n']} one-modality conditionals):", "",
                  "| data steps | " + " | ".join(str(s) for s in cv["steps"]) + " |",
                  "|---|" + "---|" * len(cv["steps"])]
        for init in ("generator", "noise"):
            for key, fmt in (("joint_coherence", _pct), ("coherence_cond1", _pct), ("fd_mean", _fd)):
                lines.append(f"| {key} ({init} init) | " + " | ".join(fmt(v) for v in cv[init][key]) + " |")
    lines += ["", f"Evaluation took {r['minutes']:.1f} min."]
    return "\n".join(lines) + "\n"


def plot_curve(cv: dict, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key, label in zip(axes, ("coherence_cond1", "joint_coherence", "fd_mean"),
                              ("conditional coherence (1 observed)", "joint coherence", "Fréchet distance (mean)")):
        for init, style in (("generator", "o-"), ("noise", "s--")):
            ax.plot(cv["steps"], cv[init][key], style, label=f"chain from {init}")
        ax.set_xlabel("data-space Langevin steps")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_sample_grid(sampler, path, seed, n=8):
    from PIL import Image

    out = sampler.prior(0, n, _generator(seed, 4))
    Image.fromarray(render.side_by_side([render.sample_grid(x) for x in out.values()], gap=6)).save(path)


# ---------------------------------------------------------------- the command

def evaluate(args) -> dict:
    from .data import load_dataset
    from .device import resolve_device

    t0 = time.time()
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(getattr(args, "device", "cpu"))
    model = None
    if args.checkpoint:
        model, source = load_checkpoint(args.checkpoint, args.variant)
        model.to(device)
        ex_post = None
        if args.prior:
            from .prior import GaussianMixture

            if not Path(args.prior).is_file():
                raise EvalError(f"ex-post prior file not found: {args.prior!r} (written by python -m model.prior)")
            ex_post = GaussianMixture.load(args.prior)
        sampler = ModelSampler(model, source["variant"], args.latent_steps, args.data_steps, args.data_init,
                               args.ebm_latent_steps, ex_post)
        M, data_seed = model.config.n_modalities, model.config.data_seed
        name = args.name or Path(args.checkpoint).resolve().parent.name
    else:
        sampler = DumpSampler(args.samples)
        source = {"samples": str(args.samples), **sampler.meta}
        M, data_seed = int(sampler.meta.get("n_modalities", 5)), int(sampler.meta.get("data_seed", 0))
        name = args.name or sampler.meta.get("name", Path(args.samples).stem)
        args.n_joint = min(args.n_joint, sampler.n_prior)
        args.n_fid = min(args.n_fid, sampler.n_prior)
    clf = load_classifier(args.classifier, M, data_seed)
    try:
        test = load_dataset("test", M, data_seed, args.mnist, args.cache_dir, getattr(args, "dataset", "builtin"),
                            getattr(args, "data_dir", None))
    except Exception as e:
        raise EvalError(f"could not load the test split: {e}") from None
    try:
        features = InceptionFeatures(args.inception) if args.inception else ClassifierFeatures(clf)
    except (OSError, RuntimeError) as e:
        raise EvalError(str(e)) from e
    idx = eval_indices(len(test), args.n_cond, args.seed)
    if isinstance(sampler, DumpSampler):  # the test tuples the peer was conditioned on
        idx = np.asarray(sampler.f["cond_index"])[:args.n_cond]
    fid_idx = eval_indices(len(test), args.n_fid, args.seed + 1)
    progress = not args.quiet

    if not len(fid_idx) and not len(idx):
        raise EvalError("nothing to score: give --n-cond or --n-joint/--n-fid above 0 (and a dump that holds them)")
    # without FD (--n-fid 0, e.g. a dump of conditionals only) the real tuples' reference is read on the
    # conditioning tuples and there is no sampling curve (it plots FD)
    real = real_features(features, test, fid_idx) if len(fid_idx) else None
    ref_idx = fid_idx if len(fid_idx) else idx
    x_ref, y_ref = test.batch(torch.as_tensor(ref_idx))
    d_ref, _ = clf.predict(x_ref)
    reference = {"joint_coherence_real": (d_ref == d_ref[:, :1]).all(1).float().mean().item(),
                 "classifier_accuracy": (d_ref == y_ref[:, None]).float().mean(0).tolist()}

    cond = conditional_coherence(sampler, clf, test, idx, args.seed, args.batch, progress) if args.n_cond else {}
    prior = prior_metrics(sampler, clf, features, real, args.n_joint, args.n_fid, args.seed, args.batch, progress)
    curve = None
    if model is not None and sampler.has_ebm and args.curve_steps and args.n_curve and real is not None:
        curve = sampling_curve(model, clf, features, real, test, idx, args.curve_steps, args.n_curve, args.seed,
                               args.latent_steps, progress)

    stages = ordered_stages(list(sampler.cond_stages) + list(sampler.prior_stages))
    final = stages[-1]
    summary = {}
    for key, stage in (("proposal", "proposal"), ("revised", final)):
        c, p = cond.get(stage), prior.get(stage) or prior.get("proposal", {})
        summary[key] = {"stage": stage, "coherence_cond": c and c["mean"], "coherence_cond1": c and c["by_size"].get("1"),
                        "coherence_joint": p.get("joint_coherence"), "digit_entropy": p.get("digit_entropy"),
                        "fd_mean": p.get("fd_mean")}
    cfg = model.config if model is not None else None
    settings = {"n_modalities": M, "data_seed": data_seed, "n_cond": len(idx), "n_joint": args.n_joint,
                "n_fid": args.n_fid, "n_fid_real": len(fid_idx), "seed": args.seed, "batch": args.batch,
                "feature_space": features.name, "inception": args.inception, "classifier": args.classifier}
    if cfg is not None:
        ls = cfg.latent_steps if args.latent_steps is None else args.latent_steps
        ds = cfg.data_steps if args.data_steps is None else args.data_steps
        settings["chains"] = {
            "latent_steps": ls, "latent_step_size": cfg.latent_step_size, "latent_noise": cfg.latent_noise,
            "latent_temperature": cfg.latent_temperature,
            "data_steps": ds if sampler.has_ebm else 0, "data_init": sampler.data_init,
            "data_step_size": cfg.data_step_size,
            "data_noise": cfg.data_noise, "data_temperature": cfg.data_temperature,
            "ebm_latent_steps": ("ebm_latent" in sampler.prior_stages) * (
                cfg.ebm_latent_steps if args.ebm_latent_steps is None else args.ebm_latent_steps),
            "ebm_latent_cond_steps": ("ebm_latent" in sampler.cond_stages) * (
                cfg.ebm_latent_cond_steps if args.ebm_latent_steps is None else args.ebm_latent_steps),
            "ebm_latent_step_size": cfg.ebm_latent_step_size, "ebm_latent_noise": cfg.ebm_latent_noise,
            "ebm_latent_cond_step_size": cfg.ebm_latent_cond_step_size, "ebm_latent_cond_noise": cfg.ebm_latent_cond_noise,
            "prior": args.prior or "N(0, I)"}
    r = {"name": name, "source": source, "settings": settings, "stages": stages, "summary": summary,
         "conditional": cond, "prior": prior, "reference": reference, "curve": curve,
         "minutes": (time.time() - t0) / 60}

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(r, indent=2))
    (out / "metrics.md").write_text(markdown(r))
    if curve:
        plot_curve(curve, out / "curve.png")
    n_grid = min(8, sampler.n_prior) if isinstance(sampler, DumpSampler) else 8
    (out / "samples.png").unlink(missing_ok=True)
    if n_grid:   # a dump of conditionals only has no prior samples to show
        save_sample_grid(sampler, out / "samples.png", args.seed, n_grid)
    return r


def plot_trend(runs, xs, xlabel, path):
    """Each summary metric (proposal and revised) against a number per run, e.g. the training data steps."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, key, label in zip(axes, ("coherence_cond1", "coherence_joint", "fd_mean"),
                              ("coherence, 1 observed modality", "joint coherence", "Fréchet distance")):
        for stage, style in (("proposal", "o--"), ("revised", "s-")):
            pts = [(x, r["summary"][stage].get(key)) for x, r in zip(xs, runs)
                   if r["summary"][stage].get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), style, label=stage)
        ax.set_xlabel(xlabel)
        ax.set_xticks(xs)
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compare(paths, out, names=None, x=None, xlabel="training data-space Langevin steps") -> str:
    """The combined table of several metrics.json files and the headline plane (FD vs coherence).
    With ``x`` (one number per file), also each metric against it (trend.png), e.g. the step ablation."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = []
    for i, p in enumerate(paths):
        if not Path(p).is_file():
            raise EvalError(f"metrics file not found: {str(p)!r}")
        r = json.loads(Path(p).read_text())
        if names:
            r["name"] = names[i]
        runs.append(r)
    if x is not None and len(x) != len(runs):
        raise EvalError(f"--x has {len(x)} numbers for {len(runs)} metrics files")
    spaces = {r["settings"]["feature_space"] for r in runs}
    M = runs[0]["settings"]["n_modalities"]
    lines = ["# Models compared", "", f"Fréchet distance feature space: {' / '.join(sorted(spaces))}."
             + (" **The runs use different feature spaces: their FDs do not compare.**" if len(spaces) > 1 else ""),
             "Coherence in %; FD mean over modalities; 'revised' = the last stage of each model.", "",
             "| model | samples | " + " | ".join(f"cond. {k} in" for k in range(1, M))
             + " | cond. mean | joint | digit entropy | FD |",
             "|---|---|" + "---|" * (M + 3)]
    for r in runs:
        for stage in r["stages"]:
            c, p = r["conditional"].get(stage), r["prior"].get(stage, {})
            row = [r["name"], stage_label(r, stage)]
            row += [_pct(c["by_size"].get(str(k))) if c else "–" for k in range(1, M)]
            row += [_pct(c["mean"]) if c else "–", _pct(p.get("joint_coherence")), _fd(p.get("digit_entropy")),
                    _fd(p.get("fd_mean"))]
            lines.append("| " + " | ".join(row) + " |")
    md = "\n".join(lines) + "\n"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.md").write_text(md)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for ax, key, label in zip(axes, ("coherence_cond", "coherence_joint"),
                              ("conditional coherence (mean over subset sizes)", "joint coherence")):
        for i, r in enumerate(runs):
            color = f"C{i % 10}"
            a, b = r["summary"]["proposal"], r["summary"]["revised"]
            if a.get("fd_mean") is None or a.get(key) is None:
                continue
            ax.scatter(a["fd_mean"], a[key], facecolors="none", edgecolors=color, s=60)
            if b["stage"] != a["stage"] and b.get(key) is not None:
                ax.scatter(b["fd_mean"], b[key], color=color, s=60)
                ax.annotate("", (b["fd_mean"], b[key]), (a["fd_mean"], a[key]),
                            arrowprops=dict(arrowstyle="->", color=color, alpha=0.6))
            ax.scatter([], [], color=color, label=r["name"])
        ax.set_xlabel(f"Fréchet distance ({'/'.join(sorted(spaces))})" if len(spaces) == 1 else "Fréchet distance")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, title="hollow: proposal, filled: revised", title_fontsize=8)
    fig.suptitle("Each model on the Fréchet distance – coherence plane (upper left is better)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "headline.png", dpi=120)
    plt.close(fig)
    (out / "comparison.json").write_text(json.dumps({r["name"]: r["summary"] for r in runs}, indent=2))
    if x is not None:
        plot_trend(runs, x, xlabel, out / "trend.png")
    return md


def parse_args(argv=None):
    from .cli import ConfigParser, HelpFormatter
    from .config import VARIANTS

    p = ConfigParser(prog="python -m model.evaluate", description=__doc__, formatter_class=HelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a model directory (config.json + model.safetensors)")
    src.add_argument("--samples", help="a peer's generated-image dump (.npz written by model.evaluate.save_dump)")
    p.add_argument("--classifier", default="checkpoints/classifier",
                   help="the per-modality digit classifiers that judge coherence (python -m model.classifier)")
    p.add_argument("--mnist", default=None, help="local MNIST .npz (e.g. ../shared/data/mnist.npz); default: download")
    p.add_argument("--cache-dir", default="data_cache", help="where the built test set is cached")
    p.add_argument("--dataset", choices=("builtin", "polymnist"), default="builtin",
                   help="builtin: the PolyMNIST-style set built from MNIST (default); polymnist: the released "
                        "files in --data-dir (then --classifier must be trained on them too)")
    p.add_argument("--data-dir", default=None, help="the PolyMNIST release: train/ and test/ with m0..m4 of "
                                                    "<index>.<label>.png (with --dataset polymnist)")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps: "
                                                     "where the model's chains run (the judges stay on the CPU)")
    p.add_argument("--out", default=None, help="output folder (default: CHECKPOINT/../eval)")
    p.add_argument("--name", default=None, help="the model's name in tables (default: the run folder's name)")
    p.add_argument("--variant", default=None, choices=VARIANTS, help="override the variant read from train_config.json "
                                                   "('vae': no data stage, its EBM is untrained)")
    p.add_argument("--n-cond", type=int, default=1000, help="test tuples per subset for conditional coherence")
    p.add_argument("--n-joint", type=int, default=10000, help="prior samples for joint coherence")
    p.add_argument("--n-fid", type=int, default=10000, help="prior samples (and real test images) per modality for FD")
    p.add_argument("--n-curve", type=int, default=1000, help="samples per point of the sampling-efficiency curve")
    p.add_argument("--curve-steps", default="0,5,10,20,30,60", help="data-Langevin step counts of the curve ('' = off)")
    p.add_argument("--latent-steps", type=int, default=None, help="override the model's test-time latent steps")
    p.add_argument("--data-steps", type=int, default=None, help="override the model's test-time data steps")
    p.add_argument("--ebm-latent-steps", type=int, default=None,
                   help="override the model's test-time EBM latent-chain steps, conditional and prior samples alike "
                        "(0 = no 'ebm_latent' stage)")
    p.add_argument("--prior", default=None, help="ex-post prior file (python -m model.prior) for the prior samples "
                                                 "instead of N(0, I)")
    p.add_argument("--data-init", choices=("generator", "noise"), default=None,
                   help="start of the data chains (default: noise for a 'noise_init' checkpoint, else the generator)")
    p.add_argument("--inception", default=None, help="torchvision inception_v3 state_dict file: FD on its pool features")
    p.add_argument("--batch", type=int, default=500, help="samples generated per call")
    p.add_argument("--seed", type=int, default=0, help="seeds the test tuples and the chains")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    a = p.parse_args(argv)
    a.curve_steps = [int(s) for s in a.curve_steps.split(",") if s.strip()]
    if a.out is None:
        a.out = str(Path(a.checkpoint or a.samples).resolve().parent / "eval")
    return a


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["compare"]:
            p = argparse.ArgumentParser(prog="python -m model.evaluate compare",
                                        description="Combined table + headline FD-vs-coherence plot.")
            p.add_argument("metrics", nargs="+", help="metrics.json files written by python -m model.evaluate")
            p.add_argument("--out", required=True, help="output folder: comparison.md, comparison.json, headline.png")
            p.add_argument("--names", default=None, help="comma-separated display names, one per file")
            p.add_argument("--x", default=None, help="comma-separated numbers, one per file (e.g. the training "
                           "data steps of a step ablation): also plot every metric against them (trend.png)")
            p.add_argument("--x-label", default="training data-space Langevin steps", help="the x axis of trend.png")
            a = p.parse_args(argv[1:])
            x = [float(v) for v in a.x.split(",")] if a.x else None
            print(compare(a.metrics, a.out, a.names.split(",") if a.names else None, x, a.x_label))
            print(f"wrote {a.out}/comparison.md, comparison.json, headline.png" + (", trend.png" if x else ""))
            return
        a = parse_args(argv)
        r = evaluate(a)
        print(markdown(r))
        grid = ", samples.png" if (Path(a.out) / "samples.png").exists() else ""
        print(f"wrote {a.out}/metrics.json, metrics.md{grid}" + (", curve.png" if r["curve"] else ""))
    except (EvalError, DeviceError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
