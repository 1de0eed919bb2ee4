"""The demo's chain, as a small object that tests drive without a web page.

``ChainPlayer`` holds one run of ``conditional_sampling`` (and, optionally, the same data steps started
from noise): ``next()`` advances one frame, ``step(k)`` advances k Langevin steps, ``reset()`` goes back
to the proposal with the same seed, so a run streamed frame by frame and a run stepped by hand give the
same frames. Stages are handled by name, in the order the sampler yields them ("proposal", "latent",
"ebm_latent", "data", whichever ran), run by a ``model.Sampler``. Unconditional chains draw z from the sampler's
ex-post prior when it has one and ``settings.ex_post_prior`` is on, else from N(0, I).
A sampler with the caption modality also takes a typed caption (token ids); its frames carry each sample's caption.
Frames are kept as uint8, thinned to stay under ``max_bytes``.
``Sessions`` keeps one player per visitor, at most ``max_sessions`` (the least recently used goes first).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch


from .render import as_uint8

@dataclass(frozen=True)
class ChainSettings:
    n_samples: int = 3
    latent_steps: int = 20
    latent_step_size: float = 0.03
    data_steps: int = 30
    data_step_size: float = 1.0
    noise: bool = True
    seed: int = 0
    compare: bool = False          # also run the data steps from noise (the "why it matters" view)
    ex_post_prior: bool = True     # unconditional: z from the ex-post prior (when the player has one), else N(0, I)


@dataclass
class Snapshot:
    """One frame of the run, compact: images as uint8, read-outs as numbers."""
    index: int                     # frame number in the run (0 = the proposal)
    stage: str
    step: int
    x: np.ndarray                  # uint8 [B, M, 3, 28, 28]
    energy: np.ndarray             # EBM energy per sample [B]
    log_posterior: np.ndarray | None
    update: float | None           # RMS change of the images since the previous frame (pixel scale 0..1)
    energy_change: float | None    # change of the mean EBM energy since the previous frame
    noise_x: np.ndarray | None = None      # the chain from noise at the same data step (compare)
    noise_energy: float | None = None
    z: np.ndarray | None = None            # the latent state [B, d] (float32) in the proposal and latent stages
    captions: list[str] | None = None      # with a caption modality: each sample's caption at this frame

    @property
    def nbytes(self) -> int:
        return self.x.nbytes + sum(0 if a is None else a.nbytes for a in (self.noise_x, self.z))


class ChainPlayer:
    def __init__(self, sampler, x_obs: torch.Tensor | None, observed: torch.Tensor | None, settings: ChainSettings,
                 max_bytes: int = 8 * 2 ** 20, text: torch.Tensor | None = None):
        """One run of ``sampler`` (a model.Sampler) with the demo's ``settings`` over its chain settings. A sampler
        with the caption modality also takes an observed caption ``text`` (token ids [1, L]; ``x_obs`` may then be
        None and ``observed`` is [M + 1], the caption last); its frames carry each sample's caption."""
        self.sampler, self.settings, self.max_bytes = sampler, settings, max_bytes
        s = settings
        self.conditioned = observed is not None and bool(observed.any())
        # None: z ~ N(0, I) (or inferred)
        self.prior = sampler.prior if s.ex_post_prior and not self.conditioned else None
        self.device = sampler.device   # the chains run where the model is; frames come back to the CPU
        self.x_in = (x_obs.expand(s.n_samples, -1, -1, -1, -1).contiguous().to(self.device)
                     if self.conditioned and x_obs is not None else None)
        self.observed = observed.to(self.device) if self.conditioned else None
        self.text = None if text is None else text.expand(s.n_samples, -1).contiguous()
        chains = sampler.chains
        self.kw = dict(latent_steps=s.latent_steps, latent_step_size=s.latent_step_size,
                       latent_noise=chains.latent.noise if s.noise else 0.0, data_steps=s.data_steps,
                       data_step_size=s.data_step_size, data_noise=chains.data.noise if s.noise else 0.0)
        self.totals = {"proposal": 0, "latent": s.latent_steps, "data": s.data_steps}
        ebm_steps = chains.ebm_latent_for(self.conditioned).steps
        if ebm_steps > 0:   # a stage not listed here counts its steps as far as they are seen
            self.totals["ebm_latent"] = ebm_steps
        self._known = {k for k, v in self.totals.items() if v is not None}
        self.lock = threading.Lock()
        self.reset()

    @property
    def model(self):
        return self.sampler.model

    # ------------------------------------------------------------ the chains
    def reset(self):
        """Back to before the proposal, with the same seed: the next frame is the proposal again."""
        s = self.settings
        prior = "ex-post" if self.prior is not None else "normal"
        self._chain = self.sampler.frames(self.x_in, self.observed, n=s.n_samples, prior=prior, text=self.text,
                                          generator=torch.Generator(self.device).manual_seed(s.seed), **self.kw)
        self._noise = None
        if s.compare:   # starts from noise, not from z: no prior, so it is the same chain whichever z the other uses
            kw = {**self.kw, "latent_steps": 0, "ebm_latent_steps": 0, "ebm_latent_cond_steps": 0}
            self._noise = self.sampler.frames(self.x_in, self.observed, n=s.n_samples, data_init="noise",
                                              prior="normal", text=self.text, **kw,
                                              generator=torch.Generator(self.device).manual_seed(s.seed))
            self._noise_frames = (f for f in self._noise if f.stage == "data")
        self.frames: list[Snapshot] = []       # kept for scrubbing (thinned under max_bytes)
        self.stage_last: dict[str, Snapshot] = {}  # the latest frame of every stage reached, in order
        self.current: Snapshot | None = None
        self.finished = False
        self._kept_bytes = 0
        self._count = 0

    def close(self):
        for chain in (self._chain, self._noise):
            try:
                if chain is not None:
                    chain.close()
            except ValueError:  # running in another thread: it ends with that thread
                pass

    def next(self) -> Snapshot | None:
        """The next frame (None when the run has ended). ChainDiverged propagates; the run then ends."""
        if self.finished:
            return None
        try:
            frame = next(self._chain)
        except StopIteration:
            self.finished = True
            return None
        except Exception:
            self.finished = True
            raise
        return self.take(frame)

    def take(self, frame) -> Snapshot:
        """This run's next frame from ``frame`` (a model.langevin.Frame): from this player's own chain (``next()``),
        or computed for it in a batch of chains (demo.scheduler) with the same inputs, settings and seed."""
        noise_x = noise_energy = None
        if self._noise is not None and frame.stage == "data":
            nf = next(self._noise_frames, None)
            if nf is not None:
                noise_x, noise_energy = as_uint8(nf.x), float(nf.energy.mean().cpu())
        elif self.current is not None and self.current.noise_x is not None:
            noise_x, noise_energy = self.current.noise_x, self.current.noise_energy
        x = as_uint8(frame.x)
        energy = frame.energy.detach().float().cpu().numpy()
        prev = self.current
        update = energy_change = None
        if prev is not None:
            update = float(np.sqrt(np.mean((x.astype(np.float32) - prev.x.astype(np.float32)) ** 2)) / 255)
            energy_change = float(energy.mean() - prev.energy.mean())
        lp = None if frame.log_posterior is None else frame.log_posterior.detach().float().cpu().numpy()
        z = None if getattr(frame, "z", None) is None else frame.z.detach().float().cpu().numpy()
        text = getattr(frame, "text", None)
        captions = None if text is None else self.sampler.decode(text)
        snap = Snapshot(self._count, frame.stage, frame.step, x, energy, lp, update, energy_change, noise_x,
                        noise_energy, z, captions)
        self.record(snap)
        return snap

    def record(self, snap: Snapshot):
        """Take ``snap`` as this run's next frame: from ``next()``, or computed elsewhere by a player with the same
        inputs and settings (another process, a batch of chains)."""
        self._count = snap.index + 1
        self.current = snap
        self.stage_last[snap.stage] = snap
        if snap.stage not in self._known:  # a stage whose length is not known in advance: as far as seen
            self.totals[snap.stage] = max(snap.step, self.totals.get(snap.stage) or 0)
        self._keep(snap)

    def __iter__(self):
        while True:
            snap = self.next()
            if snap is None:
                return
            yield snap

    def step(self, k: int = 1) -> list[Snapshot]:
        """Advance k Langevin steps (the proposal first, if nothing has run yet); a stage's step 0 repeats
        the previous state, so it comes along with the step after it."""
        out = []
        if self.current is None:
            snap = self.next()
            return [] if snap is None else [snap]
        moved = 0
        while moved < k:
            snap = self.next()
            if snap is None:
                break
            out.append(snap)
            if snap.step > 0:
                moved += 1
        return out

    # ------------------------------------------------------------ what is kept
    def _keep(self, snap: Snapshot):
        self.frames.append(snap)
        self._kept_bytes += snap.nbytes
        if self._kept_bytes > self.max_bytes and len(self.frames) > 4:
            # drop every other frame, keeping the first and last one of every stage
            keep, stages = [], [f.stage for f in self.frames]
            for i, f in enumerate(self.frames):
                edge = i == 0 or i == len(self.frames) - 1 or stages[i - 1] != f.stage or stages[i + 1] != f.stage
                if edge or i % 2 == 0:
                    keep.append(f)
            self.frames = keep
            self._kept_bytes = sum(f.nbytes for f in keep)

    @property
    def stages(self) -> list[str]:
        return list(self.stage_last)

    @property
    def kept_bytes(self) -> int:
        return self._kept_bytes


@dataclass
class Sessions:
    """One player per visitor (a browser tab or an API client), the least recently used dropped first."""
    max_sessions: int = 32
    _players: OrderedDict = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: str) -> ChainPlayer | None:
        with self._lock:
            player = self._players.get(key)
            if player is not None:
                self._players.move_to_end(key)
            return player

    def put(self, key: str, player: ChainPlayer):
        with self._lock:
            old = self._players.pop(key, None)
            self._players[key] = player
            while len(self._players) > self.max_sessions:
                _, dropped = self._players.popitem(last=False)
                dropped.close()
        if old is not None and old is not player:
            old.close()

    def drop(self, key: str):
        with self._lock:
            player = self._players.pop(key, None)
        if player is not None:
            player.close()

    def __len__(self):
        return len(self._players)

    def kept_bytes(self) -> int:
        with self._lock:
            return sum(p.kept_bytes for p in self._players.values())
