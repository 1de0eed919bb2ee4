"""The three models of the method, for M image modalities of 3x28x28 in [0, 1].

- ``Generator``: shared latent z ~ N(0, I), one conv decoder per modality, Gaussian likelihood
  p(x_m | z) = N(g_m(z), sigma^2 I) with sigma fixed by the config.
- ``Inference``: one conv encoder ("expert") per modality; for an observed subset S the joint
  inference model is the mixture q(z | x_S) = (1/|S|) sum_{m in S} N(mu_m(x_m), diag(s_m^2(x_m))).
- ``EnergyModel``: E(x_1..x_M), one scalar per sample; per-modality conv trunks, features
  concatenated, a joint MLP head (so the energy couples the modalities).

``MultimodalEBMVAE`` holds all three and saves/loads with ``save_pretrained`` /
``from_pretrained`` (safetensors + config.json) through ``huggingface_hub.PyTorchModelHubMixin`` (``HubMixin``:
quiet local loads).
"""
from __future__ import annotations

import logging
import math
import os

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from .config import ModelConfig

LOGVAR_MIN, LOGVAR_MAX = -10.0, 4.0
log = logging.getLogger("mebm.networks")


class HubMixin(PyTorchModelHubMixin):
    """``PyTorchModelHubMixin`` (safetensors + config.json) whose loads from a local folder print nothing:
    huggingface_hub prints "Loading weights from local directory" on each; here it is a debug log line."""

    @classmethod
    def _from_pretrained(cls, *, model_id: str, map_location: str = "cpu", strict: bool = False, **kwargs):
        if not os.path.isdir(model_id):
            return super()._from_pretrained(model_id=model_id, map_location=map_location, strict=strict, **kwargs)
        log.debug("loading %s weights from %s", cls.__name__, model_id)
        hub_args = ("revision", "cache_dir", "force_download", "local_files_only", "token")
        model = cls(**{k: v for k, v in kwargs.items() if k not in hub_args})
        return cls._load_as_safetensor(model, os.path.join(model_id, "model.safetensors"), map_location, strict)


def _encoder_trunk(w: int, sn=lambda m: m) -> nn.Sequential:
    return nn.Sequential(
        sn(nn.Conv2d(3, w, 4, 2, 1)), nn.SiLU(),          # 14x14
        sn(nn.Conv2d(w, 2 * w, 4, 2, 1)), nn.SiLU(),      # 7x7
        sn(nn.Conv2d(2 * w, 4 * w, 3, 2, 1)), nn.SiLU(),  # 4x4
        nn.Flatten(),
    )


class Decoder(nn.Module):
    """z -> mean image g_m(z) in [0, 1]."""

    def __init__(self, latent_dim: int, w: int):
        super().__init__()
        self.w = w
        self.fc = nn.Linear(latent_dim, 4 * w * 4 * 4)
        self.net = nn.Sequential(
            nn.SiLU(),
            nn.ConvTranspose2d(4 * w, 2 * w, 3, 2, 1), nn.SiLU(),  # 7x7
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.SiLU(),      # 14x14
            nn.ConvTranspose2d(w, 3, 4, 2, 1),                     # 28x28
        )

    def forward(self, z):
        return torch.sigmoid(self.net(self.fc(z).view(-1, 4 * self.w, 4, 4)))


class Generator(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.latent_dim, self.sigma = cfg.latent_dim, cfg.sigma
        self.decoders = nn.ModuleList(Decoder(cfg.latent_dim, cfg.width) for _ in range(cfg.n_modalities))

    def forward(self, z: torch.Tensor, modalities=None) -> torch.Tensor:
        """Mean images [B, len(modalities), 3, 28, 28] (all modalities by default)."""
        mods = range(len(self.decoders)) if modalities is None else modalities
        return torch.stack([self.decoders[m](z) for m in mods], dim=1)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor, observed: torch.Tensor | None = None):
        """sum_{m in S} log N(x_m; g_m(z), sigma^2 I) per sample [B], up to the constant
        -D/2 log(2 pi sigma^2). ``observed``: bool [M] mask of S (all by default)."""
        mods = range(x.shape[1]) if observed is None else observed.nonzero().flatten().tolist()
        mean = self(z, mods)
        return -((x[:, mods] - mean) ** 2).flatten(1).sum(1) / (2 * self.sigma ** 2)

    def log_posterior(self, z, x, observed=None):
        """log p(z) + sum_{m in S} log p(x_m | z), unnormalised, per sample [B]."""
        return -0.5 * (z ** 2).sum(1) + self.log_likelihood(x, z, observed)


class Inference(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.latent_dim = cfg.latent_dim
        w = cfg.width
        self.experts = nn.ModuleList(
            nn.Sequential(_encoder_trunk(w), nn.Linear(4 * w * 16, 2 * cfg.latent_dim))
            for _ in range(cfg.n_modalities))

    def experts_params(self, x, observed=None):
        """mu, logvar of each observed expert: [B, |S|, d] each, and the list S."""
        mods = range(x.shape[1]) if observed is None else observed.nonzero().flatten().tolist()
        mods = list(mods)
        out = torch.stack([self.experts[m](x[:, m]) for m in mods], dim=1)
        mu, logvar = out.chunk(2, dim=-1)
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX), mods

    def sample(self, x, observed=None, generator: torch.Generator | None = None):
        """z ~ q(z | x_S), reparameterised: each sample picks one observed expert uniformly."""
        mu, logvar, _ = self.experts_params(x, observed)
        b, k, d = mu.shape
        pick = torch.randint(k, (b,), generator=generator, device=mu.device)
        mu, logvar = mu[torch.arange(b), pick], logvar[torch.arange(b), pick]
        eps = torch.randn(b, d, generator=generator, device=mu.device)
        return mu + eps * (0.5 * logvar).exp()

    def log_prob(self, z, x, observed=None):
        """log q(z | x_S) of the mixture, per sample [B]."""
        return torch.logsumexp(self.expert_log_probs(z, x, observed), dim=1) - math.log(
            int(x.shape[1] if observed is None else observed.sum()))

    def expert_log_probs(self, z, x, observed=None):
        """log q_m(z | x_m) for each observed expert: [B, |S|]."""
        mu, logvar, _ = self.experts_params(x, observed)
        return gaussian_log_prob(z[:, None], mu, logvar)


def gaussian_log_prob(z, mu, logvar):
    return -0.5 * (((z - mu) ** 2) / logvar.exp() + logvar + math.log(2 * math.pi)).sum(-1)


class EnergyModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm if cfg.ebm_spectral_norm else (lambda m: m)
        w, f = cfg.ebm_width, cfg.ebm_features
        self.trunks = nn.ModuleList(
            nn.Sequential(_encoder_trunk(w, sn), sn(nn.Linear(4 * w * 16, f)), nn.SiLU())
            for _ in range(cfg.n_modalities))
        self.head = nn.Sequential(sn(nn.Linear(cfg.n_modalities * f, 2 * f)), nn.SiLU(), sn(nn.Linear(2 * f, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Energy per sample [B] of the joint tuple x [B, M, 3, 28, 28] in [0, 1]; low = data-like."""
        h = torch.cat([t(2 * x[:, m] - 1) for m, t in enumerate(self.trunks)], dim=1)
        return self.head(h).squeeze(1)


class MultimodalEBMVAE(
    nn.Module, HubMixin,
    library_name="multimodal-ebm-mcmc-revision",
    tags=["energy-based-model", "multimodal-vae", "langevin", "polymnist"],
    license="mit",
):
    """Joint EBM + shared-latent generator + MoE inference model, learned together by MCMC revision. These are the
    networks alone: ``model.Sampler.from_pretrained`` loads them with the ex-post prior and the chain settings."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if isinstance(config, dict):  # from config.json
            config = ModelConfig.from_dict(config)
        self.config = config
        self.generator = Generator(config)
        self.inference = Inference(config)
        self.energy = EnergyModel(config)

    @property
    def n_modalities(self) -> int:
        return self.config.n_modalities


def observed_mask(observed, n_modalities: int) -> torch.Tensor:
    """Bool [M] mask from a list of modality indices (or a mask)."""
    if isinstance(observed, torch.Tensor) and observed.dtype == torch.bool:
        return observed
    mask = torch.zeros(n_modalities, dtype=torch.bool)
    mask[list(observed)] = True
    return mask
