"""demo.scheduler: every visitor's chain advanced together, one batched step per round, without Gradio.

Frames are compared as the page shows them: the uint8 images of ChainPlayer snapshots. A batched convolution may
differ from a batch of one in the last float bits, so a batched frame may differ from the chain run alone by at
most one grey level, in at most 0.1 % of its pixels; every frame's stage and step are the same."""
import threading
import time

import numpy as np
import pytest
import torch

from demo.scheduler import (GROUNDED, STAGE_GROUNDED, FinishClock, RoundClock, Scheduler, StageClock, finish_text,
                            seconds_text, wait_text)
from model.config import ModelConfig
from model.langevin import ChainDiverged
from model.networks import MultimodalEBMVAE, observed_mask
from model.player import ChainPlayer, ChainSettings
from model.prior import GaussianMixture
from model.sampler import Sampler


@pytest.fixture(scope="module")
def sampler():
    torch.manual_seed(0)
    model = MultimodalEBMVAE(ModelConfig(latent_dim=4, width=8, ebm_width=8, ebm_features=16))
    prior = GaussianMixture(torch.tensor([0.5, 0.5]), torch.stack([torch.zeros(4), torch.ones(4)]),
                            torch.eye(4).expand(2, 4, 4).clone())
    return Sampler(model, prior)


X = torch.rand(1, 5, 3, 28, 28, generator=torch.Generator().manual_seed(0))
VISITORS = [   # (modality or None, settings): several stages, masks, priors and step sizes at once
    (1, dict(seed=3)),
    (1, dict(seed=4, n_samples=3, latent_step_size=0.05, data_step_size=0.5)),
    (3, dict(seed=5, noise=False)),
    (None, dict(seed=6)),
    (None, dict(seed=7, ex_post_prior=False, n_samples=1)),
]


def make_player(sampler, modality, **kw):
    s = ChainSettings(**{"n_samples": 2, "latent_steps": 3, "data_steps": 4, **kw})
    if modality is None:
        return ChainPlayer(sampler, None, None, s)
    return ChainPlayer(sampler, X, observed_mask([modality], 5), s)


def solo(sampler, modality, **kw):
    return list(make_player(sampler, modality, **kw))


def drain(job, player):
    return [player.take(f) for frames in job.stream(timeout=5) for f in frames]


def assert_same_frames(batched, alone):
    assert [(s.index, s.stage, s.step) for s in batched] == [(s.index, s.stage, s.step) for s in alone]
    for a, b in zip(batched, alone):
        diff = np.abs(a.x.astype(int) - b.x.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3, (a.stage, a.step, diff.max(), (diff > 0).mean())
        assert np.allclose(a.energy, b.energy, rtol=1e-4, atol=1e-4)
        assert (a.z is None) == (b.z is None) == (a.stage == "data")   # the latent state, for the latent view
        assert a.z is None or np.allclose(a.z, b.z, rtol=1e-4, atol=1e-4)


def run_all(scheduler, limit=200):
    for _ in range(limit):
        if not scheduler.advance():
            return
    raise AssertionError("the scheduler did not finish")


def test_batched_frames_equal_the_chains_run_alone(sampler):
    """Five visitors (two modalities, unconditional with and without the ex-post prior, other step sizes, noise
    off), two of them joining three rounds later: every visitor gets the frames of its chain run alone."""
    alone = [solo(sampler, m, **kw) for m, kw in VISITORS]
    assert {s.stage for s in alone[0]} == {"proposal", "latent", "ebm_latent", "data"}
    scheduler = Scheduler(sampler)
    players = [make_player(sampler, m, **kw) for m, kw in VISITORS]
    jobs = [scheduler.submit(p) for p in players[:3]]
    for _ in range(3):
        scheduler.advance()
    jobs += [scheduler.submit(p) for p in players[3:]]
    run_all(scheduler)
    for job, player, expected in zip(jobs, players, alone):
        assert_same_frames(drain(job, player), expected)
        assert player.current.index == expected[-1].index


def test_one_batched_pass_per_stage_and_mask(sampler, monkeypatch):
    """Chains in the same stage share one energy evaluation: ten visitors in one stage cost one forward of the
    EBM per round (plus one for the frames), not ten; ten visitors who press Run together cost one pass of the
    inference model and the EBM for their proposals."""
    calls, inferred = [], []
    energy, inference = sampler.model.energy, sampler.model.inference
    monkeypatch.setattr(energy, "forward", lambda x, f=energy.forward: calls.append(len(x)) or f(x))
    monkeypatch.setattr(inference, "experts_params",
                        lambda x, *a, f=inference.experts_params, **k: inferred.append(len(x)) or f(x, *a, **k))
    scheduler = Scheduler(sampler)
    for seed in range(10):
        scheduler.submit(make_player(sampler, 1, seed=seed))
    scheduler.advance()            # the ten proposals together
    assert inferred == [20] and calls == [20]
    calls.clear()
    scheduler.advance()            # latent step 0 of all ten together
    assert calls == [20]           # the latent energy needs no EBM; the frames' EBM energy: one batch of 10 x 2


def test_stop_ends_one_chain_at_the_next_round_and_leaves_the_others(sampler):
    alone = [solo(sampler, m, **kw) for m, kw in VISITORS[:3]]
    scheduler = Scheduler(sampler)
    players = [make_player(sampler, m, **kw) for m, kw in VISITORS[:3]]
    jobs = [scheduler.submit(p) for p in players]
    for _ in range(4):
        scheduler.advance()
    scheduler.cancel(jobs[1])
    scheduler.advance()
    assert jobs[1] not in scheduler.jobs
    stopped = drain(jobs[1], players[1])          # ends without error, with the frames made before Stop
    assert len(stopped) == 4 and stopped[-1].index == 3
    run_all(scheduler)
    for i in (0, 2):
        assert_same_frames(drain(jobs[i], players[i]), alone[i])


def test_stop_wakes_a_page_waiting_for_its_next_frame(sampler):
    """A page blocked on its stream while no round runs (the class's round, or its turn, still to come): Stop ends
    that stream at once, with no frame; the chain leaves at the next round."""
    scheduler = Scheduler(sampler)
    job = scheduler.submit(make_player(sampler, 1, seed=3))
    looks, ended = [], threading.Event()

    def page():
        looks.extend(job.stream(timeout=60))
        ended.set()

    reader = threading.Thread(target=page, daemon=True)
    reader.start()
    reader.join(0.2)
    assert not ended.is_set()      # waiting: no round has run
    scheduler.cancel(job)
    reader.join(60)
    assert ended.is_set() and looks == []
    scheduler.advance()
    assert job not in scheduler.jobs and job.stage == "done"


def test_a_diverging_chain_ends_alone_with_its_message(sampler):
    scheduler = Scheduler(sampler)
    bad_player, good_player = make_player(sampler, 1, seed=1, latent_step_size=10.0), make_player(sampler, 1, seed=3)
    bad, good = scheduler.submit(bad_player), scheduler.submit(good_player)
    run_all(scheduler)
    with pytest.raises(ChainDiverged, match="latent chain diverged"):
        drain(bad, bad_player)
    with pytest.raises(ChainDiverged, match="latent chain diverged"):
        solo(sampler, 1, seed=1, latent_step_size=10.0)
    assert_same_frames(drain(good, good_player), solo(sampler, 1, seed=3))


def test_a_slow_reader_gets_fewer_frames_not_a_longer_wait(sampler):
    """Frames made while a visitor's page was busy arrive together: the page shows the latest and is up to date."""
    scheduler = Scheduler(sampler)
    job = scheduler.submit(make_player(sampler, 1, seed=3))
    for _ in range(5):
        scheduler.advance()
    looks = job.stream(timeout=5)
    first = next(looks)
    assert [(f.stage, f.step) for f in first] == [("proposal", 0), ("latent", 0), ("latent", 1), ("latent", 2),
                                                   ("latent", 3)]
    scheduler.advance()
    assert [(f.stage, f.step) for f in next(looks)] == [("ebm_latent", 0)]


def test_rounds_left_count_the_rounds_a_chain_needs(sampler):
    """The wait estimate's count of work ahead is exact: a chain needs as many rounds as steps_left said."""
    scheduler = Scheduler(sampler)
    for m, kw in VISITORS:
        job = scheduler.submit(make_player(sampler, m, **kw))
        left, rounds = job.steps_left(), 0
        while scheduler.advance():
            rounds += 1
            assert job.steps_left() == left - rounds
        assert rounds == left and scheduler.wait_estimate(job) == 0


def test_the_thread_streams_every_visitor(sampler):
    alone = [solo(sampler, m, **kw) for m, kw in VISITORS[:2]]
    scheduler = Scheduler(sampler).start()
    try:
        players = [make_player(sampler, m, **kw) for m, kw in VISITORS[:2]]
        jobs = [scheduler.submit(p) for p in players]
        for job, player, expected in zip(jobs, players, alone):
            assert_same_frames(drain(job, player), expected)
    finally:
        scheduler.close()


def test_compare_mode_is_left_to_the_player(sampler):
    with pytest.raises(ValueError, match="compare"):
        Scheduler(sampler).submit(make_player(sampler, 1, compare=True))


def test_round_clock_times_rounds_of_a_similar_size_only():
    """The clock scales the recent rounds' times to the samples asked for, and will not extrapolate from rounds
    of a very different size (3 samples say little of 90); recent rounds weigh most."""
    clock = RoundClock(decay=0.5)
    assert clock.seconds(3) is None
    clock.add(3, 0.03)
    assert clock.seconds(90) is None
    assert clock.seconds(3) == pytest.approx(0.03) and clock.seconds(1) == pytest.approx(0.03)
    clock.add(90, 0.9)
    clock.add(90, 1.8)
    assert clock.seconds(90) == pytest.approx((0.5 * 0.9 + 1.8) / 1.5)
    assert clock.seconds(60) == pytest.approx((0.5 * 0.9 + 1.8) / 1.5 * 60 / 90)


def test_rounds_ahead_are_the_stages_of_the_frames_to_come(sampler):
    """A chain's rounds ahead, by stage: exactly the stages of the frames it then makes, one a round."""
    scheduler = Scheduler(sampler)
    for m, kw in VISITORS:
        player = make_player(sampler, m, **kw)
        job = scheduler.submit(player)
        ahead = job.rounds_ahead()
        run_all(scheduler)
        stages = [f.stage for f in drain(job, player)]
        assert ahead == stages and ahead[0] == "proposal" and len(set(ahead)) >= 3


def test_stage_clock_times_a_stage_by_its_own_rounds_else_by_its_ratio_to_another():
    """Each stage has its own time per sample; a stage not measured at this size is timed from a stage that was,
    by the two stages' ratio where both were measured; with neither, no time."""
    clock = StageClock(decay=1.0)
    assert clock.seconds("data", 90) is None
    clock.add("latent", 90, 0.9)             # the class's latent rounds: 10 ms a sample
    assert clock.seconds("latent", 60) == pytest.approx(0.6) and clock.seconds("data", 90) is None
    clock.add("latent", 6, 0.06)             # one visitor's run before the class: the data revision cost 3x
    clock.add("data", 6, 0.18)
    assert clock.ratio("data", "latent", 90) == pytest.approx(3.0)
    assert clock.seconds("data", 90) == pytest.approx(2.7)
    assert clock.seconds("ebm_latent", 90) is None   # never measured: no ratio
    clock.add("data", 90, 1.8)               # the class reached its data revision: its own rounds count
    assert clock.seconds("data", 90) == pytest.approx(1.8)


def test_wait_estimate_times_each_round_ahead_by_the_stages_of_the_chains_still_in_it(sampler):
    """The page's estimate: every round the chain still needs, timed per stage for the samples of the chains that
    will be in that stage then (a short chain leaves, the rounds after it are smaller); none while a stage ahead
    has no time."""
    scheduler = Scheduler(sampler)
    long = scheduler.submit(make_player(sampler, 1, seed=3, n_samples=2))
    short = scheduler.submit(make_player(sampler, 1, seed=4, n_samples=2, latent_steps=0, data_steps=1))
    assert scheduler.wait_estimate(long) is None
    scheduler.advance()   # the proposals (not timed)
    ebm = long.steps_of("ebm_latent") + 1
    assert long.rounds_ahead() == ["latent"] * 4 + ["ebm_latent"] * ebm + ["data"] * 5
    assert short.rounds_ahead() == ["ebm_latent"] * ebm + ["data"] * 2
    scheduler.clock = StageClock(decay=1.0)
    scheduler.clock.add("latent", 2, 0.2)       # 0.1 s a sample
    scheduler.clock.add("ebm_latent", 2, 0.4)   # 0.2 s a sample
    scheduler.clock.add("ebm_latent", 4, 0.8)
    assert scheduler.wait_estimate(long) is None   # the data revision: not measured
    scheduler.clock.add("data", 2, 0.6)         # 0.3 s a sample
    # long's latent rounds beside short's EBM latent ones; then both in the EBM latent revision (4 samples) until
    # short's data rounds begin, beside long's last EBM latent rounds; then long alone
    expected = 4 * (0.2 + 0.4) + (ebm - 4) * 0.8 + 2 * (0.4 + 0.6) + 2 * 0.4 + 5 * 0.6
    assert scheduler.wait_estimate(long) == pytest.approx(expected)
    assert scheduler.wait_estimate(short) == pytest.approx(4 * (0.4 + 0.2) + (ebm - 4) * 0.8 + 2 * (0.6 + 0.4))
    steps = f" · {long.steps_left()} steps to go"
    assert wait_text(long, scheduler) == steps   # one round per stage: too few to tell seconds (GROUNDED)
    assert scheduler.wait_estimate(long, grounded=2) is None
    for stage, samples, seconds in [("latent", 2, 0.2), ("ebm_latent", 2, 0.4), ("ebm_latent", 4, 0.8),
                                    ("data", 2, 0.6)] * (GROUNDED - 1):
        scheduler.clock.add(stage, samples, seconds)
    assert scheduler.wait_estimate(long, grounded=GROUNDED) == pytest.approx(expected)
    assert wait_text(long, scheduler) == steps + f", about {seconds_text(expected)} s"
    assert wait_text(long, scheduler, seconds=False) == steps
    assert wait_text(long, scheduler, steps=99) == f" · 99 steps to go, about {seconds_text(expected)} s"   # the page's
    # the pages' finish: measured per page from pages that ended together; the chains that end in long's round
    scheduler.finish.add(0.5)   # a page's finish turn took 0.5 s
    assert scheduler.wait_estimate(long) == pytest.approx(expected + 0.5)   # short ends earlier: long ends alone
    twins = Scheduler(sampler)
    a, b = (twins.submit(make_player(sampler, 1, seed=s, n_samples=2)) for s in (5, 6))
    twins.advance()
    twins.clock = scheduler.clock
    alone = twins.wait_estimate(a)
    twins.finish.add(0.5)
    # a and b end in the same round: their pages finish one at a time, a (submitted first) before b
    assert twins.wait_estimate(a) == pytest.approx(alone + 0.5)
    assert twins.wait_estimate(b) == pytest.approx(alone + 2 * 0.5)


def test_a_stage_the_class_reaches_late_is_timed_after_a_few_rounds_of_its_own(sampler):
    """The seconds wait for GROUNDED rounds of the class near its size (its first rounds, before its pages draw,
    are faster than the later ones), and for STAGE_GROUNDED rounds of every stage ahead: a class that reaches the
    data revision two thirds into its run is told its wait after a few data rounds, not ten."""
    scheduler = Scheduler(sampler)
    job = scheduler.submit(make_player(sampler, 1, seed=3, n_samples=2))
    scheduler.advance()
    scheduler.clock = StageClock(decay=1.0)
    for stage, seconds in (("latent", 0.2), ("ebm_latent", 0.4), ("data", 0.6)):
        for _ in range(STAGE_GROUNDED):
            scheduler.clock.add(stage, 2, seconds)
    assert scheduler.wait_estimate(job) is not None
    assert scheduler.wait_estimate(job, grounded=GROUNDED) is None   # every stage measured, the class too young
    scheduler.clock = StageClock(decay=1.0)
    for _ in range(GROUNDED):
        scheduler.clock.add("latent", 2, 0.2)
        scheduler.clock.add("ebm_latent", 2, 0.4)
    for _ in range(STAGE_GROUNDED):
        assert scheduler.wait_estimate(job, grounded=GROUNDED) is None   # the data revision: too few of its own
        scheduler.clock.add("data", 2, 0.6)
    assert scheduler.wait_estimate(job, grounded=GROUNDED) == pytest.approx(scheduler.wait_estimate(job))


def test_an_idle_scheduler_times_the_next_class_by_its_own_rounds(sampler):
    """Classes in a row differ in their rounds' times: when the scheduler has no chain left, its clock starts
    anew (the pages' finish, measured per page, is kept)."""
    scheduler = Scheduler(sampler).start()
    try:
        def measured():
            return any(c.rounds for c in scheduler.clock.clocks.values())

        def wait_for(condition):
            deadline = time.monotonic() + 20
            while not condition() and time.monotonic() < deadline:
                time.sleep(0.01)
            return condition()

        job = scheduler.submit(make_player(sampler, 1, seed=1, data_steps=100000))
        assert wait_for(measured)   # its rounds are timed while it runs
        scheduler.cancel(job)
        scheduler.finish.add(0.2)
        assert wait_for(lambda: not measured())
        assert scheduler.finish.per_page == pytest.approx(0.2)
    finally:
        scheduler.close()


def test_pages_still_finishing_count_in_an_estimate_until_they_say_they_finished(sampler):
    scheduler = Scheduler(sampler)
    done = scheduler.submit(make_player(sampler, 1, seed=1, n_samples=1, latent_steps=0, data_steps=0))
    while done.stage != "done":
        scheduler.advance()
    assert scheduler.finishing == {done} and done.ended_at is not None
    later = scheduler.submit(make_player(sampler, 1, seed=2, n_samples=1))
    scheduler.advance()
    scheduler.clock = StageClock(decay=1.0)
    for stage in ("latent", "ebm_latent", "data"):
        scheduler.clock.add(stage, 1, 0.01)
    scheduler.finish.add(100.0)   # 100 s a page: the page still finishing outlasts later's chain
    with_it = scheduler.wait_estimate(later)
    scheduler.finishing.clear()
    rounds = scheduler.wait_estimate(later) - 100.0   # later's own rounds, then its own page's finish
    # the page still finishing holds the machine for its 100 s: later's page finishes after it
    assert with_it == pytest.approx(200.0) and 0 < rounds < 1
    scheduler.finishing.add(done)
    scheduler.finish_turn(done)      # its turn at once (no page ahead of it)
    scheduler.page_finished(done)    # its closing message sent: timed, and no longer counted
    assert not scheduler.finishing and scheduler.finish.per_page < 100.0


def test_pages_finish_one_at_a_time_in_the_order_their_chains_ended_each_turn_timed(sampler):
    """The pages of chains that ended finish one at a time: in the order the chains ended, those of one round as
    they were submitted, whatever order the pages ask in; the time each holds its turn goes on the FinishClock."""
    import threading

    scheduler = Scheduler(sampler)
    jobs = [scheduler.submit(make_player(sampler, 1, seed=s, n_samples=1, latent_steps=0, data_steps=d))
            for s, d in ((1, 1), (2, 1), (3, 0))]
    while any(j.stage != "done" for j in jobs):
        scheduler.advance()
    assert scheduler.finishing == set(jobs) and jobs[2].ended_at < jobs[0].ended_at == jobs[1].ended_at
    turns, holding = [], []

    def page(job):
        scheduler.finish_turn(job)
        holding.append(job)
        turns.append((job, len(holding)))   # how many pages held the turn at once
        time.sleep(0.1)
        holding.remove(job)
        scheduler.page_finished(job)

    pages = [threading.Thread(target=page, args=(j,)) for j in reversed(jobs)]   # the last submitted asks first
    for t in pages:
        t.start()
        time.sleep(0.02)
    for t in pages:
        t.join(30)
    assert [j for j, _ in turns] == [jobs[2], jobs[0], jobs[1]] and all(n == 1 for _, n in turns)
    assert not scheduler.finishing and 0.1 <= scheduler.finish.per_page < 0.5


def test_a_wait_is_told_to_the_half_second_below_ten_seconds():
    assert [seconds_text(s) for s in (0.1, 0.74, 0.76, 2.24, 2.26, 9.7, 9.8, 10.4, 61.6)] == \
        ["0.5", "0.5", "1", "2", "2.5", "9.5", "10", "10", "62"]


def test_a_page_whose_chain_ended_is_told_its_place_and_its_wait(sampler):
    """A page whose chain has ended waits for the pages ahead of it in the finish order: it is told how many, and
    its wait is one turn for each of them and one for its own; a page with none ahead says nothing."""
    scheduler = Scheduler(sampler)
    jobs = [scheduler.submit(make_player(sampler, 1, seed=s, n_samples=1, latent_steps=0, data_steps=d))
            for s, d in ((1, 1), (2, 1), (3, 0))]
    while any(j.stage != "done" for j in jobs):
        scheduler.advance()
    order = [jobs[2], jobs[0], jobs[1]]   # the chain that ended first, then those of one round as submitted
    assert [scheduler.turn_place(j) for j in order] == [0, 1, 2]
    assert scheduler.wait_estimate(jobs[1]) == 0.0   # no turn timed yet: its rounds only (none left)
    scheduler.finish.add(0.4)
    assert [scheduler.wait_estimate(j) for j in order] == pytest.approx([0.4, 0.8, 1.2])
    assert finish_text(jobs[2], scheduler) is None
    assert finish_text(jobs[0], scheduler) == "the chain is done; 1 other page sends its results first, about 1 s"
    assert finish_text(jobs[1], scheduler, seconds=False) == "the chain is done; 2 other pages send their results first"
    scheduler.finish_turn(jobs[2])   # the first holds the turn: still ahead of the others
    assert [scheduler.turn_place(j) for j in order[1:]] == [1, 2]
    scheduler.page_finished(jobs[2])
    assert [scheduler.turn_place(j) for j in order[1:]] == [0, 1]


def test_a_page_waiting_for_its_turn_is_woken_by_the_turn_before_not_by_polling(sampler, monkeypatch):
    """A page waits for the turn ahead of it without waking every few milliseconds (thirty pages doing so slowed
    the turns they waited for): it wakes when the page ahead says it finished, and takes its turn at once."""
    import threading

    scheduler = Scheduler(sampler)
    jobs = [scheduler.submit(make_player(sampler, 1, seed=s, n_samples=1, latent_steps=0, data_steps=0))
            for s in (1, 2)]
    while any(j.stage != "done" for j in jobs):
        scheduler.advance()
    scheduler.finish_turn(jobs[0])
    waits, wait = [], scheduler.turns.wait
    monkeypatch.setattr(scheduler.turns, "wait", lambda timeout=None: waits.append(timeout) or wait(timeout))
    second = threading.Thread(target=scheduler.finish_turn, args=(jobs[1],))
    second.start()
    time.sleep(0.6)   # the first page holds its turn for 0.6 s
    t0 = time.perf_counter()
    scheduler.page_finished(jobs[0])
    second.join(10)
    assert scheduler._turn is jobs[1] and time.perf_counter() - t0 < 0.2
    assert 1 <= len(waits) <= 2   # once until woken (polling every 50 ms: a dozen)


def test_a_page_that_never_asks_or_never_says_it_finished_is_passed_over(sampler, monkeypatch):
    """A page ahead that has not asked for its turn TURN_GRACE seconds after its chain ended (closed) is not
    waited for; one that holds the turn TURN_STALE seconds without saying it finished loses it; a page that ends
    without its closing message (Stop, closed) passes its turn on untimed; a page forgotten (FINISH_FORGET) that
    asks at last is not put behind pages whose chains ended after its own."""
    import demo.scheduler as sched

    monkeypatch.setattr(sched, "TURN_STALE", 0.3)
    scheduler = Scheduler(sampler)
    jobs = [scheduler.submit(make_player(sampler, 1, seed=s, n_samples=1, latent_steps=0, data_steps=0))
            for s in (1, 2, 3)]
    while any(j.stage != "done" for j in jobs):
        scheduler.advance()
    t0 = time.perf_counter()
    scheduler.finish_turn(jobs[1])   # jobs[0] is ahead but never asks: waited for until TURN_GRACE only
    assert sched.TURN_GRACE * 0.8 <= time.perf_counter() - t0 < sched.TURN_GRACE + 1.0
    t0 = time.perf_counter()
    scheduler.finish_turn(jobs[2])   # jobs[1] holds the turn and never says it finished: passed over
    assert 0.25 <= time.perf_counter() - t0 < 1.5 and scheduler._turn is jobs[2]
    scheduler.page_finished(jobs[2], timed=False)   # ended without its closing message: the turn passes, untimed
    assert scheduler._turn is None and scheduler.finish.per_page is None
    scheduler.page_finished(jobs[1])   # too late: its turn was taken from it, so it is not timed
    assert scheduler.finish.per_page is None
    late = scheduler.submit(make_player(sampler, 1, seed=4, n_samples=1, latent_steps=0, data_steps=0))
    while late.stage != "done":
        scheduler.advance()
    scheduler.finishing.discard(jobs[0])   # a page forgotten (FINISH_FORGET) that asks at last: not behind late
    t0 = time.perf_counter()
    scheduler.finish_turn(jobs[0])
    assert scheduler._turn is jobs[0] and time.perf_counter() - t0 < sched.TURN_GRACE / 2


def test_a_page_that_finishes_before_the_round_is_over_is_timed(sampler):
    """A page is woken as its chain ends, in the middle of the round: its closing message can be sent, and the
    page say so, before the round's other chains have stepped. It is timed like the others, and no page is left
    counted as finishing (which would hold every later burst open and make the estimates too long)."""
    import threading

    scheduler = Scheduler(sampler)
    jobs = [scheduler.submit(make_player(sampler, 1, seed=s, n_samples=1, latent_steps=0, data_steps=0))
            for s in (1, 2)]
    said = []

    def page(job):   # the page at once: woken by its chain's end, it takes its turn and says it finished
        job.ended.wait(30)
        scheduler.finish_turn(job)
        scheduler.page_finished(job)
        said.append(job)

    pages = [threading.Thread(target=page, args=(j,)) for j in jobs]
    for t in pages:
        t.start()
    original = scheduler._finish

    def slow_finish(job):   # the round goes on after each chain's end (other groups' steps) as the page speaks
        original(job)
        time.sleep(0.2)

    scheduler._finish = slow_finish
    while any(j.stage != "done" for j in jobs):
        scheduler.advance()
    for t in pages:
        t.join(30)
    assert len(said) == 2 and all(j.ended_at is not None for j in jobs)
    assert not scheduler.finishing and scheduler.finish.per_page is not None


def test_finish_clock_weighs_the_latest_turns_most():
    clock = FinishClock(decay=0.5)
    assert clock.per_page is None
    clock.add(0.2)
    assert clock.per_page == pytest.approx(0.2)
    clock.add(0.4)       # the turn before weighs half
    assert clock.per_page == pytest.approx(0.3)
    for _ in range(30):  # a class's turns of 0.1 s: the lone pages before them no longer count
        clock.add(0.1)
    assert clock.per_page == pytest.approx(0.1, rel=1e-6)


def test_pages_ending_in_the_same_round_finish_together_and_are_woken_at_the_chains_end(sampler):
    scheduler = Scheduler(sampler)
    jobs = [scheduler.submit(make_player(sampler, 1, seed=s, n_samples=1)) for s in (1, 2)]
    other = scheduler.submit(make_player(sampler, 1, seed=3, n_samples=1, data_steps=0))
    while any(j.stage != "done" for j in jobs + [other]):
        assert not jobs[0].ended.is_set()
        scheduler.advance()
    assert all(j.ended.is_set() for j in jobs + [other])
    assert scheduler.finishing == set(jobs + [other])   # no page has said it finished
    assert other.ended_at < jobs[0].ended_at == jobs[1].ended_at   # no data revision: it ended first, alone
    stopped = scheduler.submit(make_player(sampler, 1, seed=4, n_samples=1))
    scheduler.cancel(stopped)   # Stop wakes the page too, but is no end of a chain to time
    scheduler.advance()
    assert stopped.ended.is_set() and stopped.ended_at is None


def test_the_clock_counts_the_gap_since_the_previous_round(sampler):
    """A round that follows the previous one at once is timed from that one's end: the pause between rounds (the
    pages' threads holding the CPU) delays every chain too, so the estimate must include it; a round after an idle
    scheduler (since=None) is timed by its steps alone."""
    scheduler = Scheduler(sampler)
    scheduler.submit(make_player(sampler, 1, seed=3, n_samples=2))
    scheduler.advance()                                   # the proposal: no round of the chain, not timed
    rounds = scheduler.clock.clocks["latent"].rounds
    assert not rounds
    scheduler.advance()
    (_, alone), = rounds
    scheduler.advance(since=time.perf_counter() - 1.0)    # the previous round ended a second ago
    assert rounds[-1][1] >= 1.0 > alone


def test_a_round_of_two_stages_is_timed_in_each(sampler):
    """A round with chains in two stages: each stage's clock gets its own samples (the gap shared between them)."""
    scheduler = Scheduler(sampler)
    first = scheduler.submit(make_player(sampler, 1, seed=3, n_samples=2))
    for _ in range(5):   # the proposal and the latent revision: first is in its EBM latent revision
        scheduler.advance()
    assert first.stage == "ebm_latent"
    scheduler.submit(make_player(sampler, 1, seed=4, n_samples=3))
    scheduler.advance()   # its proposal, and first's step
    scheduler.advance(since=time.perf_counter() - 1.0)   # latent (3 samples) and ebm_latent (2 samples)
    latent, ebm = (scheduler.clock.clocks[s].rounds[-1] for s in ("latent", "ebm_latent"))
    assert latent[0] == 3 and ebm[0] == 2 and latent[1] + ebm[1] >= 1.0


def test_pages_take_turns(sampler):
    """Each job's phase in the class's frame interval: thirty pages that press Run together draw at thirty
    different moments, not all at once."""
    scheduler = Scheduler(sampler)
    phases = sorted(scheduler.submit(make_player(sampler, 1, seed=s)).phase for s in range(30))
    assert all(0 <= p < 1 for p in phases)
    assert max(b - a for a, b in zip(phases, phases[1:])) < 3 / 30
