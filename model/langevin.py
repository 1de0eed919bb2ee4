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
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from .config import Chains


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


def langevin(energy_fn: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, steps: int, step_size: float,
             noise: float, *, frozen: torch.Tensor | None = None, bounds: tuple[float, float] | None = None,
             max_abs: float | None = None, generator: torch.Generator | None = None,
             stage: str = "Langevin") -> Iterator[ChainState]:
    """Langevin descent of ``energy_fn`` (per-sample energies [B]) from ``x0``.

    frozen: bool mask broadcastable to x; frozen entries keep their value of x0 (clamping).
    bounds: clamp every state into [lo, hi]; a chain whose updates land far outside them, step after
    step (see RUNAWAY_FRACTION), is reported as diverged. max_abs: a state with |x| beyond it counts as
    diverged.
    """
    x = x0.detach().clone()
    keep = None if frozen is None else x0.detach()
    free = None if frozen is None else (~frozen).expand_as(x)
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
        if noise > 0:
            x = x + noise * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if frozen is not None:
            x = torch.where(frozen, keep, x)
        if bounds is not None:
            runaway = check_runaway(stage, k + 1, x, bounds, free, runaway)
            x = x.clamp(*bounds)


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


def data_revision(energy_model, x0: torch.Tensor, steps: int, step_size: float, noise: float,
                  observed: torch.Tensor | None = None, generator=None) -> Iterator[ChainState]:
    """Langevin on the joint EBM over x [B, M, 3, 28, 28]; modalities in ``observed`` (bool [M])
    are held at their values in x0. States stay in the data range [0, 1]."""
    frozen = None if observed is None or not observed.any() else observed.view(1, -1, 1, 1, 1).to(x0.device)
    return langevin(energy_model, x0, steps, step_size, noise, frozen=frozen, bounds=(0.0, 1.0),
                    generator=generator, stage="data")


def latent_revision(generator_model, z0: torch.Tensor, x: torch.Tensor, steps: int, step_size: float,
                    noise: float, observed: torch.Tensor | None = None, generator=None,
                    max_abs: float = 50.0) -> Iterator[ChainState]:
    """Langevin on the generator posterior p(z | x_S) ∝ p(z) prod_{m in S} p(x_m | z), from z0.
    ``energy`` of each state is -log p(z | x_S) up to a constant."""
    return langevin(posterior_energy(generator_model, x, observed), z0, steps, step_size, noise, max_abs=max_abs,
                    generator=generator, stage="latent")


def ebm_latent_revision(generator_model, energy_model, z0: torch.Tensor, steps: int, step_size: float,
                        noise: float, x_obs: torch.Tensor | None = None, observed: torch.Tensor | None = None,
                        generator=None, prior=None, max_abs: float = 50.0) -> Iterator[ChainState]:
    """The EBM's revision in latent space: Langevin on
        U(z) = E(x(z)) - log p(z) + sum_{m in S} ||x_m - g_m(z)||^2 / (2 sigma^2),
    x(z) = G(z) with the observed modalities S (bool [M] ``observed``) clamped to their values in
    ``x_obs``; -log p(z) = ||z||^2 / 2 (or ``prior.energy(z)``, e.g. an ex-post Gaussian mixture).
    Without observed modalities it samples exp(-E(G(z))) p(z), the EBM's density pulled back through
    the generator; with them, the EBM-tilted generator posterior. ``energy`` of each state is U(z)."""
    U = ebm_latent_energy(generator_model, energy_model, x_obs, observed, prior)
    return langevin(U, z0, steps, step_size, noise, max_abs=max_abs, generator=generator, stage="ebm_latent")


def posterior_energy(generator_model, x: torch.Tensor, observed: torch.Tensor | None):
    """z -> -log p(z | x_S) per sample, up to a constant: the latent revision's energy."""
    def neg_log_posterior(z):
        return -generator_model.log_posterior(z, x, observed)
    return neg_log_posterior


def ebm_latent_energy(generator_model, energy_model, x_obs: torch.Tensor | None, observed: torch.Tensor | None,
                      prior=None):
    """z -> U(z) per sample, the EBM latent revision's energy (see ``ebm_latent_revision``)."""
    G, E = generator_model, energy_model
    conditioned = observed is not None and bool(observed.any())
    mask = observed.view(1, -1, 1, 1, 1).to(x_obs.device) if conditioned else None

    def U(z):
        x = G(z)
        prior_energy = 0.5 * (z ** 2).sum(1) if prior is None else prior.energy(z)
        if not conditioned:
            return E(x) + prior_energy
        nll = (((x_obs - x) ** 2) * mask).flatten(1).sum(1) / (2 * G.sigma ** 2)
        return E(torch.where(mask, x_obs, x)) + prior_energy + nll
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
                                        # in the latent stages, None in the data stage


STAGES = ("proposal", "latent", "ebm_latent", "data")
STAGE_TITLES = {"proposal": "proposal", "latent": "latent revision", "ebm_latent": "EBM latent revision",
                "data": "EBM data revision"}


def stage_title(stage: str) -> str:
    """A stage's name for people (the app's captions, the evaluation's tables)."""
    return STAGE_TITLES.get(stage, stage.replace("_", " "))


def fill_observed(x_gen, x_obs, observed):
    """x_gen with the observed modalities replaced by x_obs's (the clamped ones of a conditional chain)."""
    if observed is None or not observed.any():
        return x_gen
    return torch.where(observed.view(1, -1, 1, 1, 1), x_obs, x_gen)


@torch.no_grad()
def conditional_sampling(model, x_obs: torch.Tensor | None, observed: torch.Tensor | None, n: int | None = None,
                         chains: Chains | None = None, generator: torch.Generator | None = None,
                         data_init: str = "generator", every: int = 1, prior=None, **overrides) -> Iterator[Frame]:
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
    """
    chains = (chains or model.config.chains).replace(**overrides)
    conditioned = observed is not None and bool(observed.any())
    latent, data = chains.latent, chains.data
    ebm = chains.ebm_latent_for(conditioned)   # the posterior is far stiffer than the prior: its own step size
    G, E = model.generator, model.energy
    dev = next(G.parameters()).device
    if conditioned:
        z = model.inference.sample(x_obs, observed, generator=generator)
        prior = None  # the posterior's prior is the generator's own N(0, I)
    else:
        n = n if n is not None else (x_obs.shape[0] if x_obs is not None else 1)
        z = torch.randn(n, model.config.latent_dim, generator=generator, device=dev) if prior is None else \
            prior.sample(n, generator).to(dev)
        x_obs, observed = None, None

    def decoded(z):
        return fill_observed(G(z), x_obs, observed)

    def log_prior(z):
        return -0.5 * (z ** 2).sum(1) if prior is None else -prior.energy(z)

    x = decoded(z)
    logp = G.log_posterior(z, x_obs, observed) if conditioned else log_prior(z)
    yield Frame("proposal", 0, x, E(x), logp)
    if conditioned and latent.steps > 0:
        for st in latent_revision(G, z, x_obs, latent.steps, latent.step_size, latent.noise, observed,
                                  generator=generator):
            z = st.x
            if st.step % every == 0 or st.step == latent.steps:
                x = decoded(z)
                yield Frame("latent", st.step, x, E(x), -st.energy)
    if ebm.steps > 0:
        for st in ebm_latent_revision(G, E, z, ebm.steps, ebm.step_size, ebm.noise, x_obs, observed,
                                      generator=generator, prior=prior):
            z = st.x
            if st.step % every == 0 or st.step == ebm.steps:
                x = decoded(z)
                e = E(x)
                yield Frame("ebm_latent", st.step, x, e, e - st.energy)  # U = E - log p(z | x_S)
    x = decoded(z)
    if data.steps > 0:
        if data_init == "noise":
            x = fill_observed(torch.rand(x.shape, generator=generator, device=dev), x_obs, observed)
        for st in data_revision(E, x, data.steps, data.step_size, data.noise, observed, generator=generator):
            if st.step % every == 0 or st.step == data.steps:
                yield Frame("data", st.step, st.x, st.energy, None)


def conditional_generate(model, x_obs, observed, **kw) -> dict[str, torch.Tensor]:
    """Run ``conditional_sampling`` to the end; return the images after each stage that ran, by name
    (in STAGES order, each [B, M, 3, 28, 28]), and "final": the last of them."""
    out = {}
    for frame in conditional_sampling(model, x_obs, observed, every=10 ** 9, **kw):
        out[frame.stage] = frame.x
    out["final"] = frame.x
    return out
