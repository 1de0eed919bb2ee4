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

    n_modalities: int = 5         # M, the number of image modalities (3x28x28 each)
    data_seed: int = 0            # the PolyMNIST-style textures the model was trained on (model.data)
    latent_dim: int = 16          # shared latent z ~ N(0, I)
    width: int = 32               # channels of the first conv layer (MoPoE size class: 32-64-128)
    sigma: float = 0.25           # fixed std of the Gaussian decoders p(x_m | z) = N(g_m(z), sigma^2 I)
    ebm_width: int = 16           # channels of the EBM trunks' first conv layer (it runs at every Langevin step)
    ebm_features: int = 128       # per-modality trunk output, concatenated into the joint energy head
    ebm_spectral_norm: bool = False  # spectral norm on the EBM's layers (off: it kept the chains from moving)
    # test-time chains (conditional generation, the app, evaluation)
    latent_steps: int = 20        # test time: latent Langevin steps on the generator posterior p(z | x_S)
    latent_step_size: float = 0.03  # test time: latent step size s (temperature (n / s)^2)
    latent_noise: float = 0.03    # test time: latent noise scale n
    data_steps: int = 30          # test time: data-space Langevin steps on the EBM (observed modalities clamped)
    data_step_size: float = 1.0   # test time: data step size s
    data_noise: float = 0.01      # test time: data noise scale n (n << s: nearly gradient descent)
    ebm_latent_steps: int = 10        # EBM revision in latent space: Langevin on E(G(z)) + ||z||^2/2 (+ likelihood of x_S); 0 = off
    ebm_latent_step_size: float = 0.3  # step size s of that chain for prior (joint) samples, nothing observed
    ebm_latent_noise: float = 0.3     # noise n of that chain (n = s: exact Langevin on exp(-U))
    ebm_latent_cond_steps: int = 10   # its steps when modalities are observed (conditional generation); 0 = skipped there
    ebm_latent_cond_step_size: float = 0.03  # its step size when modalities are observed: their likelihood makes U stiff (as for the latent revision)
    ebm_latent_cond_noise: float = 0.03  # its noise when modalities are observed

    @property
    def data_temperature(self) -> float:
        return temperature(self.data_step_size, self.data_noise)

    @property
    def latent_temperature(self) -> float:
        return temperature(self.latent_step_size, self.latent_noise)


VARIANTS = ("full", "noise_init", "no_latent_revision", "vae")
DATASETS = ("builtin", "polymnist")
DEVICES = ("auto", "cpu", "cuda", "mps")


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

    model: ModelConfig = field(default_factory=ModelConfig)  # the networks and test-time chains (flags --model.*)
    variant: str = "full"             # the method or an ablation: full, noise_init, no_latent_revision, vae
    seed: int = 0                     # seeds the weights, the batches and the chains
    out_dir: str = "runs/full"        # run folder: logs, samples, checkpoints
    mnist: str | None = None          # local MNIST file (.npz) or torchvision root; None = download
    cache_dir: str = "data_cache"     # where the built data set (uint8, 826 MB for M = 5) and the MNIST download go
    dataset: str = "builtin"          # builtin: PolyMNIST-style set built from MNIST; polymnist: the released files in --data-dir
    data_dir: str | None = None       # the PolyMNIST release (train/ and test/ with m0..m4 of <index>.<label>.png)
    train_size: int | None = None     # use the first N training samples (None = all 60k)
    iters: int = 20000                # training iterations in all (warm-up included)
    max_minutes: float | None = None  # wall-clock budget; stops (and saves) when reached
    max_cpu_minutes: float | None = None  # budget in CPU time of this process (fair on a shared machine); stops (and saves) when reached
    batch_size: int = 64              # tuples per iteration (per process under torchrun)
    threads: int | None = None        # torch.set_num_threads; None = torch default
    device: str = "auto"              # auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps
    amp: bool = False                 # bfloat16 autocast on CUDA (mixed precision); ignored on other devices
    init_from: str | None = None      # start the weights from this model directory (optimisers fresh; e.g. continue a shipped checkpoint)
    init_skip: str | None = None      # with --init-from: these parts keep their fresh (seeded) weights, e.g. 'energy' (an EBM of another width); comma-separated of generator, inference, energy
    # optimisers (Adam)
    lr_generator: float = 3e-4        # learning rate of the generator
    lr_inference: float = 3e-4        # learning rate of the inference model
    lr_energy: float = 1e-4           # learning rate of the EBM
    beta1: float = 0.5                # Adam beta1 of the generator and the inference model
    beta1_energy: float = 0.0         # Adam beta1 of the EBM
    # warm-up: the first iterations train generator + inference as a plain MoE VAE (ELBO, no EBM,
    # no revisions; the 'vae' variant), so that the revisions start from a sensible generator:
    # latent revision from scratch does not take off (shared/notes). Same for every variant. 0 = off.
    warmup_iters: int = 3000          # iterations of the MoE-VAE warm-up (0 = off)
    kl_weight: float = 1.0            # beta of the MoE ELBO (warm-up and ablations)
    # training-time chains
    data_steps: int = 30              # training: data-space Langevin steps on the EBM per iteration (data revision)
    data_step_size: float = 1.0       # training: data step size s
    data_noise: float = 0.01          # training: data noise scale n
    latent_steps: int = 10            # training: latent Langevin steps per iteration (latent revision)
    latent_step_size: float = 0.03    # training: latent step size s
    latent_noise: float = 0.03        # training: latent noise scale n
    ebm_negatives: str = "data"       # EBM negatives: "data" = data chain from G(z) (the paper); "latent" = EBM latent chain from z, then data_steps of data chain (VAEBM-style); the generator is taught toward them
    ebm_latent_steps: int = 10        # training: steps of the EBM latent chain (ebm_negatives="latent"; also the one-line coherence log)
    ebm_latent_step_size: float = 0.3  # training: EBM latent step size s
    ebm_latent_noise: float = 0.3     # training: EBM latent noise scale n
    # loss weights
    teach_weight: float = 0.1         # lambda_S: generator pulled toward its EBM-revised samples
    inference_teach_weight: float = 0.1  # lambda_I: inference fits the latents behind revised samples
    elbo_weight: float = 1.0          # the MoE ELBO kept beside the revision losses (full / noise_init);
                                      # 0 = revision losses alone, which drifted in our runs (README)
    energy_l2: float = 0.01           # penalty on squared energies (keeps the EBM bounded)
    explode_threshold: float = 1e4    # divergence guard on |EBM loss|
    # bookkeeping
    log_every: int = 10               # iterations between lines of log.jsonl
    sample_every: int = 500           # iterations between sample grids in samples/
    ckpt_every: int = 250             # iterations between checkpoints (OUT_DIR/checkpoint)
    eval_every: int = 500             # iterations between quick coherence checks (0 = off)
    eval_samples: int = 500           # test tuples / prior samples of the quick coherence check
    classifier: str | None = "checkpoints/classifier"  # for coherence during training; None = off

    def __post_init__(self):
        if isinstance(self.model, dict):
            self.model = ModelConfig(**self.model)
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        if self.ebm_negatives not in ("data", "latent"):
            raise ValueError(f"ebm_negatives must be 'data' or 'latent', got {self.ebm_negatives!r}")
        if any(p not in ("generator", "inference", "energy") for p in self.init_skip_parts):
            raise ValueError(f"init_skip: comma-separated parts of generator, inference, energy, got {self.init_skip!r}")

    @property
    def init_skip_parts(self) -> list[str]:
        """--init-skip as a list of model parts (generator, inference, energy)."""
        return [p.strip() for p in (self.init_skip or "").split(",") if p.strip()]

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def from_json(cls, path: str | Path) -> "TrainConfig":
        data = json.loads(Path(path).read_text())
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
