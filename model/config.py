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

from .captions import MAX_LEN, VOCABULARY


def temperature(step_size: float, noise: float) -> float:
    """Temperature implied by a Langevin step size s and noise scale n: T = (n / s)^2."""
    return (noise / step_size) ** 2 if step_size > 0 else float("inf")


@dataclass(frozen=True)
class Chain:
    """One Langevin chain: ``steps`` updates x <- x - (s^2 / 2) grad U(x) + n xi (0 steps: skipped)."""

    steps: int = 0                # Langevin steps (0 = skipped)
    step_size: float = 0.0        # step size s
    noise: float = 0.0            # noise scale n (temperature (n / s)^2)

    @property
    def temperature(self) -> float:
        return temperature(self.step_size, self.noise)


KNOBS = tuple(f.name for f in fields(Chain))


@dataclass(frozen=True)
class Chains:
    """The test-time chains (conditional generation, prior samples, the app, evaluation), in the order they
    run. config.json stores them nested ({"chains": {"latent": {"steps": 20, ...}, ...}}) and still reads the
    flat keys ``<chain>_<knob>`` (``latent_steps``, ``ebm_latent_cond_noise``, ...), which are also the flags
    (``--model.latent-steps``) and the override names (``Sampler.conditional(x, S, data_steps=0)``)."""

    latent: Chain = Chain(20, 0.03, 0.03)           # latent revision: Langevin on the generator posterior p(z | x_S)
                                                    # (conditional generation only)
    ebm_latent: Chain = Chain(10, 0.3, 0.3)         # EBM latent revision of prior (joint) samples: Langevin on
                                                    # E(G(z)) + ||z||^2 / 2 (n = s: exact Langevin)
    ebm_latent_cond: Chain = Chain(10, 0.03, 0.03)  # EBM latent revision in conditional generation (the
                                                    # observed likelihood makes U stiff: a smaller step)
    data: Chain = Chain(30, 1.0, 0.01)              # data revision: Langevin on the EBM, observed modalities
                                                    # clamped (n << s: nearly gradient descent)

    def flat(self) -> dict:
        """{"latent_steps": 20, "latent_step_size": 0.03, ...}: every knob under its flat name."""
        return {f"{c.name}_{k}": getattr(getattr(self, c.name), k) for c in fields(self) for k in KNOBS}

    def replace(self, **flat) -> "Chains":
        """A copy with some knobs changed, by flat name (``replace(data_steps=0)``); None leaves a knob as it is."""
        known = self.flat()
        unknown = [k for k in flat if k not in known]
        if unknown:
            raise TypeError(f"unknown chain setting(s) {unknown}; known: {sorted(known)}")
        known.update({k: v for k, v in flat.items() if v is not None})
        return Chains.from_flat(known)

    @classmethod
    def from_flat(cls, flat: dict) -> "Chains":
        """From flat keys (missing ones keep their defaults; keys that are no chain knob are ignored)."""
        base = cls()
        return cls(**{c.name: Chain(**{k: type(getattr(getattr(base, c.name), k))(flat[f"{c.name}_{k}"])
                                       if f"{c.name}_{k}" in flat else getattr(getattr(base, c.name), k)
                                       for k in KNOBS}) for c in fields(cls)})

    @classmethod
    def from_dict(cls, d: dict) -> "Chains":
        """From the nested form ({"latent": {"steps": ...}, ...}) or the flat one."""
        flat = {f"{name}_{k}": v for name, chain in d.items() if isinstance(chain, dict) for k, v in chain.items()}
        return cls.from_flat({**flat, **{k: v for k, v in d.items() if not isinstance(v, dict)}})

    def ebm_latent_for(self, conditioned: bool) -> Chain:
        """The EBM latent chain of conditional generation (``conditioned``) or of prior samples."""
        return self.ebm_latent_cond if conditioned else self.ebm_latent


READERS = ("positions", "conv")   # TextConfig.reader


@dataclass(frozen=True)
class TextConfig:
    """The caption modality (docs/captions.md): a caption of ``max_len`` positions over ``words`` (id = position
    in the list, 0 = pad), relaxed for Langevin to soft one-hot vectors (softmax of logits per position)."""

    words: tuple[str, ...] = VOCABULARY  # the tokenizer's vocabulary, saved with the model (model.captions)
    max_len: int = MAX_LEN        # token positions per caption (shorter ones padded with id 0)
    embed_dim: int = 32           # word embedding of the text expert and of the EBM's text branch
    hidden: int = 256             # hidden width of the text decoder, the text expert and the EBM's text branch
    data_step_size: float = 2.0   # test-time data revision: step size of the caption's logits (the images' is
                                  # chains.data.step_size; logits and pixels have different scales)
    data_noise: float = 0.02      # test-time data revision: noise scale of the caption's logits
    latent_weight: float = 1.0    # test-time latent revision with the caption observed: weight beta of its
                                  # log-likelihood, U(z) = ||z||^2 / 2 - sum_{m in S} log p(x_m | z) - beta log p(t | z)
                                  # (1: the generator posterior; 0: the caption acts only through the inference
                                  # model's proposal); chains without the caption observed are unchanged
    reader: str = "positions"     # how the text expert and the EBM's text branch read a caption: positions = word
                                  # embeddings flattened with their positions into an MLP; conv = a convolution over
                                  # neighbouring words (kernel 3), max-pooled over the words, then an MLP (the same
                                  # features wherever the words stand)

    def __post_init__(self):
        object.__setattr__(self, "words", tuple(self.words))   # a list from config.json
        if self.reader not in READERS:
            raise ValueError(f"text reader {self.reader!r}: must be one of {', '.join(READERS)}")

    @property
    def vocab_size(self) -> int:
        return len(self.words)


EBM_HEADS = ("concat", "pairwise")  # ModelConfig.ebm_head


@dataclass
class ModelConfig:
    """The three networks and their test-time chains."""

    n_modalities: int = 5         # M, the number of image modalities (3x28x28 each)
    data_seed: int = 0            # the PolyMNIST-style textures the model was trained on (model.data)
    latent_dim: int = 16          # shared latent z ~ N(0, I)
    width: int = 32               # channels of the first conv layer (MoPoE size class: 32-64-128)
    sigma: float = 0.25           # fixed std of the Gaussian decoders p(x_m | z) = N(g_m(z), sigma^2 I)
    ebm_width: int = 16           # channels of the EBM trunks' first conv layer (it runs at every Langevin step)
    ebm_features: int = 128       # per-modality trunk output, concatenated into the joint energy head
    ebm_spectral_norm: bool = False  # spectral norm on the EBM's layers (off: it kept the chains from moving)
    ebm_head: str = "concat"      # the EBM's joint head: concat = an MLP on the concatenated trunk features; pairwise
                                  # = that MLP minus an agreement term, the sum over modality pairs of the cosine of
                                  # their projected features (x a learned scale), so that the energy can compare the
                                  # modalities directly
    # test-time chains (conditional generation, the app, evaluation)
    chains: Chains = Chains()     # the test-time chains (flags --model.<chain>-<knob>)
    text: TextConfig | None = None  # a caption modality beside the images (None: images only); it is modality
                                    # index n_modalities in observed masks

    def __post_init__(self):
        if self.ebm_head not in EBM_HEADS:
            raise ValueError(f"ebm_head {self.ebm_head!r}: must be one of {', '.join(EBM_HEADS)}")
        if isinstance(self.chains, dict):
            self.chains = Chains.from_dict(self.chains)
        if isinstance(self.text, dict):
            self.text = TextConfig(**{k: v for k, v in self.text.items() if k in {f.name for f in fields(TextConfig)}})

    @property
    def modality_kinds(self) -> tuple[str, ...]:
        """The kind of each modality, in observed-mask order: "image" for the M image modalities, then "text"
        when the caption modality is on."""
        return ("image",) * self.n_modalities + (("text",) if self.text is not None else ())

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """From a config.json: the nested ``chains`` and/or the old flat keys (``latent_steps``, ...; these win);
        unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        chains = Chains.from_dict(d.get("chains") or {}).flat()
        chains.update({k: v for k, v in d.items() if k in chains})
        return cls(**{k: v for k, v in d.items() if k in names and k != "chains"}, chains=Chains.from_flat(chains))


VARIANTS = ("full", "noise_init", "no_latent_revision", "vae")
DATASETS = ("builtin", "polymnist")
REPLAY_LOSSES = ("ml", "rank")  # TrainConfig.ebm_replay_loss


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
    out_dir: str = "runs/full"        # run folder: logs, samples, checkpoints (flags --out, --out-dir)
    mnist: str | None = None          # local MNIST file (.npz) or torchvision root; None = download
    cache_dir: str = "data_cache"     # where the built data set (uint8, 826 MB for M = 5) and the MNIST download go
    dataset: str = "builtin"          # builtin: PolyMNIST-style set built from MNIST; polymnist: the released files in
                                      # --data-dir
    data_dir: str | None = None       # the PolyMNIST release (train/ and test/ with m0..m4 of <index>.<label>.png)
    train_size: int | None = None     # use the first N training samples (None = all 60k)
    iters: int = 20000                # training iterations in all (warm-up included)
    max_minutes: float | None = None  # wall-clock budget; stops (and saves) when reached
    max_cpu_minutes: float | None = None  # budget in CPU time of this process (fair on a shared machine); stops (and
                                          # saves) when reached
    batch_size: int = 64              # tuples per iteration (per process under torchrun)
    threads: int | None = None        # torch.set_num_threads; None = torch default
    device: str = "auto"              # auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps
    amp: bool = False                 # bfloat16 autocast on CUDA (mixed precision); ignored on other devices
    init_from: str | None = None      # start the weights from this model directory (optimisers fresh; e.g. continue a
                                      # shipped checkpoint)
    init_skip: str | None = None      # with --init-from: these parts keep their fresh (seeded) weights, e.g. 'energy'
                                      # (an EBM of another width); comma-separated of generator, inference, energy
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
    ebm_negatives: str = "data"       # EBM negatives: "data" = data chain from G(z) (the paper); "latent" = EBM latent
                                      # chain from z, then data_steps of data chain (VAEBM-style); the generator is
                                      # taught toward them
    ebm_latent_steps: int = 10        # training: steps of the EBM latent chain (ebm_negatives="latent"; also the one-
                                      # line coherence log)
    ebm_latent_step_size: float = 0.3  # training: EBM latent step size s
    ebm_latent_noise: float = 0.3     # training: EBM latent noise scale n
    # caption modality (--captions): the captions' logits in the training-time data chain
    text_data_step_size: float = 2.0  # training, caption modality: data step size of the captions' logits
    text_data_noise: float = 0.02     # training, caption modality: data noise scale of the captions' logits
    # replay negatives (Du & Mordatch 2019): a share of the EBM's negatives comes from persistent chains kept in a
    # buffer of past negatives, so that the EBM also sees (and raises) the energy of states far from the generator
    ebm_replay_share: float = 0.0     # share of the EBM's negatives drawn from the replay buffer (0 = off: every
                                      # negative is a revised generator sample, the paper's training)
    ebm_replay_size: int = 10000      # tuples in the replay buffer (filled with uniform noise at the start; not
                                      # saved in checkpoints: --resume starts it afresh from noise)
    ebm_replay_reinit: float = 0.05   # chance that a drawn buffer entry restarts from uniform noise
    ebm_replay_steps: int = 30        # data-space Langevin steps on the EBM for the drawn entries (training data step
                                      # size and noise); the results go back into the buffer
    ebm_replay_loss: str = "ml"       # how the replay chains enter the EBM's loss: "ml" = they replace that share of
                                      # the revised samples as maximum-likelihood negatives; "rank" = every revised
                                      # sample stays a negative and the chains (share x batch more) enter by a
                                      # logistic ranking term, softplus(E(data) - E(chain)) over all pairs, which
                                      # raises a chain only while it is not above the data
    # conditional negatives: a share of the EBM's negatives are conditional samples of the batch's own tuples, drawn
    # as the sampler draws them, so that the EBM learns to rank a coherent completion of real observed data above an
    # incoherent one
    ebm_cond_share: float = 0.0       # share of the EBM's negatives that are conditional chains (0 = off): per tuple
                                      # one observed modality (uniform), z ~ q(z | x_m), the model's sampling chains
                                      # (latent revisions, decode, data revision with x_m clamped to the data)
    # mismatched tuples: real tuples with one modality taken from another tuple of the batch (most then show two
    # digits; no labels are read, so about one in ten shows the same digit by chance). Their images are real, so
    # only what the modalities say together tells them from the data: the energy learns joint coherence
    ebm_mismatch_share: float = 0.0   # share x batch mismatched tuples (0 = off), extra to the negatives: each enters
                                      # by softplus(E(its real tuple) - E(mismatched)), which raises it while it is
                                      # not above the tuple it came from
    # loss weights
    revision_recon_weight: float = 1.0  # weight of loss_recon, the generator's likelihood of the data at the
                                        # revised latents z_rev (full / noise_init; 0 = the generator does not
                                        # learn from the latent revision)
    revision_infer_weight: float = 1.0  # weight of loss_infer, the inference experts' fit of the revised latents
                                        # z_rev (full / noise_init; 0 = the experts do not learn from it)
    teach_weight: float = 0.1         # lambda_S: generator pulled toward its EBM-revised samples
    inference_teach_weight: float = 0.1  # lambda_I: inference fits the latents behind revised samples
    elbo_weight: float = 1.0          # the MoE ELBO kept beside the revision losses (full / noise_init);
                                      # 0 = revision losses alone, which drifted in our runs (README)
    energy_l2: float = 0.01           # penalty on squared energies (keeps the EBM bounded)
    text_weight: float = 1.0          # caption modality: weight of the caption's log-likelihood in the generator's
                                      # losses (ELBO, revision, teaching); a caption's is at most ~60 nats beside
                                      # hundreds per image
    explode_threshold: float = 1e4    # divergence guard on |EBM loss|
    # bookkeeping
    log_every: int = 10               # iterations between lines of log.jsonl (0 = only the quick checks' lines)
    sample_every: int = 500           # iterations between sample grids in samples/ (0 = only the final grid)
    ckpt_every: int = 250             # iterations between checkpoints (OUT/checkpoint; 0 = only at the end)
    eval_every: int = 500             # iterations between quick coherence checks (0 = off)
    eval_samples: int = 500           # test tuples / prior samples of the quick coherence check
    classifier: str | None = "checkpoints/classifier"  # judges of the coherence logged in training (a
                                                       # relative path missing here is looked up in the
                                                       # repository checkout: the bundled judges); none = off

    def __post_init__(self):
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model)
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        if self.ebm_negatives not in ("data", "latent"):
            raise ValueError(f"ebm_negatives must be 'data' or 'latent', got {self.ebm_negatives!r}")
        if not 0.0 <= self.ebm_replay_share <= 1.0 or not 0.0 <= self.ebm_replay_reinit <= 1.0:
            raise ValueError(f"ebm_replay_share and ebm_replay_reinit are shares in [0, 1], got "
                             f"{self.ebm_replay_share} and {self.ebm_replay_reinit}")
        if not 0.0 <= self.ebm_cond_share <= 1.0 or self.ebm_cond_share + self.ebm_replay_share > 1.0:
            raise ValueError(f"ebm_cond_share is a share in [0, 1] and, with ebm_replay_share, at most 1 in all, got "
                             f"{self.ebm_cond_share} and {self.ebm_replay_share}")
        if not 0.0 <= self.ebm_mismatch_share <= 1.0:
            raise ValueError(f"ebm_mismatch_share is a share in [0, 1], got {self.ebm_mismatch_share}")
        if self.ebm_replay_loss not in REPLAY_LOSSES:
            raise ValueError(f"ebm_replay_loss must be one of {REPLAY_LOSSES}, got {self.ebm_replay_loss!r}")
        if self.ebm_replay_size < 1 or self.ebm_replay_steps < 0:
            raise ValueError(f"ebm_replay_size must be >= 1 and ebm_replay_steps >= 0, got {self.ebm_replay_size} "
                             f"and {self.ebm_replay_steps}")
        if any(p not in ("generator", "inference", "energy") for p in self.init_skip_parts):
            raise ValueError(f"init_skip: comma-separated parts of generator, inference, energy, "
                             f"got {self.init_skip!r}")

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
