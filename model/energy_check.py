"""Does the EBM's energy mean "data-like"? The energy of real test tuples against the energy of what the sampler
makes and of chains from noise, with the AUROC of the energy separating real tuples from each group.

    python -m model.energy_check --checkpoint checkpoints/mebm --mnist ../shared/data/mnist.npz --out runs/energy

Groups (N seeded test tuples; as many samples and noise tuples):
- real: the test tuples themselves;
- joint samples from the ex-post prior (N(0, I) when the checkpoint has none, or with --prior normal): the
  proposal, after the EBM latent revision, and the final samples;
- conditional samples given one observed modality (tuple i observes modality i mod M): the proposal and the final
  samples (the observed modality is the real one in both);
- mismatched tuples: each test tuple with one modality (uniform) taken from a test tuple of another digit: real
  images whose modalities disagree, which only an energy that reads joint coherence ranks above the real tuples;
- uniform noise, and data chains from uniform noise after each of --noise-steps steps, with the checkpoint's own
  data step size and noise.

AUROC of a group: the share of (real tuple, group member) pairs in which the real tuple has the lower energy (ties
count half). 1.0: every real tuple lower; 0.5: no separation; 0.0: every member of the group lower than every
real tuple. Mismatched tuples also get their paired share: how often a tuple's real version is the lower of the
two. Outputs in --out: energy.json (every energy and figure) and energy.md (the table).
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm import tqdm

from .cli import ConfigParser, HelpFormatter, add_dataclass_args
from .config import DATASETS
from .data import load_dataset
from .device import DeviceError
from .evaluate import EvalError, eval_indices, load_sampler
from .langevin import data_revision, stage_title
from .networks import observed_mask
from .report import energy_markdown, write_report
from .sampler import seeded_generator


def auroc(real, other) -> float:
    """The share of pairs (r in ``real``, o in ``other``) with r < o, ties counting half: the AUROC of the energy
    as a detector of real tuples (lower energy = real)."""
    real, other = np.asarray(real, float).ravel(), np.sort(np.asarray(other, float).ravel())
    if not len(real) or not len(other):
        raise ValueError("auroc needs at least one value in each group")
    above = len(other) - np.searchsorted(other, real, side="right")
    ties = np.searchsorted(other, real, side="right") - np.searchsorted(other, real, side="left")
    return float((above + 0.5 * ties).sum() / (len(real) * len(other)))


MISMATCHED = "mismatched: one modality from another digit"


def mismatched(test, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """``x`` with, per tuple, one modality (uniform) replaced by that modality of a random test tuple whose digit
    differs from the tuple's (``y``)."""
    n, M = x.shape[:2]
    donor = torch.randint(len(test), (n,), generator=g)
    while (same := test.y[donor] == y).any():
        donor[same] = torch.randint(len(test), (int(same.sum()),), generator=g)
    m = torch.randint(M, (n,), generator=g)
    out = x.clone()
    out[torch.arange(n), m] = test.x[donor, m].float() / 255.0
    return out


def summarize(energies: dict[str, np.ndarray], real: str = "real") -> dict:
    """{group: {"n", "mean", "sd", "auroc"}} (the real group's AUROC against itself is 0.5 and left out); the
    mismatched group also gets "paired": the share of tuples whose real version has the lower energy (each
    mismatched tuple against its own real tuple, which the AUROC's pairs across tuples blur)."""
    out = {}
    for name, e in energies.items():
        e = np.asarray(e, float)
        out[name] = {"n": len(e), "mean": float(e.mean()), "sd": float(e.std(ddof=1)) if len(e) > 1 else 0.0,
                     "auroc": None if name == real else auroc(energies[real], e)}
        if name == MISMATCHED and len(e) == len(energies[real]):
            out[name]["paired"] = paired_share(energies[real], e)
    return out


def paired_share(real, other) -> float:
    """The share of i with real[i] < other[i] (ties count half)."""
    real, other = np.asarray(real, float).ravel(), np.asarray(other, float).ravel()
    return float(((real < other) + 0.5 * (real == other)).mean())


@dataclass
class EnergyCheckConfig:
    """One energy check, saved in energy.json ("settings")."""

    checkpoint: str = "checkpoints/mebm"  # a model directory (config.json + model.safetensors; a relative path
                                          # missing here is looked up in the repository checkout)
    mnist: str | None = None       # local MNIST .npz (e.g. ../shared/data/mnist.npz) or torchvision root; none =
                                   # download
    cache_dir: str = "data_cache"  # where the built test set is cached
    dataset: str = "builtin"       # builtin: the PolyMNIST-style set built from MNIST; polymnist: the released files
                                   # in --data-dir
    data_dir: str | None = None    # the PolyMNIST release: train/ and test/ with m0..m4 of <index>.<label>.png
    device: str = "auto"           # auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps
    out: str = "runs/energy_check"  # output folder (energy.json, energy.md), created
    n: int = 300                   # test tuples; as many joint and conditional samples and noise tuples
    noise_steps: str = "10,30,100"  # data-chain step counts from uniform noise at which the energy is read
    prior: str = "ex-post"         # joint samples start from: ex-post (the prior beside the weights; N(0, I) when
                                   # there is none) or normal (N(0, I))
    batch: int = 100               # tuples per model call
    seed: int = 0                  # seeds the test tuples, the samples and the noise
    threads: int | None = None     # torch.set_num_threads (none = torch's default)
    quiet: bool = False            # no progress bars

    def __post_init__(self):
        if self.n < 2:
            raise EvalError("--n must be at least 2")
        if self.batch < 1:
            raise EvalError("--batch must be at least 1")
        if self.prior not in ("ex-post", "normal"):
            raise EvalError(f"--prior must be ex-post or normal, not {self.prior!r}")
        try:
            steps = self.steps
        except ValueError:
            raise EvalError(f"--noise-steps: comma-separated step counts, not {self.noise_steps!r}") from None
        if any(s < 1 for s in steps):
            raise EvalError("--noise-steps: every step count must be at least 1")

    @property
    def steps(self) -> list[int]:
        return sorted({int(s) for s in self.noise_steps.split(",") if s.strip()})


@torch.no_grad()
def energy_check(cfg: EnergyCheckConfig) -> dict:
    """Every group's energies and their summary (see the module's docstring); writes energy.json and energy.md."""
    t0 = time.time()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    sampler = load_sampler(cfg.checkpoint, device=cfg.device)
    prior = "ex-post" if cfg.prior == "ex-post" and sampler.prior is not None else "normal"
    model, chains, dev = sampler.model, sampler.chains, sampler.device
    E, M = model.energy, model.config.n_modalities
    try:
        test = load_dataset("test", M, model.config.data_seed, cfg.mnist, cfg.cache_dir, cfg.dataset, cfg.data_dir)
    except Exception as e:
        raise EvalError(f"could not load the test split: {e}") from None
    idx = eval_indices(len(test), cfg.n, cfg.seed)
    groups: dict[str, list] = {}

    def add(name, x):
        groups.setdefault(name, []).append(E(x.to(dev)).float().cpu().numpy())

    joint, cond = f"joint ({'ex-post prior' if prior == 'ex-post' else 'N(0, I)'})", "conditional (1 observed)"
    batches = range(0, len(idx), cfg.batch)
    for i in tqdm(batches, desc="energy check", disable=cfg.quiet, dynamic_ncols=True):
        b = idx[i:i + cfg.batch]
        x, y = test.batch(torch.as_tensor(b))
        add("real", x)
        add(MISMATCHED, mismatched(test, x, y, torch.Generator().manual_seed(cfg.seed * 1000 + i)))
        out = sampler.joint(len(b), prior=prior, generator=seeded_generator(cfg.seed, 11, i, device=dev))
        for stage in ("proposal", "ebm_latent", "final"):
            if stage in out:
                add(f"{joint}: {'final' if stage == 'final' else stage_title(stage)}", out[stage])
        for m in range(M):   # tuple i observes modality i mod M
            rows = [j for j in range(len(b)) if (i + j) % M == m]
            if rows:
                out = sampler.conditional(x[rows], observed_mask([m], M),
                                          generator=seeded_generator(cfg.seed, 12, i, m, device=dev))
                for stage in ("proposal", "final"):
                    add(f"{cond}: {stage}", out[stage])
        g = seeded_generator(cfg.seed, 13, i, device=dev)
        noise = torch.rand(x.shape, generator=g, device=dev)
        add("uniform noise", noise)
        for st in data_revision(E, noise, cfg.steps[-1], chains.data.step_size, chains.data.noise, generator=g):
            if st.step in cfg.steps:
                groups.setdefault(f"data chain from noise, {st.step} steps", []).append(st.energy.float().cpu().numpy())
    energies = {k: np.concatenate(v) for k, v in groups.items()}
    settings = {**asdict(cfg), "prior_used": prior, "n_modalities": M, "data_step_size": chains.data.step_size,
                "data_noise": chains.data.noise, "chains": chains.flat()}
    r = {"checkpoint": str(cfg.checkpoint), "settings": settings, "groups": summarize(energies),
         "energies": {k: v.tolist() for k, v in energies.items()}, "minutes": (time.time() - t0) / 60}
    write_report(cfg.out, "energy", r, energy_markdown(r))
    return r


def build_parser() -> ConfigParser:
    p = ConfigParser(prog="python -m model.energy_check", description=__doc__, formatter_class=HelpFormatter)
    add_dataclass_args(p, EnergyCheckConfig, choices={"dataset": DATASETS, "prior": ("ex-post", "normal")})
    return p


def main(argv=None):
    p = build_parser()
    values = vars(p.parse_args(argv))
    try:
        cfg = EnergyCheckConfig(**values)
    except EvalError as e:
        p.error(str(e))
    try:
        r = energy_check(cfg)
    except (EvalError, DeviceError, ValueError, OSError) as e:
        sys.exit(f"error: {e}")
    print(energy_markdown(r))
    print(f"wrote {cfg.out}/energy.json, energy.md")


if __name__ == "__main__":
    main()
