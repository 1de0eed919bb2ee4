"""The two MCMC revisions of the method, as Python generators that yield every step.

Every chain takes the update
    x <- x - (s^2 / 2) * grad U(x) + n * xi,   xi ~ N(0, I)
where U is the energy to descend: the EBM's E(x) in data space, the negative log-posterior
-log p(z | x_S) = ||z||^2 / 2 + sum_{m in S} ||x_m - g_m(z)||^2 / (2 sigma^2) in latent space
(textbook 1/(2 sigma^2), unlike the predecessor's code which drops the 1/2). Step size s and noise n
are separate knobs; they imply the temperature T = (n / s)^2 (n = s: exact Langevin on exp(-U);
n << s: nearly gradient descent). Gradients are taken with ``torch.autograd.grad`` on the chain
variable only, so no parameter gradient is ever touched.

``data_revision`` / ``latent_revision`` / ``ebm_latent_revision`` yield a ``ChainState`` per step
(step 0 is the start); ``run`` drives any of them to the end. ``ebm_latent_revision`` is the EBM's
revision in latent space (VAEBM's sampler, Xiao et al. 2021): Langevin on
U(z) = E(G(z)) + ||z||^2 / 2 [+ sum_{m in S} ||x_m - g_m(z)||^2 / (2 sigma^2)], the EBM's density
pulled back through the generator, times the prior (times the likelihood of the observed
modalities, which also stay clamped inside E). ``conditional_sampling`` chains the whole conditional
generation (inference proposal -> latent revision -> EBM latent revision -> decode -> data revision)
and yields frames. Non-finite values, a latent chain leaving |z| < max_abs, or a data chain whose
steps overshoot the data range far and repeatedly (step size too large: the clamp to [0, 1] would
hide it) raise ``ChainDiverged``.

With a caption modality (``ModelConfig.text``, docs/captions.md) the caption is modality index M of an observed
mask [M + 1]. The latent revision adds the caption's likelihood log p(t | z) when it is observed; the EBM latent
revision reads E(G(z), t) with t the observed caption or the relaxation of the text decoder's logits; the data
revision's state is the images and the caption's logits (moved with a step size of their own, read by the energy
through softmax, so every state is a valid soft caption), or, with the caption observed, the images alone beside
the caption held fixed. Frames and chain states carry the caption the energy read (soft one-hot [B, L, V]).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from .config import Chains
from .networks import text_relaxation


class ChainDiverged(RuntimeError):
    """A Langevin chain produced non-finite values, left its bounds or ran away: lower the step size."""

    def __init__(self, stage: str, step: int, reason: str):
        self.stage, self.step, self.reason = stage, step, reason
        super().__init__(f"The {stage} chain diverged at step {step} ({reason}): step size too large. "
                         f"Lower its step size.")

    def __reduce__(self):   # pickled whole (a ZeroGPU call hands it from its own process to the page's)
        return type(self), (self.stage, self.step, self.reason)


# a bounded chain "runs away" when, on RUNAWAY_PATIENCE consecutive steps, more than RUNAWAY_FRACTION of
# its free entries land over one whole data range outside the bounds before being clamped back
RUNAWAY_FRACTION = 0.05
RUNAWAY_PATIENCE = 3


@dataclass
class ChainState:
    step: int
    x: torch.Tensor          # the chain variable after `step` updates (detached)
    energy: torch.Tensor     # U(x) per chain [B]: EBM energy, or negative log-posterior
    text: torch.Tensor | None = None  # data revision with a caption modality: the caption the energy read
                                      # (soft one-hot [B, L, V]), else None


def langevin(energy_fn: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, steps: int, step_size: float,
             noise: float, *, frozen: torch.Tensor | None = None, bounds: tuple[float, float] | None = None,
             max_abs: float | None = None, generator: torch.Generator | None = None,
             stage: str = "Langevin", bounded: torch.Tensor | None = None) -> Iterator[ChainState]:
    """Langevin descent of ``energy_fn`` (per-sample energies [B]) from ``x0``.

    step_size, noise: numbers, or tensors broadcastable to x (a step size and noise per entry).
    frozen: bool mask broadcastable to x; frozen entries keep their value of x0 (clamping).
    bounds: clamp every state into [lo, hi]; a chain whose updates land far outside them, step after
    step (see RUNAWAY_FRACTION), is reported as diverged. bounded: bool mask broadcastable to x of the
    entries ``bounds`` apply to (default: all). max_abs: a state with |x| beyond it counts as diverged.
    """
    x = x0.detach().clone()
    keep = None if frozen is None else x0.detach()
    free = None if frozen is None else (~frozen).expand_as(x)
    if bounded is not None:
        free = bounded.expand_as(x) if free is None else free & bounded
    runaway = 0
    for k in range(steps + 1):
        with torch.enable_grad():
            x.requires_grad_(True)
            energy = energy_fn(x)
            grad = torch.autograd.grad(energy.sum(), x)[0] if k < steps else torch.zeros_like(x)
        x = x.detach()
        energy = energy.detach()
        if frozen is not None:
            grad = grad.masked_fill(frozen, 0.0)
        check_state(stage, k, x, energy, grad, max_abs)
        yield ChainState(k, x, energy)
        if k == steps:
            return
        x = x - 0.5 * step_size ** 2 * grad
        if torch.is_tensor(noise) or noise > 0:
            x = x + noise * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if frozen is not None:
            x = torch.where(frozen, keep, x)
        if bounds is not None:
            runaway = check_runaway(stage, k + 1, x, bounds, free, runaway)
            x = x.clamp(*bounds) if bounded is None else torch.where(bounded, x.clamp(*bounds), x)


def check_state(stage: str, k: int, x, energy, grad, max_abs: float | None = None):
    """ChainDiverged if the state, its energy or its gradient is not finite, or |x| exceeds ``max_abs``."""
    if not (torch.isfinite(energy).all() and torch.isfinite(grad).all() and torch.isfinite(x).all()):
        raise ChainDiverged(stage, k, "non-finite values")
    if max_abs is not None and x.abs().max() > max_abs:
        raise ChainDiverged(stage, k, f"|values| above {max_abs:g}")


def check_runaway(stage: str, k: int, x, bounds: tuple[float, float], free, runaway: int) -> int:
    """The count of consecutive steps on which ``x`` (before clamping) landed far outside ``bounds`` (see
    RUNAWAY_FRACTION; ``free``: the entries that move, or None for all); ChainDiverged after RUNAWAY_PATIENCE."""
    lo, hi = bounds
    far = (x < lo - (hi - lo)) | (x > hi + (hi - lo))
    far = far if free is None else far[free]
    frac = far.float().mean().item() if far.numel() else 0.0
    runaway = runaway + 1 if frac > RUNAWAY_FRACTION else 0
    if runaway >= RUNAWAY_PATIENCE:
        raise ChainDiverged(stage, k, f"{100 * frac:.0f} % of the values jumped far past the range "
                                      f"[{lo:g}, {hi:g}] on {runaway} steps in a row")
    return runaway


def text_is_observed(observed: torch.Tensor | None, n_images: int) -> bool:
    """Whether a mask [M] or [M + 1] holds the caption (index M) as observed."""
    return observed is not None and len(observed) > n_images and bool(observed[n_images])


def data_revision(energy_model, x0: torch.Tensor, steps: int, step_size: float, noise: float,
                  observed: torch.Tensor | None = None, generator=None, text: torch.Tensor | None = None,
                  text_step_size: float = 2.0, text_noise: float = 0.02) -> Iterator[ChainState]:
    """Langevin on the joint EBM over x [B, M, 3, 28, 28]; modalities in ``observed`` (bool [M], or [M + 1] with
    the caption last) are held at their values in x0. States stay in the data range [0, 1].

    With a caption modality, ``text`` is the caption: observed (``observed[M]``), its soft one-hot [B, L, V], held
    fixed (clamped: it never moves); else its logits [B, L, V], the chain's text state, revised with the images
    by step size ``text_step_size`` and noise ``text_noise`` (unbounded; the energy reads their softmax). Each
    state's ``text`` is the caption the energy read."""
    M = x0.shape[1]
    images = None if observed is None else observed[:M]
    frozen = None if images is None or not images.any() else images.view(1, -1, 1, 1, 1).to(x0.device)
    if text is None:
        return langevin(energy_model, x0, steps, step_size, noise, frozen=frozen, bounds=(0.0, 1.0),
                        generator=generator, stage="data")
    if text_is_observed(observed, M):
        chain = langevin(lambda x: energy_model(x, text), x0, steps, step_size, noise, frozen=frozen,
                         bounds=(0.0, 1.0), generator=generator, stage="data")
        return (ChainState(st.step, st.x, st.energy, text) for st in chain)
    return _joint_data_revision(energy_model, x0, text, steps, (step_size, text_step_size), (noise, text_noise),
                                frozen, generator)


def _joint_data_revision(energy_model, x0, logits0, steps, step_sizes, noises, frozen, generator):
    """The data revision over the images and the caption's logits, as one Langevin chain over both flattened
    side by side [B, D_images + L * V], each part with its own step size and noise, the bounds on the images."""
    n = x0[0].numel()

    def split(state):
        return state[:, :n].view_as(x0), state[:, n:].view_as(logits0)

    def per_entry(image_value, text_value):
        return torch.cat([torch.full((1, n), image_value), torch.full((1, logits0[0].numel()), text_value)],
                         1).to(x0.device)

    state0 = torch.cat([x0.flatten(1), logits0.flatten(1)], 1)
    is_image = per_entry(1.0, 0.0).bool()
    frozen_state = None if frozen is None else torch.cat(
        [frozen.expand_as(x0[:1]).flatten(1), torch.zeros(1, logits0[0].numel(), dtype=torch.bool,
                                                           device=x0.device)], 1)

    def U(state):
        x, logits = split(state)
        return energy_model(x, text_relaxation(logits))

    for st in langevin(U, state0, steps, per_entry(*step_sizes), per_entry(*noises), frozen=frozen_state,
                       bounds=(0.0, 1.0), bounded=is_image, generator=generator, stage="data"):
        x, logits = split(st.x)
        yield ChainState(st.step, x, st.energy, text_relaxation(logits))


def latent_revision(generator_model, z0: torch.Tensor, x: torch.Tensor, steps: int, step_size: float,
                    noise: float, observed: torch.Tensor | None = None, generator=None,
                    max_abs: float = 50.0, text: torch.Tensor | None = None,
                    text_weight: float = 1.0) -> Iterator[ChainState]:
    """Langevin on the generator posterior p(z | x_S) ∝ p(z) prod_{m in S} p(x_m | z), from z0 (times
    p(t | z)^text_weight for an observed caption ``text``, soft one-hot [B, L, V]; ``TextConfig.latent_weight``).
    ``energy`` of each state is -log p(z | x_S) up to a constant."""
    return langevin(posterior_energy(generator_model, x, observed, text, text_weight), z0, steps, step_size, noise,
                    max_abs=max_abs, generator=generator, stage="latent")


def ebm_latent_revision(generator_model, energy_model, z0: torch.Tensor, steps: int, step_size: float,
                        noise: float, x_obs: torch.Tensor | None = None, observed: torch.Tensor | None = None,
                        generator=None, prior=None, max_abs: float = 50.0,
                        text: torch.Tensor | None = None) -> Iterator[ChainState]:
    """The EBM's revision in latent space: Langevin on
        U(z) = E(x(z)) - log p(z) + sum_{m in S} ||x_m - g_m(z)||^2 / (2 sigma^2),
    x(z) = G(z) with the observed modalities S (bool [M] ``observed``) clamped to their values in
    ``x_obs``; -log p(z) = ||z||^2 / 2 (or ``prior.energy(z)``, e.g. an ex-post Gaussian mixture).
    Without observed modalities it samples exp(-E(G(z))) p(z), the EBM's density pulled back through
    the generator; with them, the EBM-tilted generator posterior. ``energy`` of each state is U(z).
    With a caption modality the energy reads the caption ``text`` (soft one-hot) when it is observed (``observed``
    [M + 1]), adding -log p(t | z) to U, else the relaxation of the text decoder's logits at z."""
    U = ebm_latent_energy(generator_model, energy_model, x_obs, observed, prior, text)
    return langevin(U, z0, steps, step_size, noise, max_abs=max_abs, generator=generator, stage="ebm_latent")


def posterior_energy(generator_model, x: torch.Tensor, observed: torch.Tensor | None,
                     text: torch.Tensor | None = None, text_weight: float = 1.0):
    """z -> -log p(z | x_S) per sample, up to a constant: the latent revision's energy (the caption's
    log-likelihood, times ``text_weight``, included when ``text`` is given and observed)."""
    def neg_log_posterior(z):
        if text is None:
            return -generator_model.log_posterior(z, x, observed)
        return -generator_model.log_posterior(z, x, observed, text, text_weight)
    return neg_log_posterior


def ebm_latent_energy(generator_model, energy_model, x_obs: torch.Tensor | None, observed: torch.Tensor | None,
                      prior=None, text: torch.Tensor | None = None):
    """z -> U(z) per sample, the EBM latent revision's energy (see ``ebm_latent_revision``)."""
    G, E = generator_model, energy_model
    n_images = len(G.decoders) if hasattr(G, "decoders") else None
    images = None if observed is None else observed[:n_images]
    conditioned = images is not None and bool(images.any())
    mask = images.view(1, -1, 1, 1, 1).to(x_obs.device) if conditioned else None
    has_text = getattr(E, "has_text", False)
    text_observed = has_text and text is not None and text_is_observed(observed, n_images)

    def caption(z):
        """The caption E reads (None for images alone) and -log p(t | z) of an observed one (else 0)."""
        if not has_text:
            return None, 0.0
        if text_observed:
            return text, -G.text_log_likelihood(text, z)
        return text_relaxation(G.text_logits(z)), 0.0

    def U(z):
        x = G(z)
        prior_energy = 0.5 * (z ** 2).sum(1) if prior is None else prior.energy(z)
        t, text_nll = caption(z)
        if not conditioned:
            return (E(x) if t is None else E(x, t)) + prior_energy + text_nll
        nll = (((x_obs - x) ** 2) * mask).flatten(1).sum(1) / (2 * G.sigma ** 2)
        return (E(torch.where(mask, x_obs, x)) if t is None else E(torch.where(mask, x_obs, x), t)) + prior_energy \
            + nll + text_nll
    return U


def run(chain: Iterator[ChainState]) -> ChainState:
    """Drive a chain to its last state and return it."""
    last = deque(chain, maxlen=1)
    return last[0] if last else None


# ---------------------------------------------------------------- conditional generation

@dataclass
class Frame:
    stage: str                  # "proposal" | "latent" | "ebm_latent" | "data" (STAGES, in this order)
    step: int
    x: torch.Tensor             # [B, M, 3, 28, 28], observed modalities shown at their given values
    energy: torch.Tensor        # EBM energy of x [B]
    log_posterior: torch.Tensor | None  # log p(z | x_S) (+ const; log p(z) unconditioned) of the latent state
                                        # in the latent stages (an observed caption's term times
                                        # TextConfig.latent_weight, as the chain follows it), None in the data stage
    text: torch.Tensor | None = None    # with a caption modality: the caption at this step, soft one-hot [B, L, V]
                                        # (the observed one, or the generated one's relaxation); else None
    z: torch.Tensor | None = None       # the latent state [B, d] in the proposal and the latent stages, None in the
                                        # data stage


STAGES = ("proposal", "latent", "ebm_latent", "data")
STAGE_TITLES = {"proposal": "proposal", "latent": "latent revision", "ebm_latent": "EBM latent revision",
                "data": "EBM data revision"}


def stage_title(stage: str) -> str:
    """A stage's name for people (the app's captions, the evaluation's tables)."""
    return STAGE_TITLES.get(stage, stage.replace("_", " "))


def fill_observed(x_gen, x_obs, observed):
    """x_gen with the observed modalities replaced by x_obs's (the clamped ones of a conditional chain; a mask
    [M + 1] with the caption last is read for its M images)."""
    if observed is not None:
        observed = observed[:x_gen.shape[1]]
    if observed is None or not observed.any():
        return x_gen
    return torch.where(observed.view(1, -1, 1, 1, 1), x_obs, x_gen)


@torch.no_grad()
def conditional_sampling(model, x_obs: torch.Tensor | None, observed: torch.Tensor | None, n: int | None = None,
                         chains: Chains | None = None, generator: torch.Generator | None = None,
                         data_init: str = "generator", every: int = 1, prior=None, text: torch.Tensor | None = None,
                         **overrides) -> Iterator[Frame]:
    """Conditional (or, with nothing observed, unconditional) generation, frame by frame.

    x_obs: [B, M, 3, 28, 28] with the observed modalities filled in (others ignored), or None.
    observed: bool [M]. ``chains``: the chain settings (default: the model's, ``model.config.chains``), with
    ``overrides`` by flat name (``data_steps=0``, see ``Chains.replace``). Stages (STAGES, in order; a stage with 0
    steps is skipped): "proposal": the inference model's sample (unconditioned: z from the prior) decoded by the
    generator; "latent": Langevin on the generator posterior p(z | x_S) (skipped when nothing is observed: the
    posterior is the prior); "ebm_latent": Langevin on E(G(z)) + ||z||^2 / 2 (+ the likelihood of x_S, clamped
    inside E; the chain ``ebm_latent_cond`` when something is observed, ``ebm_latent`` otherwise), see
    ``ebm_latent_revision``; decode; "data": Langevin on the EBM with the observed modalities clamped.
    ``data_init='noise'`` starts the data chain from uniform noise instead (the ablation the app shows side by
    side). ``prior``: an object with ``sample(n, generator)`` and ``energy(z)`` (= -log p(z) + const, e.g.
    ``model.prior.GaussianMixture``, the ex-post prior) used instead of N(0, I) for unconditional samples (their
    start and the EBM latent chain's prior term). ``every``: yield every k-th step (the first and last always).

    With a caption modality (``model.config.text``): ``observed`` is [M + 1] with the caption last, ``text`` the
    observed caption as soft one-hot [B, L, V] (``networks.text_one_hot`` of token ids; ``x_obs`` may be None when
    only the caption is observed). The caption enters the inference proposal, the latent revision's likelihood
    and every energy; unobserved, it is generated from the text decoder's logits and revised with the images in
    the data stage. Each frame's ``text`` is the caption at that step (soft one-hot).
    """
    chains = (chains or model.config.chains).replace(**overrides)
    conditioned = observed is not None and bool(observed.any())
    latent, data = chains.latent, chains.data
    ebm = chains.ebm_latent_for(conditioned)   # the posterior is far stiffer than the prior: its own step size
    G, E = model.generator, model.energy
    dev = next(G.parameters()).device
    text_cfg, M = model.config.text, model.config.n_modalities
    text_observed = text_cfg is not None and text_is_observed(observed, M)
    if text_observed and text is None:
        raise ValueError("the caption is observed: pass its soft one-hot vectors as text=[B, L, V]")
    text = text if text_observed else None
    if text_observed and x_obs is None:   # the caption alone is observed: no image to read
        x_obs = torch.zeros(len(text), M, 3, 28, 28, device=dev)
    if conditioned:
        z = model.inference.sample(x_obs, observed, generator=generator, text=text)
        prior = None  # the posterior's prior is the generator's own N(0, I)
    else:
        n = n if n is not None else (x_obs.shape[0] if x_obs is not None else 1)
        z = torch.randn(n, model.config.latent_dim, generator=generator, device=dev) if prior is None else \
            prior.sample(n, generator).to(dev)
        x_obs, observed = None, None

    def decoded(z):
        return fill_observed(G(z), x_obs, observed)

    def caption(z):
        """The caption shown and read by the energy at z (None for images alone)."""
        if text_cfg is None:
            return None
        return text if text_observed else text_relaxation(G.text_logits(z))

    def energy(x, t):
        return E(x) if t is None else E(x, t)

    def log_prior(z):
        return -0.5 * (z ** 2).sum(1) if prior is None else -prior.energy(z)

    text_weight = 1.0 if text_cfg is None else text_cfg.latent_weight
    x, t = decoded(z), caption(z)
    logp = -posterior_energy(G, x_obs, observed, text, text_weight)(z) if conditioned else log_prior(z)
    yield Frame("proposal", 0, x, energy(x, t), logp, t, z)
    if conditioned and latent.steps > 0:
        for st in latent_revision(G, z, x_obs, latent.steps, latent.step_size, latent.noise, observed,
                                  generator=generator, text=text, text_weight=text_weight):
            z = st.x
            if st.step % every == 0 or st.step == latent.steps:
                x, t = decoded(z), caption(z)
                yield Frame("latent", st.step, x, energy(x, t), -st.energy, t, z)
    if ebm.steps > 0:
        for st in ebm_latent_revision(G, E, z, ebm.steps, ebm.step_size, ebm.noise, x_obs, observed,
                                      generator=generator, prior=prior, text=text):
            z = st.x
            if st.step % every == 0 or st.step == ebm.steps:
                x, t = decoded(z), caption(z)
                e = energy(x, t)
                yield Frame("ebm_latent", st.step, x, e, e - st.energy, t, z)  # U = E - log p(z | x_S)
    x = decoded(z)
    if data.steps > 0:
        text_state = None if text_cfg is None else text if text_observed else G.text_logits(z)
        if data_init == "noise":
            x = fill_observed(torch.rand(x.shape, generator=generator, device=dev), x_obs, observed)
            if text_cfg is not None and not text_observed:
                text_state = torch.randn(text_state.shape, generator=generator, device=dev)
        text_knobs = {} if text_cfg is None else {"text": text_state, "text_step_size": text_cfg.data_step_size,
                                                  "text_noise": text_cfg.data_noise}
        for st in data_revision(E, x, data.steps, data.step_size, data.noise, observed, generator=generator,
                                **text_knobs):
            if st.step % every == 0 or st.step == data.steps:
                yield Frame("data", st.step, st.x, st.energy, None, st.text)


class Generated(dict):
    """{stage: images [B, M, 3, 28, 28]} in chain order, plus "final"; with a caption modality ``text`` holds the
    caption after each stage by the same names (soft one-hot [B, L, V]), else it is empty; ``captions`` the same
    decoded to text by ``model.Sampler``."""

    def __init__(self):
        super().__init__()
        self.text: dict[str, torch.Tensor] = {}
        self.captions: dict[str, list[str]] = {}


def conditional_generate(model, x_obs, observed, **kw) -> Generated:
    """Run ``conditional_sampling`` to the end; return the images after each stage that ran, by name
    (in STAGES order, each [B, M, 3, 28, 28]), and "final": the last of them (``Generated``: with a caption
    modality, the captions too, in ``.text``)."""
    out = Generated()
    for frame in conditional_sampling(model, x_obs, observed, every=10 ** 9, **kw):
        out[frame.stage] = frame.x
        if frame.text is not None:
            out.text[frame.stage] = frame.text
    out["final"] = frame.x
    if frame.text is not None:
        out.text["final"] = frame.text
    return out
