"""The three models of the method, for M image modalities of 3x28x28 in [0, 1] and, when ``ModelConfig.text``
is set, a caption modality (docs/captions.md).

- ``Generator``: shared latent z ~ N(0, I), one conv decoder per modality, Gaussian likelihood
  p(x_m | z) = N(g_m(z), sigma^2 I) with sigma fixed by the config.
- ``Inference``: one conv encoder ("expert") per modality; for an observed subset S the joint
  inference model is the mixture q(z | x_S) = (1/|S|) sum_{m in S} N(mu_m(x_m), diag(s_m^2(x_m))).
- ``EnergyModel``: E(x_1..x_M), one scalar per sample; per-modality conv trunks, features
  concatenated, a joint MLP head (so the energy couples the modalities).

The caption modality is index M of observed masks ([M + 1] bools). A caption enters every network as soft one-hot
vectors t [B, L, V] (each position a probability vector over the vocabulary: ``text_one_hot`` of token ids for an
observed caption, ``text_relaxation`` of logits for a chain's state): the generator's text decoder gives logits
per position with the categorical likelihood sum_l sum_v t_lv log softmax(logits)_lv, the inference model has a
text expert, and the energy has a text trunk whose features join the images' in the joint head. With
``text=None`` (the default) the networks, their parameter names and their outputs are those of images alone.

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

from .config import ModelConfig, TextConfig

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


def text_one_hot(ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Token ids [B, L] (model.captions.Tokenizer) as one-hot vectors float [B, L, V]: an observed caption."""
    return nn.functional.one_hot(ids.long(), vocab_size).float()


def text_relaxation(logits: torch.Tensor) -> torch.Tensor:
    """The continuous caption of logits [B, L, V]: softmax per position, on the simplex for any logits."""
    return logits.softmax(-1)


class ConvReader(nn.Module):
    """Soft one-hot [B, L, V] -> features [B, out], the same wherever the caption's words stand: word embeddings
    (t @ W, the pad embedding fixed at zero), a convolution over each word and its neighbours (kernel 3, so that
    "leaning left" is read as a pair), ReLU, max-pooled over the word positions, an MLP.

    Shifting the words (the pads moved) changes nothing: a pad neighbour embeds to zero like the convolution's
    padding at the caption's ends, and a pad position's features are multiplied by 1 - p(pad), so that they are 0
    (no more than any ReLU feature) and drop out of the max. The mask is the pad probability itself, not a
    threshold, so the energy stays differentiable in a chain's soft captions (max and ReLU almost everywhere)."""

    def __init__(self, text: TextConfig, out: int, sn=lambda m: m):
        super().__init__()
        self.embed = nn.Linear(text.vocab_size - 1, text.embed_dim, bias=False)   # words 1..V-1; the pad is 0
        self.conv = sn(nn.Conv1d(text.embed_dim, text.hidden, 3, padding=1))
        self.mlp = nn.Sequential(sn(nn.Linear(text.hidden, text.hidden)), nn.SiLU(), sn(nn.Linear(text.hidden, out)))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(self.embed(t[..., 1:]).transpose(1, 2)))   # [B, hidden, L], >= 0
        return self.mlp((h * (1 - t[..., 0]).unsqueeze(1)).amax(2))


def _text_trunk(text: TextConfig, out: int, sn=lambda m: m) -> nn.Module:
    """Soft one-hot [B, L, V] -> features [B, out], as ``text.reader`` says: "positions" = word embeddings (t @ W),
    flattened with their positions, an MLP; "conv" = ``ConvReader``."""
    if text.reader == "conv":
        return ConvReader(text, out, sn)
    return nn.Sequential(
        nn.Linear(text.vocab_size, text.embed_dim, bias=False), nn.Flatten(1),
        sn(nn.Linear(text.max_len * text.embed_dim, text.hidden)), nn.SiLU(),
        sn(nn.Linear(text.hidden, out)),
    )


class TextDecoder(nn.Module):
    """z -> logits [B, L, V] of each caption position (categorical, independent given z)."""

    def __init__(self, latent_dim: int, text: TextConfig):
        super().__init__()
        self.shape = (text.max_len, text.vocab_size)
        self.net = nn.Sequential(nn.Linear(latent_dim, text.hidden), nn.SiLU(), nn.Linear(text.hidden, text.hidden),
                                 nn.SiLU(), nn.Linear(text.hidden, text.max_len * text.vocab_size))

    def forward(self, z):
        return self.net(z).view(-1, *self.shape)


def _image_modalities(observed: torch.Tensor | None, n_images: int) -> list[int]:
    """The observed image modalities (all by default) of a mask [M] or [M + 1] (the last: the caption)."""
    return list(range(n_images)) if observed is None else observed[:n_images].nonzero().flatten().tolist()


def _text_observed(observed: torch.Tensor | None, n_images: int, text) -> bool:
    """Whether the caption takes part: given, and observed (a mask without index M leaves it out)."""
    return text is not None and (observed is None or (len(observed) > n_images and bool(observed[n_images])))


class Generator(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.latent_dim, self.sigma = cfg.latent_dim, cfg.sigma
        self.decoders = nn.ModuleList(Decoder(cfg.latent_dim, cfg.width) for _ in range(cfg.n_modalities))
        if cfg.text is not None:
            self.text_decoder = TextDecoder(cfg.latent_dim, cfg.text)

    def forward(self, z: torch.Tensor, modalities=None) -> torch.Tensor:
        """Mean images [B, len(modalities), 3, 28, 28] (all modalities by default)."""
        mods = range(len(self.decoders)) if modalities is None else modalities
        return torch.stack([self.decoders[m](z) for m in mods], dim=1)

    def text_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Logits [B, L, V] of the caption given z."""
        return self.text_decoder(z)

    def text_log_likelihood(self, text: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(t | z) = sum_l sum_v t_lv log softmax(logits(z))_lv per sample [B], for soft one-hot t [B, L, V]
        (for one-hot t: the log-probability of the caption, pads included)."""
        return (text * self.text_logits(z).log_softmax(-1)).sum((1, 2))

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor, observed: torch.Tensor | None = None,
                       text: torch.Tensor | None = None, text_weight: float = 1.0):
        """sum_{m in S} log N(x_m; g_m(z), sigma^2 I) per sample [B], up to the constant
        -D/2 log(2 pi sigma^2). ``observed``: bool [M] mask of S (all by default), or [M + 1] with the caption
        last; ``text``: the caption as soft one-hot [B, L, V], whose log p(t | z), times ``text_weight``, is added
        when it is in S."""
        mods = range(x.shape[1]) if observed is None else _image_modalities(observed, x.shape[1])
        out = (-((x[:, mods] - self(z, mods)) ** 2).flatten(1).sum(1) / (2 * self.sigma ** 2) if len(mods)
               else z.new_zeros(len(z)))
        if _text_observed(observed, x.shape[1], text):
            out = out + text_weight * self.text_log_likelihood(text, z)
        return out

    def log_posterior(self, z, x, observed=None, text=None, text_weight: float = 1.0):
        """log p(z) + sum_{m in S} log p(x_m | z), unnormalised, per sample [B] (the caption's term with ``text``,
        times ``text_weight``: 1 is the posterior, another value tempers the caption's likelihood)."""
        return -0.5 * (z ** 2).sum(1) + self.log_likelihood(x, z, observed, text, text_weight)


class Inference(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.latent_dim = cfg.latent_dim
        w = cfg.width
        self.experts = nn.ModuleList(
            nn.Sequential(_encoder_trunk(w), nn.Linear(4 * w * 16, 2 * cfg.latent_dim))
            for _ in range(cfg.n_modalities))
        if cfg.text is not None:
            self.text_expert = _text_trunk(cfg.text, 2 * cfg.latent_dim)

    def experts_params(self, x, observed=None, text=None):
        """mu, logvar of each observed expert: [B, |S|, d] each, and the list S (the caption, when given and
        observed, is the last expert, index M)."""
        mods = _image_modalities(observed, x.shape[1])
        out = [self.experts[m](x[:, m]) for m in mods]
        if _text_observed(observed, x.shape[1], text):
            out.append(self.text_expert(text))
            mods.append(x.shape[1])
        mu, logvar = torch.stack(out, dim=1).chunk(2, dim=-1)
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX), mods

    def sample(self, x, observed=None, generator: torch.Generator | None = None, text=None):
        """z ~ q(z | x_S), reparameterised: each sample picks one observed expert uniformly."""
        mu, logvar, _ = self.experts_params(x, observed, text)
        return self.draw(mu, logvar, generator)

    @staticmethod
    def draw(mu, logvar, generator: torch.Generator | None = None):
        """``sample``'s draw from the experts' parameters [B, |S|, d] (computed for several chains at once, each
        chain's part drawn with its own generator, in the order ``sample`` draws)."""
        b, k, d = mu.shape
        pick = torch.randint(k, (b,), generator=generator, device=mu.device)
        mu, logvar = mu[torch.arange(b), pick], logvar[torch.arange(b), pick]
        eps = torch.randn(b, d, generator=generator, device=mu.device)
        return mu + eps * (0.5 * logvar).exp()

    def log_prob(self, z, x, observed=None, text=None):
        """log q(z | x_S) of the mixture, per sample [B]."""
        experts = self.expert_log_probs(z, x, observed, text)
        return torch.logsumexp(experts, dim=1) - math.log(experts.shape[1])

    def expert_log_probs(self, z, x, observed=None, text=None):
        """log q_m(z | x_m) for each observed expert: [B, |S|]."""
        mu, logvar, _ = self.experts_params(x, observed, text)
        return gaussian_log_prob(z[:, None], mu, logvar)


def gaussian_log_prob(z, mu, logvar):
    return -0.5 * (((z - mu) ** 2) / logvar.exp() + logvar + math.log(2 * math.pi)).sum(-1)


class PairwiseAgreement(nn.Module):
    """The agreement of ``n_parts`` feature vectors [B, n_parts * f]: each part projected to ``k`` dimensions
    (its own linear map) and normalised; the sum over pairs of parts of their cosines, times a learned scale
    (softplus, starts at 1): [B]. Bounded by the scale times n_parts (n_parts - 1) / 2, so that a chain cannot
    lower the energy without end by inflating features."""

    def __init__(self, n_parts: int, f: int, k: int = 32, sn=lambda m: m):
        super().__init__()
        self.n_parts, self.f = n_parts, f
        self.proj = nn.ModuleList(sn(nn.Linear(f, k)) for _ in range(n_parts))
        self.log_scale = nn.Parameter(torch.tensor(math.log(math.e - 1)))   # softplus of it = 1

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        parts = h.view(len(h), self.n_parts, self.f)
        p = nn.functional.normalize(torch.stack([pr(parts[:, i]) for i, pr in enumerate(self.proj)], 1), dim=-1)
        total = p.sum(1)
        pairs = ((total * total).sum(-1) - self.n_parts) / 2    # sum_{i<j} <p_i, p_j>, with |p_i| = 1
        return nn.functional.softplus(self.log_scale) * pairs


class EnergyModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm if cfg.ebm_spectral_norm else (lambda m: m)
        w, f = cfg.ebm_width, cfg.ebm_features
        self.trunks = nn.ModuleList(
            nn.Sequential(_encoder_trunk(w, sn), sn(nn.Linear(4 * w * 16, f)), nn.SiLU())
            for _ in range(cfg.n_modalities))
        self.has_text = cfg.text is not None
        if self.has_text:
            self.text_trunk = nn.Sequential(_text_trunk(cfg.text, f, sn), nn.SiLU())
        n_parts = cfg.n_modalities + int(self.has_text)
        self.head = nn.Sequential(sn(nn.Linear(n_parts * f, 2 * f)), nn.SiLU(), sn(nn.Linear(2 * f, 1)))
        self.agreement = PairwiseAgreement(n_parts, f, sn=sn) if cfg.ebm_head == "pairwise" else None

    def forward(self, x: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        """Energy per sample [B] of the joint tuple x [B, M, 3, 28, 28] in [0, 1] (and, for a model with the
        caption modality, its caption ``text``, soft one-hot [B, L, V]); low = data-like."""
        if (text is not None) != self.has_text:
            raise ValueError("this energy model reads a caption beside the images: pass text=[B, L, V]" if self.has_text
                             else "this energy model has no caption modality: text must be None")
        h = [t(2 * x[:, m] - 1) for m, t in enumerate(self.trunks)]
        if self.has_text:
            h.append(self.text_trunk(text))
        return self.joint_energy(torch.cat(h, dim=1))

    def joint_energy(self, h: torch.Tensor) -> torch.Tensor:
        """The energy [B] from the modalities' concatenated features ``h`` [B, n_parts * ebm_features]: the head,
        minus the agreement term with the pairwise head."""
        e = self.head(h).squeeze(1)
        return e if self.agreement is None else e - self.agreement(h)


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
