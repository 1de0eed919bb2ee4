"""The ex-post prior: a Gaussian mixture fitted to the inferred latents of the training set, sampled
instead of N(0, I) for unconditional generation (the trick MultiVae documents for multimodal VAEs,
whose prior samples fall between the clusters that the inference model actually uses).

    python -m model.prior --checkpoint checkpoints/mebm --mnist ../shared/data/mnist.npz [--components 20]

fits the mixture to one latent z ~ q(z | x_1..x_M) per training tuple (the MoE joint posterior: a
uniformly chosen expert's sample; ``--latents poe``: a sample of the product of the experts instead) by EM
(full covariances, seeded k-means++-style start) and writes
CHECKPOINT/prior.safetensors (a few kB, ignored by ``from_pretrained``; ``GaussianMixture.load``
reads it). ``StandardNormal`` is the model's own prior with the same interface.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from .cli import HelpFormatter, add_data_args
from .data import load_dataset
from .device import resolve_device
from .networks import MultimodalEBMVAE
from .paths import find_checkpoint

PRIOR_FILE = "prior.safetensors"


class StandardNormal:
    """N(0, I): ``sample(n, generator)`` and ``energy(z)`` = -log p(z) up to a constant."""

    def __init__(self, dim: int):
        self.dim = dim

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        dev = generator.device if generator is not None else torch.device("cpu")
        return torch.randn(n, self.dim, generator=generator, device=dev)

    def energy(self, z: torch.Tensor) -> torch.Tensor:
        return 0.5 * (z ** 2).sum(1)


class GaussianMixture:
    """sum_k w_k N(mu_k, C_k) with full covariances. ``energy(z)`` = -log p(z) (exact, differentiable)."""

    def __init__(self, weights: torch.Tensor, means: torch.Tensor, covariances: torch.Tensor):
        self.weights, self.means, self.covariances = weights.double(), means.double(), covariances.double()
        self.chol = torch.linalg.cholesky(self.covariances)          # [K, d, d]
        self.dim = means.shape[1]

    @property
    def n_components(self) -> int:
        return len(self.weights)

    def component_log_probs(self, z: torch.Tensor) -> torch.Tensor:
        """log w_k + log N(z; mu_k, C_k): [B, K]."""
        z = z.double()
        maha = torch.stack([   # one triangular solve per component: ||L_k^{-1} (z - mu_k)||^2
            (torch.linalg.solve_triangular(L, (z - mu).T, upper=False) ** 2).sum(0)
            for L, mu in zip(self.chol, self.means)], dim=1)                    # [B, K]
        logdet = 2 * self.chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        return self.weights.log()[None] - 0.5 * (maha + logdet[None] + self.dim * math.log(2 * math.pi))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(self.component_log_probs(z), dim=1).to(z.dtype)

    def energy(self, z: torch.Tensor) -> torch.Tensor:
        return -self.log_prob(z)

    def to(self, device) -> "GaussianMixture":
        return GaussianMixture(self.weights.to(device), self.means.to(device), self.covariances.to(device))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws (on the generator's device, float32)."""
        dev = generator.device if generator is not None else torch.device("cpu")
        k = torch.multinomial(self.weights.float().to(dev), n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64, device=dev)
        return (self.means.to(dev)[k] + (self.chol.to(dev)[k] @ eps[..., None])[..., 0]).float()

    # ------------------------------------------------------------ fitting, saving

    @classmethod
    def fit(cls, z: torch.Tensor, n_components: int = 20, iters: int = 100, seed: int = 0, reg: float = 1e-4,
            tol: float = 1e-5) -> "GaussianMixture":
        """EM on z [N, d] from a seeded k-means++-style start (means = k spread data points)."""
        z = z.double()
        n, d = z.shape
        if n < n_components:
            raise ValueError(f"{n} latents cannot fit {n_components} components")
        g = torch.Generator().manual_seed(seed)
        idx = [int(torch.randint(n, (1,), generator=g))]
        dist = ((z - z[idx[0]]) ** 2).sum(1)
        for _ in range(n_components - 1):
            idx.append(int(torch.multinomial(dist / dist.sum(), 1, generator=g)))
            dist = torch.minimum(dist, ((z - z[idx[-1]]) ** 2).sum(1))
        cov0 = torch.cov(z.T) + reg * torch.eye(d, dtype=z.dtype)
        gmm = cls(torch.full((n_components,), 1.0 / n_components, dtype=z.dtype), z[idx].clone(),
                  cov0.expand(n_components, d, d).clone())
        last = -float("inf")
        for _ in range(iters):
            lp = gmm.component_log_probs(z)                                     # E step
            ll = torch.logsumexp(lp, 1)
            resp = (lp - ll[:, None]).exp()                                     # [N, K]
            nk = resp.sum(0) + 1e-10                                            # M step
            means = resp.T @ z / nk[:, None]
            covs = torch.stack([((resp[:, k, None] * (z - means[k])).T @ (z - means[k])) for k in range(n_components)])
            covs = covs / nk[:, None, None]
            covs = covs + reg * torch.eye(d, dtype=z.dtype)
            gmm = cls(nk / n, means, covs)
            mean_ll = ll.mean().item()
            if mean_ll - last < tol:
                break
            last = mean_ll
        gmm.train_log_likelihood = gmm.log_prob(z).mean().item()
        return gmm

    def save(self, path) -> None:
        save_file({"weights": self.weights.float().contiguous(), "means": self.means.float().contiguous(),
                   "covariances": self.covariances.float().contiguous()}, str(path),
                  metadata={"kind": "gaussian_mixture"})

    @classmethod
    def load(cls, path) -> "GaussianMixture":
        t = load_file(str(path))
        return cls(t["weights"], t["means"], t["covariances"])


def load_prior(path, latent_dim: int) -> tuple[GaussianMixture | None, str]:
    """The ex-post prior in ``path`` (a prior.safetensors) for a ``latent_dim``-d latent, and a note for the log;
    (None, why) when there is none, it does not load or does not fit (unconditional samples then use N(0, I))."""
    path = Path(path)
    if not path.is_file():
        return None, f"no ex-post prior ({path.name}) beside the weights: unconditional samples use N(0, I)"
    try:
        prior = GaussianMixture.load(path)
    except Exception as e:
        return None, (f"the ex-post prior {path.name} does not load ({type(e).__name__}): unconditional samples "
                      f"use N(0, I)")
    if prior.dim != latent_dim:
        return None, (f"the ex-post prior {path.name} is {prior.dim}-d, the latent {latent_dim}-d: unconditional "
                      f"samples use N(0, I)")
    return prior, f"ex-post prior in use: {prior.n_components} components"


LATENTS = ("moe", "poe")


def product_of_experts(mu: torch.Tensor, logvar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalised product of Gaussian experts [B, K, d] -> mean, variance [B, d] (precision-weighted)."""
    precision = (-logvar).exp()
    var = 1.0 / precision.sum(1)
    return var * (mu * precision).sum(1), var


@torch.no_grad()
def inferred_latents(model, data, n: int | None = None, batch: int = 500, seed: int = 0, progress=True,
                     latents: str = "moe") -> torch.Tensor:
    """One z per training tuple, for the first n tuples: ``moe`` z ~ q(z | x_1..x_M), the model's own joint
    posterior (a uniformly chosen expert's sample); ``poe`` z ~ the product of the M experts (every modality
    must agree on z: more coherent joint samples, blurrier textures, see the README)."""
    if latents not in LATENTS:
        raise ValueError(f"latents must be one of {LATENTS}, not {latents!r}")
    n = len(data) if n is None else min(n, len(data))
    dev = next(model.parameters()).device
    g = torch.Generator(dev).manual_seed(seed)
    out = []
    for i in tqdm(range(0, n, batch), desc="inferring latents", disable=not progress, dynamic_ncols=True):
        x, _ = data.batch(torch.arange(i, min(n, i + batch)))
        if latents == "moe":
            z = model.inference.sample(x.to(dev), generator=g)
        else:
            mu, var = product_of_experts(*model.inference.experts_params(x.to(dev))[:2])
            z = mu + var.sqrt() * torch.randn(mu.shape, generator=g, device=dev)
        out.append(z.cpu())
    return torch.cat(out)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m model.prior", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a model directory (config.json + model.safetensors; a "
                   "relative path missing here is looked up in the repository checkout)")
    add_data_args(p)
    p.add_argument("--components", type=int, default=20, help="mixture components (MultiVae: 10-50)")
    p.add_argument("--latents", choices=LATENTS, default="moe",
                   help="the latents the mixture is fitted to: moe = z ~ q(z | x_1..x_M), the model's joint posterior; "
                        "poe = z ~ the product of the M experts (more coherent, blurrier joint samples)")
    p.add_argument("--n-fit", type=int, default=None, help="fit on the first N training tuples (none = all)")
    p.add_argument("--iters", type=int, default=100, help="EM iterations at most")
    p.add_argument("--seed", type=int, default=0, help="seeds the latents drawn and the EM start")
    p.add_argument("--out", default=None, help=f"output file, its folder created (none = CHECKPOINT/{PRIOR_FILE})")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (none = torch's default)")
    p.add_argument("--device", default="auto", help="where the latents are inferred: auto (cuda, then mps, then cpu), "
                                                    "cpu, cuda, cuda:N or mps (the mixture is fitted on the CPU)")
    a = p.parse_args(argv)
    try:
        if a.components < 1 or a.iters < 1:
            raise ValueError("--components and --iters must be at least 1")
        if a.threads:
            torch.set_num_threads(a.threads)
        checkpoint = find_checkpoint(a.checkpoint)
        if not (checkpoint / "config.json").is_file():
            raise FileNotFoundError(f"no model checkpoint at {a.checkpoint!r} (expected config.json + "
                                    f"model.safetensors)")
        t0 = time.time()
        model = MultimodalEBMVAE.from_pretrained(str(checkpoint)).eval().to(resolve_device(a.device))
        cfg = model.config
        data = load_dataset("train", cfg.n_modalities, cfg.data_seed, a.mnist, a.cache_dir, a.dataset, a.data_dir)
        z = inferred_latents(model, data, a.n_fit, seed=a.seed, latents=a.latents)
        gmm = GaussianMixture.fit(z, a.components, a.iters, a.seed)
        out = Path(a.out or checkpoint / PRIOR_FILE)
        out.parent.mkdir(parents=True, exist_ok=True)
        gmm.save(out)
        info = {"components": a.components, "latents": a.latents, "n_fit": len(z), "seed": a.seed, "iters": a.iters,
                "train_log_likelihood": gmm.train_log_likelihood,
                "standard_normal_log_likelihood": (-StandardNormal(z.shape[1]).energy(z).mean().item()
                                                   - 0.5 * z.shape[1] * math.log(2 * math.pi)),
                "minutes": (time.time() - t0) / 60}
        out.with_suffix(".json").write_text(json.dumps(info, indent=2))
        print(f"wrote {out}: {json.dumps(info)}")
    except (OSError, ValueError, RuntimeError) as e:  # MNISTError is a RuntimeError, DeviceError a ValueError
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
