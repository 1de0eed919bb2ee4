"""Typed configuration. One dataclass for the model (saved as ``config.json`` beside its weights),
one for a training run (saved as ``train_config.json`` beside every checkpoint).

Pixel range: every image tensor in this package is float in [0, 1], shape [B, M, 3, 28, 28]
(batch, modality, channel, height, width).

Langevin step size vs noise. Every chain here takes the update
    x <- x - (s^2 / 2) * grad U(x) + n * xi,       xi ~ N(0, I)
with U the energy (data space) or the negative log-posterior (latent space). With n = s this is
textbook Langevin on exp(-U). With n != s it is Langevin on exp(-U / T) at temperature
T = (n / s)^2; n << s (the predecessor's choice) is nearly gradient descent. ``temperature()``
reports it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path


def temperature(step_size: float, noise: float) -> float:
    """Temperature implied by a Langevin step size s and noise scale n: T = (n / s)^2."""
    return (noise / step_size) ** 2 if step_size > 0 else float("inf")


@dataclass
class ModelConfig:
    """The three networks and their test-time sampling defaults."""

    n_modalities: int = 5
    data_seed: int = 0            # the PolyMNIST-style textures the model was trained on (model.data)
    latent_dim: int = 16          # shared latent z ~ N(0, I)
    width: int = 32               # channels of the first conv layer (MoPoE size class: 32-64-128)
    sigma: float = 0.25           # fixed std of the Gaussian decoders p(x_m | z) = N(g_m(z), sigma^2 I)
    ebm_width: int = 16           # channels of the EBM trunks' first conv layer (it runs at every Langevin step)
    ebm_features: int = 128       # per-modality trunk output, concatenated into the joint energy head
    ebm_spectral_norm: bool = False
    # test-time chains (conditional generation, the app, evaluation)
    latent_steps: int = 20
    latent_step_size: float = 0.03
    latent_noise: float = 0.03
    data_steps: int = 30
    data_step_size: float = 1.0
    data_noise: float = 0.01
    ebm_latent_steps: int = 10        # EBM revision in latent space: Langevin on E(G(z)) + ||z||^2/2 (+ likelihood of x_S); 0 = off
    ebm_latent_step_size: float = 0.3  # step size s of that chain for prior (joint) samples, nothing observed
    ebm_latent_noise: float = 0.3     # noise n of that chain (n = s: exact Langevin on exp(-U))
    ebm_latent_cond_step_size: float = 0.03  # its step size when modalities are observed: their likelihood makes U stiff (as for the latent revision)
    ebm_latent_cond_noise: float = 0.03  # its noise when modalities are observed

    @property
    def data_temperature(self) -> float:
        return temperature(self.data_step_size, self.data_noise)

    @property
    def latent_temperature(self) -> float:
        return temperature(self.latent_step_size, self.latent_noise)


VARIANTS = ("full", "noise_init", "no_latent_revision", "vae")


@dataclass
class TrainConfig:
    """A training run. ``variant`` selects the method or one of its ablations:

    - ``full``: the method (data revision on the EBM, latent revision, teaching of both).
    - ``noise_init``: EBM chains start from uniform noise instead of the generator's proposals
      (so there is no revised proposal to teach the generator with: that term is off).
    - ``no_latent_revision``: the generator and inference model learn by the MoE ELBO (no latent
      Langevin); the EBM and the generator's teaching term are kept.
    - ``vae``: no EBM at all, a multimodal MoE VAE trained by its ELBO.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    variant: str = "full"
    seed: int = 0
    out_dir: str = "runs/full"
    mnist: str | None = None          # local MNIST file (.npz) or torchvision root; None = download
    cache_dir: str = "data_cache"
    train_size: int | None = None     # use the first N training samples (None = all 60k)
    iters: int = 20000
    max_minutes: float | None = None  # wall-clock budget; stops (and saves) when reached
    batch_size: int = 64
    threads: int | None = None        # torch.set_num_threads; None = torch default
    # optimisers (Adam)
    lr_generator: float = 3e-4
    lr_inference: float = 3e-4
    lr_energy: float = 1e-4
    beta1: float = 0.5
    beta1_energy: float = 0.0
    # warm-up: the first iterations train generator + inference as a plain MoE VAE (ELBO, no EBM,
    # no revisions; the 'vae' variant), so that the revisions start from a sensible generator:
    # latent revision from scratch does not take off (shared/notes). Same for every variant. 0 = off.
    warmup_iters: int = 3000
    kl_weight: float = 1.0            # beta of the MoE ELBO (warm-up and ablations)
    # training-time chains
    data_steps: int = 30
    data_step_size: float = 1.0
    data_noise: float = 0.01
    latent_steps: int = 10
    latent_step_size: float = 0.03
    latent_noise: float = 0.03
    # loss weights
    teach_weight: float = 0.1         # lambda_S: generator pulled toward its EBM-revised samples
    inference_teach_weight: float = 0.1  # lambda_I: inference fits the latents behind revised samples
    elbo_weight: float = 1.0          # the MoE ELBO kept beside the revision losses (full / noise_init);
                                      # 0 = revision losses alone, which drifted in our runs (README)
    energy_l2: float = 0.01           # penalty on squared energies (keeps the EBM bounded)
    explode_threshold: float = 1e4    # divergence guard on |EBM loss|
    # bookkeeping
    log_every: int = 10
    sample_every: int = 500
    ckpt_every: int = 250
    eval_every: int = 500
    eval_samples: int = 500
    classifier: str | None = "checkpoints/classifier"  # for coherence during training; None = off
    ebm_negatives: str = "data"       # EBM negatives: "data" = data chain from G(z) (the paper); "latent" = EBM latent chain from z, then data_steps of data chain (VAEBM-style); the generator is taught toward them
    ebm_latent_steps: int = 10        # steps of the EBM latent chain (ebm_negatives="latent"; also the one-line coherence log)
    ebm_latent_step_size: float = 0.3  # its step size s
    ebm_latent_noise: float = 0.3     # its noise n
    max_cpu_minutes: float | None = None  # budget in CPU time of this process (fair on a shared machine); stops (and saves) when reached
    init_from: str | None = None      # start the weights from this model directory (optimisers fresh; e.g. continue a shipped checkpoint)

    def __post_init__(self):
        if isinstance(self.model, dict):
            self.model = ModelConfig(**self.model)
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.ebm_negatives not in ("data", "latent"):
            raise ValueError(f"ebm_negatives must be 'data' or 'latent', got {self.ebm_negatives!r}")

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def from_json(cls, path: str | Path) -> "TrainConfig":
        data = json.loads(Path(path).read_text())
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
