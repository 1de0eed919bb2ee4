"""The sampler: a checkpoint's networks, its ex-post prior and its chain settings in one object, loaded like a
diffusers pipeline.

    from model import Sampler
    sampler = Sampler.from_pretrained("checkpoints/mebm")   # a folder or an ORG/NAME Hub repo
    out = sampler.conditional(x, observed)     # {stage: images [B, M, 3, 28, 28]} in chain order, plus "final"
    joint = sampler.joint(8)                   # prior samples: the ex-post prior when shipped (prior="normal": N(0, I))
    for frame in sampler.frames(x, observed):  # model.langevin.Frame per step (stage, step, x, energy, ...)
        ...
    sampler.chains.data.steps                  # the chain settings (model.config.Chains), from config.json
    sampler.save_pretrained("runs/copy")       # weights + chains (config.json) + the ex-post prior

A checkpoint with the caption modality (``ModelConfig.text``) takes an observed caption as token ids and gives the
generated captions of every stage:

    ids = sampler.encode(["a thin seven leaning right"])     # model.captions.CaptionError (one line) for bad text
    out = sampler.conditional(None, None, text=ids)          # images from the caption alone
    out.captions["final"]                                    # the caption of each sample, per stage (decoded text)

Chain settings can be changed per call by flat name (``sampler.conditional(x, observed, data_steps=0)``) or for
good (``sampler.with_chains(data_steps=0)``, a new sampler sharing the networks). A 'vae' checkpoint (variant read
from its train_config.json) has an untrained EBM: its EBM chains are set to 0 steps.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .config import Chains, TrainConfig
from .device import resolve_device
from .hub import load_folder, load_model
from .langevin import Frame, Generated, conditional_generate, conditional_sampling
from .paths import find_checkpoint
from .prior import PRIOR_FILE, GaussianMixture, load_prior

PRIORS = ("ex-post", "normal")
EBM_OFF = {"ebm_latent_steps": 0, "ebm_latent_cond_steps": 0, "data_steps": 0}   # a 'vae': its EBM is untrained


def seeded_generator(seed: int, *key: int, device="cpu") -> torch.Generator:
    """A torch generator on ``device`` seeded from (seed, *key): one independent stream per batch, subset, ...
    (model.evaluate and model.sample draw the same chains from the same keys)."""
    return torch.Generator(device=device).manual_seed(int(np.random.SeedSequence([seed, *key]).generate_state(1)[0]))


def run_variant(folder: Path) -> str | None:
    """The training variant of a checkpoint, from the train_config.json in or above its folder (None: none)."""
    for tc in (folder / "train_config.json", folder.parent / "train_config.json"):
        if tc.is_file():
            return TrainConfig.from_json(tc).variant
    return None


class Sampler:
    """Conditional and prior (joint) generation by the method's chains (model.langevin.conditional_sampling)."""

    def __init__(self, model, prior: GaussianMixture | None = None, chains: Chains | None = None,
                 variant: str = "full", source: str = "", notes: list[str] | None = None):
        self.model = model.eval()
        self.prior = prior                    # the ex-post prior (None: prior samples from N(0, I))
        self.variant = variant
        chains = chains or model.config.chains
        self.chains = chains.replace(**EBM_OFF) if variant == "vae" else chains
        self.source, self.notes = source, list(notes or [])

    @classmethod
    def from_pretrained(cls, path_or_repo_id: str | Path | None = None, revision: str | None = None,
                        device: str | torch.device = "auto", variant: str | None = None,
                        prior_file: str | Path | None = None, **chain_overrides) -> "Sampler":
        """A folder (config.json + model.safetensors [+ prior.safetensors]; a relative path missing here is looked
        up in the repository checkout, so ``checkpoints/mebm`` works from any folder) or an ``ORG/NAME`` Hub repo
        (at ``revision``; ``model.hub.load_model``: the Hub, then its local cache). None: the bundled checkpoint.
        ``variant`` overrides the one in train_config.json; ``prior_file``: an ex-post prior (python -m model.prior)
        instead of the one beside the weights; chain settings by flat name override config.json's."""
        name = str(path_or_repo_id if path_or_repo_id is not None else "checkpoints/mebm")
        path = find_checkpoint(name)
        if path.is_dir():
            loaded = load_folder(path)
        elif re.fullmatch(r"[\w.-]+/[\w.-]+", name) and not name.startswith("."):   # ORG/NAME
            loaded = load_model(name, revision, bundled=None)
        else:
            raise FileNotFoundError(f"no model checkpoint at {str(path)!r} (expected a folder with config.json + "
                                    f"model.safetensors, or an ORG/NAME Hub repo)")
        if prior_file is not None:
            if not Path(prior_file).is_file():
                raise FileNotFoundError(f"ex-post prior file not found: {str(prior_file)!r} (written by python -m "
                                        f"model.prior)")
            loaded.prior, note = load_prior(prior_file, loaded.model.config.latent_dim)
            if loaded.prior is None:
                raise ValueError(note)
            loaded.notes.append(f"{note} ({prior_file})")
        dev = resolve_device(device)
        model = loaded.model.to(dev)
        for p in model.parameters():
            p.requires_grad_(False)
        ex_post = loaded.prior.to(dev) if loaded.prior is not None else None
        variant = variant or (run_variant(path) if path.is_dir() else None) or "full"
        return cls(model, ex_post, model.config.chains.replace(**chain_overrides), variant, loaded.describe(),
                   loaded.notes)

    # ------------------------------------------------------------ properties, copies
    @property
    def config(self):
        return self.model.config

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def has_ebm(self) -> bool:
        return self.variant != "vae"

    def with_chains(self, **overrides) -> "Sampler":
        """A sampler sharing the networks and the prior, with some chain settings changed (by flat name)."""
        return Sampler(self.model, self.prior, self.chains.replace(**overrides), self.variant, self.source,
                       self.notes)

    def to(self, device) -> "Sampler":
        self.model.to(resolve_device(device))
        self.prior = self.prior.to(self.device) if self.prior is not None else None
        return self

    def stages(self, conditioned: bool) -> tuple[str, ...]:
        """The stages a run yields, in order (a chain with 0 steps is skipped; no latent revision unconditioned)."""
        c = self.chains
        steps = {"proposal": 1, "latent": c.latent.steps if conditioned else 0,
                 "ebm_latent": c.ebm_latent_for(conditioned).steps, "data": c.data.steps}
        return tuple(s for s, k in steps.items() if k > 0)

    # ------------------------------------------------------------ captions
    @property
    def tokenizer(self):
        """The caption modality's tokenizer (model.captions.Tokenizer over the model's vocabulary); None without."""
        from .captions import Tokenizer

        text = self.config.text
        return None if text is None else Tokenizer(text.words, text.max_len)

    def encode(self, captions) -> torch.Tensor:
        """Token ids int64 [B, L] of caption texts (model.captions.CaptionError, one line, for a text it cannot
        read: unknown words are named in ``.unknown``)."""
        if self.tokenizer is None:
            raise ValueError("this model has no caption modality")
        return torch.from_numpy(self.tokenizer.encode_batch([captions] if isinstance(captions, str) else captions))

    def decode(self, text: torch.Tensor) -> list[str]:
        """The captions of soft one-hot vectors [B, L, V] (a chain's state): the most probable caption of the
        training captions' language (model.captions.CaptionReader); an observed caption as typed."""
        if getattr(self, "_reader", None) is None:
            from .captions import CaptionReader

            self._reader = CaptionReader(self.tokenizer)
        return self._reader.read(text.detach().float().cpu().numpy())

    def _caption_inputs(self, observed, text, n_images):
        """(observed mask, observed caption as one-hot on the device or None): a mask [M] of a captioned model
        gets the caption's flag (observed when ids are given)."""
        from .networks import text_one_hot

        cfg = self.config.text
        if cfg is None:
            if text is not None:
                raise ValueError("this model has no caption modality: text must be None")
            return observed, None
        if observed is None:
            observed = torch.zeros(n_images, dtype=torch.bool)
        observed = observed.cpu()
        if len(observed) == n_images:
            observed = torch.cat([observed, torch.tensor([text is not None])])
        if bool(observed[n_images]) and text is None:
            raise ValueError("the caption is marked observed: pass its token ids as text=[B, L]")
        if text is None or not bool(observed[n_images]):
            return observed, None
        text = torch.as_tensor(text)
        if text.dim() != 2 or text.shape[1] != cfg.max_len or text.min() < 0 or text.max() >= cfg.vocab_size:
            raise ValueError(f"text must be token ids [B, {cfg.max_len}] in 0..{cfg.vocab_size - 1}")
        return observed, text_one_hot(text, cfg.vocab_size).to(self.device)

    def _with_captions(self, out: Generated) -> Generated:
        out.captions = {stage: self.decode(t) for stage, t in out.text.items()}
        return out

    # ------------------------------------------------------------ sampling
    def _generator(self, generator: torch.Generator | None) -> torch.Generator | None:
        """The chain's generator on the model's device (one on another device is re-seeded there)."""
        if generator is None or generator.device.type == self.device.type:
            return generator
        return torch.Generator(self.device).manual_seed(generator.initial_seed())

    def _prior(self, prior: str):
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, not {prior!r}")
        return self.prior if prior == "ex-post" else None

    def frames(self, x: torch.Tensor | None = None, observed: torch.Tensor | None = None, n: int | None = None,
               generator: torch.Generator | None = None, prior: str = "ex-post", every: int = 1,
               data_init: str = "generator", text: torch.Tensor | None = None, **overrides) -> Iterator[Frame]:
        """Every step of one run, as model.langevin.Frame: conditional on ``x``'s ``observed`` modalities (bool [M]),
        or, with nothing observed, ``n`` prior samples (``prior``: "ex-post" when the checkpoint has one, else
        N(0, I); "normal": N(0, I)). Chain settings by flat name override ``self.chains``. A captioned model also
        takes an observed caption ``text`` (token ids [B, L]; ``x`` may then be None); its frames carry the caption
        (``frame.text``, soft one-hot; ``decode`` reads it)."""
        dev = self.device
        n_images = self.config.n_modalities
        observed, text = self._caption_inputs(observed, text, n_images)
        conditioned = observed is not None and bool(observed.any())
        return conditional_sampling(self.model, x.to(dev) if x is not None else None,
                                    observed.to(dev) if conditioned else None, n=n, chains=self.chains,
                                    generator=self._generator(generator), data_init=data_init, every=every,
                                    prior=None if conditioned else self._prior(prior), text=text, **overrides)

    def conditional(self, x: torch.Tensor | None, observed: torch.Tensor | None,
                    generator: torch.Generator | None = None, text: torch.Tensor | None = None,
                    **overrides) -> Generated:
        """The modalities outside ``observed`` (bool [M]) generated from those in ``x`` [B, M, 3, 28, 28]:
        {stage: images after it, in chain order, plus "final"}, on the model's device. A captioned model also takes
        an observed caption ``text`` (token ids [B, L], ``encode``; ``x`` may be None for the caption alone) and
        returns the caption after every stage, decoded, in ``.captions`` ({stage: [str] * B}; soft one-hot in
        ``.text``)."""
        observed, text = self._caption_inputs(observed, text, self.config.n_modalities)
        out = conditional_generate(self.model, None if x is None else x.to(self.device),
                                   None if observed is None else observed.to(self.device), chains=self.chains,
                                   generator=self._generator(generator), text=text, **overrides)
        return self._with_captions(out)

    def joint(self, n: int, prior: str = "ex-post", generator: torch.Generator | None = None,
              **overrides) -> Generated:
        """``n`` prior samples of all modalities: {stage: images [n, M, 3, 28, 28], in chain order, plus "final"}
        (a captioned model's captions in ``.captions``, as ``conditional``)."""
        out = conditional_generate(self.model, None, None, n=n, chains=self.chains,
                                   generator=self._generator(generator), prior=self._prior(prior), **overrides)
        return self._with_captions(out)

    # ------------------------------------------------------------ saving
    def save_pretrained(self, path: str | Path) -> Path:
        """The weights, config.json (with ``self.chains``) and the ex-post prior (if any) in the folder ``path``."""
        path = Path(path)
        model = self.model
        saved = model.config
        model.config = model._hub_mixin_config = dataclasses.replace(saved, chains=self.chains)
        try:
            model.save_pretrained(str(path))
        finally:
            model.config = model._hub_mixin_config = saved
        if self.prior is not None:
            self.prior.save(path / PRIOR_FILE)
        return path
