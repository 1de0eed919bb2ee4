"""One model pass for the whole class: every visitor's chain advanced together, one Langevin step per round.

    scheduler = Scheduler(sampler).start()       # a thread that runs rounds while there is work
    job = scheduler.submit(player)               # a model.player.ChainPlayer: its inputs, settings and seed
    for frames in job.stream():                  # the frames computed since the last look, oldest first
        snaps = [player.take(f) for f in frames] # ... show the last one
    scheduler.cancel(job)                        # Stop: gone at the next round, the others untouched

Each round takes every running chain one step: the chains in the same stage (and, in the latent stages, with
the same observed modality, which the energy depends on) are stacked into one batch, so one forward and one
backward of the energy serve them all; step sizes and noise levels are per-sample tensors, and every chain
draws its noise from its own torch.Generator, in the order its chain alone would, so the same seed gives the
same frames whether it ran alone or in a batch (up to the last float bits of a batched convolution).
A new chain's proposal is made in the round it joins (chains that join together: one batch per stage key).
Frames go to each job's own queue: a visitor who reads less often than the rounds come gets several frames at
once and shows the last (fewer frames, no longer wait).
The energies are model.langevin's (posterior_energy, ebm_latent_energy, the EBM itself) and the checks its
check_state and check_runaway, so a chain that diverges ends alone with ChainDiverged.
"""
from __future__ import annotations

import math
import queue
from collections import deque
import threading
import time
from dataclasses import dataclass, field

import torch

from model.langevin import (ChainDiverged, Frame, fill_observed, check_runaway, check_state, ebm_latent_energy,
                            posterior_energy)

LATENT_MAX_ABS = 50.0   # the bound of latent_revision / ebm_latent_revision
DATA_BOUNDS = (0.0, 1.0)
END = object()          # the last item of a job's queue after its frames
STAGES = ("latent", "ebm_latent", "data")   # the chain's stages after its proposal, in order
GOLDEN = (5 ** 0.5 - 1) / 2
GROUNDED = 10           # rounds of a class near its size (in any stage) before a page tells its wait in seconds
STAGE_GROUNDED = 3      # ... and rounds of its own near that size for every stage ahead
FINISH_FORGET = 60.0    # seconds after its chain's end a page that never said it finished (closed) is forgotten
TURN_GRACE = 0.5        # seconds a page's finish turn is kept for it after its chain ended, before it has asked
TURN_STALE = 5.0        # seconds after which a page holding the finish turn is passed over (it never said it finished)


@dataclass(eq=False)
class Job:
    """One visitor's chain: its inputs, chain settings and generator, where it stands, and its frames' queue."""
    x_obs: torch.Tensor | None          # [n, M, 3, 28, 28] on the model's device, or None (unconditional)
    observed: torch.Tensor | None       # bool [M], or None
    n: int
    chains: object                      # model.config.Chains, the visitor's settings applied
    prior: object | None                # unconditional: the ex-post prior, or None for N(0, I)
    generator: torch.Generator
    frames: queue.Queue = field(default_factory=queue.Queue)
    stage: str = "new"                  # "new" | "latent" | "ebm_latent" | "data" | "done"
    k: int = 0                          # the step of the current stage about to be shown
    state: torch.Tensor | None = None   # z in the latent stages, x in the data stage
    keep: torch.Tensor | None = None    # the data stage's start: the observed modalities are held at it
    runaway: int = 0
    phase: float = 0.0                  # in [0, 1): where this page's frames fall in the class's frame interval
    ended: threading.Event = field(default_factory=threading.Event)   # set at the chain's end or Stop
    ended_at: float | None = None       # time.perf_counter() at the round its chain ended in (not at Stop)
    order: int = 0                      # submitted as the scheduler's order-th job: pages ending together finish
                                        # in this order
    turn_at: float | None = None        # when its page's finish turn began (Scheduler.finish_turn)
    cancelled: bool = False
    error: BaseException | None = None

    @property
    def conditioned(self) -> bool:
        return self.observed is not None

    def steps_of(self, stage: str) -> int:
        c = self.chains
        if stage == "latent":
            return c.latent.steps if self.conditioned else 0
        if stage == "ebm_latent":
            return c.ebm_latent_for(self.conditioned).steps
        return c.data.steps if stage == "data" else 0

    def chain_of(self, stage: str):
        c = self.chains
        return {"latent": c.latent, "ebm_latent": c.ebm_latent_for(self.conditioned), "data": c.data}[stage]

    def is_last(self, frame: Frame) -> bool:
        """Whether ``frame`` is this chain's last (the last step of its last stage)."""
        stages = [s for s in STAGES if self.steps_of(s) > 0]
        return bool(stages) and frame.stage == stages[-1] and frame.step == self.steps_of(stages[-1])

    def steps_left(self) -> int:
        """Rounds this chain still needs (each round: one step, or the proposal)."""
        return len(self.rounds_ahead())

    def rounds_ahead(self) -> list[str]:
        """The stage of each round this chain still needs, in order ("proposal" for its first round)."""
        if self.stage == "done":
            return []
        ahead = ["proposal"] if self.stage == "new" else [self.stage] * (self.steps_of(self.stage) + 1 - self.k)
        later = STAGES[STAGES.index(self.stage) + 1:] if self.stage in STAGES else STAGES
        return ahead + [s for s in later if self.steps_of(s) > 0 for _ in range(self.steps_of(s) + 1)]

    def stream(self, timeout: float | None = None):
        """Lists of the frames computed since the last look (at least one; blocks until there is one), until the
        chain ends; raises what ended it (ChainDiverged). ``timeout``: give up (queue.Empty) after so long idle."""
        while True:
            items = [self.frames.get(timeout=timeout)]
            while True:
                try:
                    items.append(self.frames.get_nowait())
                except queue.Empty:
                    break
            end = next((i for i, item in enumerate(items) if item is END), None)   # the chain's end, or Stop
            frames = [f for f in items[:end] if isinstance(f, Frame)]   # (frames after a Stop are not read)
            if frames:
                yield frames
            if end is not None:
                if self.error is not None:
                    raise self.error
                return


class Scheduler:
    """Advances every submitted chain one step per round (``advance``), in a thread of its own (``start``)."""

    def __init__(self, sampler):
        self.sampler = sampler
        self.jobs: list[Job] = []
        self.lock = threading.RLock()
        self.wake = threading.Condition(self.lock)
        self.clock = StageClock()                  # each stage's share of a round's time against its samples
        self.finish = FinishClock()                # the pages' work after their chains end
        self.finishing: set[Job] = set()           # chains ended whose pages have not said they finished
        self.turns = threading.Condition(self.lock)  # the pages' finish, one page at a time (finish_turn)
        self._turn: Job | None = None              # the page finishing now
        self._turn_ended: float | None = None      # when the last turn ended
        self._asking: set[Job] = set()             # pages waiting for their finish turn
        self._ending_at: float | None = None       # when the first chain ended in the round now running
        self.rounds = 0
        self.submitted = 0
        self._thread: threading.Thread | None = None
        self._closed = False

    # ------------------------------------------------------------ visitors
    def submit(self, player) -> Job:
        """A job for ``player``'s chain (a model.player.ChainPlayer, not the compare mode: its data chain from
        noise runs with the player itself), the same inputs, settings and seed; its frames feed ``player.take``."""
        if player.settings.compare:
            raise ValueError("the scheduler runs the main chain only: run compare mode with the player itself")
        s = player.settings
        job = Job(player.x_in, player.observed, s.n_samples, self.sampler.chains.replace(**player.kw), player.prior,
                  torch.Generator(player.device).manual_seed(s.seed))
        with self.wake:
            self.submitted += 1
            job.order = self.submitted
            job.phase = (self.submitted * GOLDEN) % 1.0   # spread evenly however many come: pages take turns
            self.jobs.append(job)
            self.wake.notify()
        return job

    def cancel(self, job: Job):
        """Stop ``job``: its stream ends at once (a page waiting for its next frame is woken), the chain leaves at
        the next round; the other chains go on as they were."""
        job.cancelled = True
        job.frames.put(END)
        job.ended.set()

    def wait_estimate(self, job: Job, grounded: int = 0) -> float | None:
        """Seconds until ``job`` ends: the rounds it still needs, each timed as the sum, over the stages its chains
        will then be in, of that stage's measured time for the samples it will advance (the chains now running
        that will still be in it: a class that ends together speeds up together; the data revision costs more per
        sample than the latent one). Proposals ahead are not timed (a page's estimate comes after its own). Then the
        finish turns (FinishClock) of the pages ahead of its own (finish_turn), and its own. None while a stage
        ahead has no time for its size (StageClock.seconds), or, with ``grounded``, while the class has fewer than
        that many rounds near that size in any stage (the first rounds of a class, as its pages begin to draw, say
        little of the later), or the stage fewer than STAGE_GROUNDED of its own (no ratio to another stage)."""
        with self.lock:
            others = [(j.n, j.rounds_ahead(), j.order) for j in self.jobs if not j.cancelled and j is not job]
            # the pages that finish before this one: every page still finishing, or (its chain ended) those ahead
            backlog = len(self.finishing) if job.ended_at is None else self.turn_place(job)
        mine = job.rounds_ahead()
        times: dict[tuple, float | None] = {}
        total, ends = 0.0, []   # ends[r]: the time from now to the end of round r
        for r in range(len(mine)):
            samples: dict[str, int] = {}
            for n, ahead, _ in [(job.n, mine, 0)] + others:
                if r < len(ahead) and ahead[r] != "proposal":
                    samples[ahead[r]] = samples.get(ahead[r], 0) + n
            for key in samples.items():
                if key not in times:
                    clocks = self.clock.clocks
                    few = grounded and (clocks[key[0]].count(key[1]) < min(grounded, STAGE_GROUNDED)
                                        or max(c.count(key[1]) for c in clocks.values()) < grounded)
                    times[key] = None if few else self.clock.seconds(*key)
                if times[key] is None:
                    return None
                total += times[key]
            ends.append(total)
        per_page = self.finish.per_page
        if per_page is None:
            return total
        # the pages finish one at a time (finish_turn), in the order their chains end (a round's: as submitted):
        # the pages still finishing first, then those of the chains ending before mine or with it and ahead of it
        free = backlog * per_page
        for n_rounds, _ in sorted((len(ahead), order) for _, ahead, order in others
                                      if len(ahead) < len(mine) or (len(ahead) == len(mine) and order < job.order)):
            free = max(free, ends[n_rounds - 1] if n_rounds else 0.0) + per_page
        return max(free, total) + per_page

    def turn_place(self, job: Job) -> int:
        """How many pages finish before ``job``'s, whose chain ended: the page finishing now, and those of the chains
        that ended before it or in its round and were submitted earlier (finish_turn's order)."""
        with self.lock:
            key = (job.ended_at, job.order)
            return sum(1 for j in self.finishing
                       if j is not job and (j is self._turn or (j.ended_at, j.order) < key))

    def finish_turn(self, job: Job):
        """Wait for ``job``'s page's turn to finish (its last figures and closing message): one page at a time, in
        the order the chains ended (those of one round: as submitted), so that each page's wait is its place in
        that order (wait_estimate), not the time of every page at once (thirty pages sharing the machine all
        finished near the end of the thirty). The turn ends with page_finished. A page ahead that has not asked
        within TURN_GRACE seconds of its chain's end is not waited for, nor one that holds the turn TURN_STALE
        seconds (it never said it finished). No turn for a chain stopped before its end."""
        if job.ended_at is None:
            return
        with self.turns:
            self._asking.add(job)
            while True:
                now = time.perf_counter()
                if self._turn is not None and now - self._turn.turn_at >= TURN_STALE:
                    self._turn = None
                if self._turn is None:
                    due = [j for j in self.finishing | {job} if j in self._asking or now - j.ended_at < TURN_GRACE]
                    first = min(due, key=lambda j: (j.ended_at, j.order), default=job)
                    if first is job:
                        break
                    # woken when a turn ends (page_finished), else when the page ahead's grace is over (no polling:
                    # thirty waiting pages need not wake twenty times a second each)
                    left = TURN_GRACE - (now - first.ended_at) if first not in self._asking else TURN_STALE
                else:
                    left = TURN_STALE - (now - self._turn.turn_at)
                self.turns.wait(max(left, 0.005) + 0.001)
            self._asking.discard(job)
            self._turn, job.turn_at = job, now

    def page_finished(self, job: Job, timed: bool = True):
        """``job``'s page is done: it has sent its closing message (``timed``), or it ended otherwise (Stop, an
        error, the page closed), and no page waits for it; its finish turn passes on. A timed page's turn goes on
        the FinishClock: the time from the later of its chain's end and the turn before it ending, to its own end.
        So the pauses between turns count too (thirty pages woken at their chains' end take a few tenths of a
        second to ask), and the last of N pages ending together is told N turns, as it then waits."""
        if job.ended_at is None:   # stopped before its chain ended: no estimate waits for its page
            return
        now, held = time.perf_counter(), None
        with self.turns:
            self.finishing.discard(job)
            self._asking.discard(job)
            if self._turn is job:
                self._turn, held = None, now - max(job.ended_at, self._turn_ended or job.ended_at)
                self._turn_ended = now
            for gone in [j for j in self.finishing if now - j.ended_at >= FINISH_FORGET]:   # in case one never says
                self.finishing.discard(gone)
            self.turns.notify_all()
        if timed and held is not None:
            self.finish.add(held)

    # ------------------------------------------------------------ the rounds
    def start(self) -> "Scheduler":
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="mebm-scheduler", daemon=True)
            self._thread.start()
        return self

    def close(self):
        with self.wake:
            self._closed = True
            self.wake.notify()

    def _loop(self):
        last = None   # when the previous round ended, while rounds follow each other without a pause
        while True:
            with self.wake:
                if not self.jobs:   # idle: the next class is timed by its own rounds (classes in a row on the
                    last = None     # same machine differed by a fifth in their rounds' times)
                    self.clock = StageClock()
                while not self.jobs and not self._closed:
                    self.wake.wait()
                if self._closed:
                    return
            self.advance(since=last)
            last = time.perf_counter()

    @torch.no_grad()
    def advance(self, since: float | None = None) -> int:
        """One round: every chain one step (a new one its proposal). Returns the chains that ran. Each stage's steps
        are timed on the clock apart. ``since``: when the previous round ended, if this one follows it at once (the
        scheduler's thread): the gap between them (the time the pages' threads held the CPU and the lock) counts
        in the round's time on the clock, shared by its stages as their steps' times, since the chains wait for
        it too."""
        t0 = time.perf_counter()
        self._ending_at = None   # the time of this round's first chain end: the chains ending in it share it
        with self.lock:
            for job in [j for j in self.jobs if j.cancelled]:
                self._finish(job)
            jobs = list(self.jobs)
        if not jobs:
            return 0
        groups: dict[tuple, list[Job]] = {}
        arrivals: dict[tuple, list[Job]] = {}
        for job in jobs:
            (arrivals if job.stage == "new" else groups).setdefault(self._group_key(job), []).append(job)
        for group in arrivals.values():   # a class that presses Run together: one batched proposal per group
            self._guard(group, self._propose, group)
        spent: dict[str, list] = {}   # stage -> [samples, seconds] of this round's steps
        for group in groups.values():
            stage, t1 = group[0].stage, time.perf_counter()
            self._step(group)
            spent.setdefault(stage, [0, 0.0])
            spent[stage][0] += sum(j.n for j in group)
            spent[stage][1] += time.perf_counter() - t1
        if spent:   # the clock times the steps (a burst of new visitors' proposals is no round of the chain)
            gap = 0.0 if since is None else max(0.0, t0 - since)
            work = sum(seconds for _, seconds in spent.values())
            for stage, (samples, seconds) in spent.items():   # the gap shared as the stages shared the round
                self.clock.add(stage, samples, seconds + gap * (seconds / work if work > 0 else 1 / len(spent)))
        self.rounds += 1
        return len(jobs)

    def _guard(self, group: list[Job], fn, *args):
        try:
            fn(*args)
        except Exception as e:   # anything: these chains end with it, the others go on
            for job in group:
                job.error = e
                self._finish(job)

    def _finish(self, job: Job):
        """``job`` leaves the rounds and its page is woken. A chain that ended (not Stop) is stamped first and its
        page counted as finishing, beside those still finishing (timed together: page_finished): a page woken here
        may send its closing message and say so before this round is over."""
        with self.lock:
            if job in self.jobs:
                self.jobs.remove(job)
            if not job.cancelled and job.ended_at is None:
                if self._ending_at is None:
                    self._ending_at = time.perf_counter()
                job.ended_at = self._ending_at
                self.finishing.add(job)
        job.stage = "done"
        job.frames.put(END)
        job.ended.set()

    @staticmethod
    def _group_key(job: Job) -> tuple:
        if job.stage == "data":   # the EBM's energy does not depend on what is observed (it is clamped)
            return ("data",)
        mask = None if job.observed is None else tuple(job.observed.tolist())
        return (job.stage, mask, id(job.prior))

    # ------------------------------------------------------------ one chain's proposal, a group's step
    def _model(self):
        m = self.sampler.model
        return m.generator, m.energy

    def _decoded(self, z, x_obs, observed):
        G, _ = self._model()
        return fill_observed(G(z), x_obs, observed)

    def _propose(self, group: list[Job]):
        """The stage "proposal" of model.langevin.conditional_sampling for chains that joined together (one stage
        key: the same observed modality and prior): the inference model, generator and EBM run once for all of
        them, each chain's z drawn with its own generator, in the order its chain alone draws."""
        G, E = self._model()
        model, first, sizes = self.sampler.model, group[0], [j.n for j in group]
        x_obs = torch.cat([j.x_obs for j in group]) if first.conditioned else None
        if first.conditioned:
            mu, logvar, _ = model.inference.experts_params(x_obs, first.observed)
            z = torch.cat([model.inference.draw(mu[sl], logvar[sl], j.generator)
                           for j, sl in zip(group, _split(sizes))])
        else:
            dev = next(G.parameters()).device
            z = torch.cat([torch.randn(j.n, model.config.latent_dim, generator=j.generator, device=dev)
                           if j.prior is None else j.prior.sample(j.n, j.generator).to(dev) for j in group])
        x = self._decoded(z, x_obs, first.observed)
        if first.conditioned:
            logp = G.log_posterior(z, x_obs, first.observed)
        else:
            logp = -0.5 * (z ** 2).sum(1) if first.prior is None else -first.prior.energy(z)
        energy = E(x)
        for job, sl in zip(group, _split(sizes)):
            job.frames.put(Frame("proposal", 0, x[sl].cpu(), energy[sl].cpu(), logp[sl].cpu(), z=z[sl].cpu()))
            job.state = z[sl]
            self._next_stage(job, "new")

    def _next_stage(self, job: Job, after: str):
        order = ("new", "latent", "ebm_latent", "data")
        for stage in order[order.index(after) + 1:]:
            if job.steps_of(stage) > 0:
                if stage == "data":   # decode z; the observed modalities are held at these values
                    job.state = job.keep = self._decoded(job.state, job.x_obs, job.observed)
                job.stage, job.k, job.runaway = stage, 0, 0
                return
        self._finish(job)

    def _step(self, group: list[Job]):
        """One Langevin step of every chain in ``group`` (one stage, one observed mask): one batched forward and
        backward; each chain's frame to its queue, its noise from its own generator."""
        G, E = self._model()
        stage = group[0].stage
        sizes = [j.n for j in group]
        x = torch.cat([j.state for j in group])
        if stage == "latent":
            x_obs = torch.cat([j.x_obs for j in group])
            energy_fn = posterior_energy(G, x_obs, group[0].observed)
        elif stage == "ebm_latent":
            x_obs = torch.cat([j.x_obs for j in group]) if group[0].conditioned else None
            energy_fn = ebm_latent_energy(G, E, x_obs, group[0].observed, group[0].prior)
        else:
            energy_fn = E
        frozen = None
        if stage == "data":
            masks = [(j.observed if j.conditioned else torch.zeros(x.shape[1], dtype=torch.bool, device=x.device))
                     .view(1, -1, 1, 1, 1).expand(j.n, -1, 1, 1, 1) for j in group]
            frozen = torch.cat(masks)
        with torch.enable_grad():
            x.requires_grad_(True)
            energy = energy_fn(x)
            grad = torch.autograd.grad(energy.sum(), x)[0]
        x, energy = x.detach(), energy.detach()
        if frozen is not None:
            grad = grad.masked_fill(frozen, 0.0)
        shown = None
        if stage != "data":   # what the page shows of a latent state: its decoding, and the EBM's energy of it
            shown = fill_observed(G(x), x_obs, group[0].observed) if stage == "latent" or group[0].conditioned \
                else G(x)
            shown_energy = E(shown)
        max_abs = None if stage == "data" else LATENT_MAX_ABS
        updates = []
        for job, xs, es, gs, sl, fr in zip(group, x.split(sizes), energy.split(sizes), grad.split(sizes),
                                           _split(sizes), (frozen.split(sizes) if frozen is not None else
                                                           [None] * len(group))):
            gs = gs if job.k < job.steps_of(stage) else torch.zeros_like(gs)
            try:   # a chain that diverges ends alone (the energies are per sample: the others are sound)
                check_state(stage, job.k, xs, es, gs, max_abs)
            except ChainDiverged as e:
                job.error = e
                self._finish(job)
                continue
            if stage == "latent":
                frame = Frame("latent", job.k, shown[sl].cpu(), shown_energy[sl].cpu(), (-es).cpu(), z=xs.cpu())
            elif stage == "ebm_latent":
                e = shown_energy[sl]
                frame = Frame("ebm_latent", job.k, shown[sl].cpu(), e.cpu(), (e - es).cpu(), z=xs.cpu())
            else:
                frame = Frame("data", job.k, xs.cpu(), es.cpu(), None)
            updates.append((job, xs, gs, fr, frame))
        for job, xs, gs, fr, frame in updates:   # every check passed: hand out the frames, take the steps
            job.frames.put(frame)
            if job.k == job.steps_of(stage):
                job.state = xs
                self._next_stage(job, stage)
                continue
            try:
                job.state = self._update(job, stage, xs, gs, fr)
            except ChainDiverged as e:
                job.error = e
                self._finish(job)
                continue
            job.k += 1

    @staticmethod
    def _update(job: Job, stage: str, x, grad, frozen):
        """model.langevin.langevin's update for one chain: x - (s^2 / 2) grad + n xi, clamped in the data stage."""
        chain = job.chain_of(stage)
        x = x - 0.5 * chain.step_size ** 2 * grad
        if chain.noise > 0:
            x = x + chain.noise * torch.randn(x.shape, generator=job.generator, device=x.device, dtype=x.dtype)
        if stage == "data":
            if job.conditioned:
                x = torch.where(frozen, job.keep, x)
                free = (~frozen).expand_as(x)
            else:
                free = None
            job.runaway = check_runaway(stage, job.k + 1, x, DATA_BOUNDS, free, job.runaway)
            x = x.clamp(*DATA_BOUNDS)
        return x


class RoundClock:
    """A round's wall time for a given number of samples, from the rounds measured lately (the model's share of
    the machine under the pages' load, as it is now): the weighted mean of their times, each scaled to the
    samples asked for, over the rounds of a similar size (within ``reach`` times); the recent ones weigh most
    (each earlier round ``decay`` times less). Rounds of a very different size are not extrapolated: a round of
    3 samples says little of one of 90."""

    def __init__(self, decay: float = 0.98, reach: float = 1.5, keep: int = 100):
        self.decay, self.reach = decay, reach
        self.rounds: deque = deque(maxlen=keep)   # (samples, seconds), the latest last

    def add(self, samples: int, seconds: float):
        self.rounds.append((float(samples), float(seconds)))

    def seconds(self, samples: float) -> float | None:
        """The time of a round of ``samples``; None when no round of a similar size was measured lately (a
        smaller round than any measured is timed from the smallest of them, unscaled)."""
        rounds = list(self.rounds)   # a copy: the scheduler's thread adds rounds while the pages ask
        if not rounds:
            return None
        found = self.near(samples, rounds)
        if found is not None:
            return found
        smallest = min(x for x, _ in rounds)
        return None if samples > smallest else self.near(smallest, rounds)

    def near(self, samples: float, rounds=None) -> float | None:
        """The time of a round of ``samples`` from the rounds within ``reach`` of that size only; None if none."""
        rounds = list(self.rounds) if rounds is None else rounds
        near = [(w, x, y) for w, (x, y) in self._weighted(rounds) if samples / self.reach <= x <= samples * self.reach]
        if not near:
            return None
        return sum(w * y * samples / x for w, x, y in near) / sum(w for w, _, _ in near)

    def count(self, samples: float) -> int:
        """How many of the rounds kept are within ``reach`` of ``samples``."""
        return sum(samples / self.reach <= x <= samples * self.reach for x, _ in list(self.rounds))

    def sizes(self) -> set[float]:
        return {x for x, _ in list(self.rounds)}

    def _weighted(self, rounds):
        n = len(rounds)
        return [(self.decay ** (n - 1 - i), r) for i, r in enumerate(rounds)]


class StageClock:
    """A RoundClock per stage (latent, ebm_latent, data): the time of a round's steps in that stage for a given
    number of samples. Their costs per sample differ (the generator's forward and backward in the latent
    revision, the EBM's in the data revision), so a round ahead is timed by the stages its chains will be in."""

    def __init__(self, **kw):
        self.clocks = {stage: RoundClock(**kw) for stage in STAGES}

    def add(self, stage: str, samples: int, seconds: float):
        self.clocks[stage].add(samples, seconds)

    def seconds(self, stage: str, samples: float) -> float | None:
        """The time of ``samples`` chains' step in ``stage``: its own rounds of a similar size (RoundClock), else
        (a stage this class has not reached yet) another stage's time for this size, times the ratio of the two
        stages' times at a size where both were measured (the nearest one: of the class before, or of one
        visitor's run); None when neither stage measured gives that."""
        own = self.clocks[stage].seconds(samples)
        if own is not None:
            return own
        for other in STAGES:
            there = None if other == stage else self.clocks[other].seconds(samples)
            ratio = None if there is None else self.ratio(stage, other, samples)
            if ratio is not None:
                return there * ratio
        return None

    def ratio(self, stage: str, other: str, near: float) -> float | None:
        """The time of a step in ``stage`` against one in ``other``, for the same samples: at the size nearest
        ``near`` where both were measured (each within its RoundClock's reach of it); None if at none."""
        for size in sorted(self.clocks[stage].sizes(), key=lambda m: abs(math.log(m / near))):
            a, b = self.clocks[stage].near(size), self.clocks[other].near(size)
            if a is not None and b:
                return a / b
        return None


class FinishClock:
    """What a page does after its chain ends (its last figures, the closing message), in its finish turn
    (Scheduler.finish_turn: one page at a time): ``per_page``, the seconds of a turn, from the turns timed, the
    latest weighing most (each turn makes the time before it weigh ``decay`` times less: about the last class's
    turns; the last turns of a class, when no chain runs beside them, are the quickest); None before the first."""

    def __init__(self, decay: float = 0.97):
        self.decay, self.per_page = decay, None

    def add(self, seconds: float):
        """One page's turn took ``seconds``."""
        self.per_page = seconds if self.per_page is None else self.decay * self.per_page + (1 - self.decay) * seconds


def _split(sizes):
    start = 0
    for n in sizes:
        yield slice(start, start + n)
        start += n


def wait_text(job: Job, scheduler: Scheduler | None, steps: int | None = None, seconds: bool = True) -> str:
    """What a page says of the work ahead: ' · N steps to go, about T s'. ``steps``: the steps after the frame the
    page shows (default: the chain's own count); the seconds (when ``seconds``) are the scheduler's estimate of
    the time until the run ends (the chain's rounds and the page's finish), left out until the class has GROUNDED
    rounds measured near its size and every stage ahead STAGE_GROUNDED of its own."""
    text = f" · {job.steps_left() if steps is None else steps} steps to go"
    seconds = None if scheduler is None or not seconds else scheduler.wait_estimate(job, grounded=GROUNDED)
    return text if seconds is None else text + f", about {seconds_text(seconds)} s"


def finish_text(job: Job, scheduler: Scheduler, seconds: bool = True) -> str | None:
    """What a page says while it waits for its finish turn (its chain has ended): how many pages send their
    results before it, and (when ``seconds``) the scheduler's estimate of the time until its own are shown; None
    when no page is ahead of it (a visitor alone: nothing to wait for)."""
    ahead = scheduler.turn_place(job)
    if not ahead:
        return None
    text = f"the chain is done; {ahead} other page{' sends its' if ahead == 1 else 's send their'} results first"
    seconds = scheduler.wait_estimate(job) if seconds else None
    return text if seconds is None else text + f", about {seconds_text(seconds)} s"


def seconds_text(seconds: float) -> str:
    """A wait as the page says it: to the half second below 10 s (whole seconds at 2-3 s were off by up to a fifth
    for rounding alone), to the second above; at least 0.5."""
    if seconds < 9.75:
        return f"{max(0.5, round(seconds * 2) / 2):g}"
    return f"{round(seconds)}"

