"""The adaptive controller, driven by made-up observations and by the simulator (no wall clock)."""

from __future__ import annotations

import collections
import math
import random
import re
import statistics

import pytest
from controller_sweep import held_out, tuned
from controller_sim import (
    SimWorkload,
    StaticPolicy,
    best_static,
    constant_cost,
    draw,
    phased_cost,
    ratio_to_best_static,
    simulate,
    standard_workloads,
)

from harness.policy import controller as ctl
from harness.policy.controller import BatchObservation, Controller, Decision

N = 200_000
C = 0.0002  # 0.2 ms per item
O = 0.020  # 20 ms per task


def fine(**kw) -> SimWorkload:
    args = dict(
        name="fine",
        items=N,
        workers=2,
        mean_cost=constant_cost(C),
        overhead_s=O,
        dispatch_s=0.002,
        distribution="uniform",
        spread=0.5,
        noise=0.1,
        seed=1,
    )
    args.update(kw)
    return SimWorkload(**args)


def batched(result):
    return [s for s in result.decisions if s.decision.strategy == "batched"]


def is_fill(s) -> bool:
    """Items the flow ran itself while waiting (fill) or to learn the cost first (learn)."""
    return s.decision.strategy == "inline" and s.decision.reason.startswith(("fill:", "learn:"))


def sizes_between(result, lo: float, hi: float) -> list[int]:
    """Batch sizes of the batches starting between fractions lo and hi of the items."""
    n = result.decisions[-1].first_item + result.decisions[-1].decision.batch_size
    return [s.decision.batch_size for s in batched(result) if lo * n <= s.first_item < hi * n]


def tuned_workload(name: str) -> SimWorkload:
    return next(w for w in tuned() if w.name == name)


def held_out_workload(name: str) -> SimWorkload:
    return next(w for w in held_out() if w.name == name)


# --- cold start and convergence -----------------------------------------------------------


def test_tiny_items_converge_from_one_to_hundreds_or_thousands():
    result = simulate(fine())
    sizes = [s.decision.batch_size for s in batched(result)]
    assert sizes[0] == 1
    steady = statistics.median(sizes_between(result, 0.3, 0.7))
    assert 300 <= steady <= 10_000
    assert all(s.decision.strategy == "batched" or is_fill(s) for s in result.decisions)


def _estimates(reason: str) -> tuple[float, float]:
    """(c+t, o) in seconds as a decision's reason states them ("c+t=0.2 ms/item ... o=20 ms/task")."""
    ct = re.search(r"c\+t=([0-9.e+-]+) ms/item", reason)
    o = re.search(r"o=([0-9.e+-]+) ms/task", reason)
    assert ct and o, reason
    return float(ct.group(1)) / 1e3, float(o.group(1)) / 1e3


def test_growth_is_at_most_twice_per_step_beyond_the_jump_size():
    """... or up to the target when that lies within the hold band of the cap."""
    for w in (fine(), fine(workers=8, dispatch_s=0.011, seed=7)):
        decisions = batched(simulate(w))
        sizes = [s.decision.batch_size for s in decisions]
        for before, s in zip(sizes, decisions[1:]):
            if s.decision.batch_size > before:
                # JUMP_OVERHEADS·o/(c+t) with the estimates the decision was made on (rounding:
                # their printed 3 digits, and the whole-wave size is rounded up)
                # and a target within the hold band of that cap reached in the same step
                ct, o = _estimates(s.decision.reason)
                jump = 1.01 * ctl.JUMP_OVERHEADS * o / ct
                cap = (1 + ctl.HOLD_BAND) * max(ctl.GROWTH_MAX * before, jump)
                assert s.decision.batch_size <= cap + 1, s.decision.reason
        assert sizes[1] > 2 * sizes[0]  # the jump from the probe in one step


def test_expensive_items_stay_one_per_task():
    w = fine(items=200, mean_cost=constant_cost(0.5), distribution="constant")
    result = simulate(w)
    assert {s.decision.batch_size for s in result.decisions} == {1}
    # no learn item before the probe: the warm-up's items put the rest far beyond the inline
    # bar; while the probe runs the flow learns c on one item (then no more at 0.5 s)
    inline = [s for s in result.decisions if s.decision.strategy == "inline"]
    assert result.decisions[0].decision.reason.startswith("cold start")
    assert [(s.first_item, s.decision.reason.split(":")[0]) for s in inline] == [(1, "fill")]
    # without the warm-up's item cost the flow runs one item first, to learn it
    learned = simulate(w, Controller(200, 2, prior_overhead_s=w.prior_overhead))
    assert [s.first_item for s in learned.decisions if s.decision.strategy == "inline"] == [0]
    assert learned.decisions[0].decision.reason.startswith("learn:")


def test_first_decision_is_a_single_probe():
    decision = Controller(1000, 4).decide(1000, 0)
    assert (decision.batch_size, decision.strategy, decision.window) == (1, "batched", 1)
    assert "cold start" in decision.reason


# --- estimates ----------------------------------------------------------------------------


def test_estimates_are_none_until_observed():
    c = Controller(100, 2)
    assert (c.per_item_s, c.overhead_s, c.throughput) == (None, None, None)


def test_overhead_estimate_is_not_fooled_by_queueing():
    """With 2·W tasks in flight each task waits ~one task time; the estimate stays near o."""
    w = fine(noise=0.0, distribution="constant")
    controller = Controller(w.items, w.workers)
    result = simulate(w, controller)
    queued = statistics.median(o.duration_s - o.compute_s for o in result.observations[20:])
    assert queued > 5 * O  # durations really do include queueing
    assert controller.overhead_s == pytest.approx(O, rel=0.15)
    assert controller.per_item_s == pytest.approx(C, rel=0.02)
    assert controller.throughput == pytest.approx(w.workers / C, rel=0.15)


def test_slow_dispatch_shows_as_overhead_and_grows_batches():
    """W=8 threads fed by an 11 ms serial dispatcher: tasks must last >= ~88 ms."""
    w = fine(workers=8, dispatch_s=0.011, seed=7)
    result = simulate(w)
    steady = statistics.median(sizes_between(result, 0.3, 0.7))
    assert steady * C + O >= w.workers * w.dispatch_s


def test_transfer_and_fixed_cost_are_told_apart_from_exact_observations():
    """Tasks alone on a thread, sizes varied: duration - compute = o + t·b is recovered exactly."""
    o, t = 0.030, 20e-6
    c = Controller(10**6, 2)
    clock = 0.0
    for b in [1, 10, 100, 1000, 3000, 10, 3000, 1000] * 3:
        c.submitted(c.decide(10**6, 0))
        compute = 0.0001 * b
        c.observe(BatchObservation(b, b, clock, clock + o + t * b + compute, compute, b, 0))
        clock += 1.0
    assert c.overhead_s == pytest.approx(o, rel=1e-6)
    assert c.transfer_s == pytest.approx(t, rel=1e-6)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fixed_overhead_does_not_climb_with_batch_size_when_items_cost_transfer(seed):
    """With t > 0 the old single-term estimate grew with the batch (and the batch with it)."""
    w = fine(transfer_s=0.00005, seed=seed)  # 50 µs per item beyond compute, 20 ms per task
    seen: list[tuple[int, float, float]] = []

    class Watched(Controller):
        def observe(self, obs: BatchObservation) -> None:
            super().observe(obs)
            if obs.strategy == "batched":
                seen.append((obs.batch_size, self.overhead_s, self.transfer_s))

    simulate(w, Watched(w.items, w.workers, prior_overhead_s=w.prior_overhead))
    largest = max(b for b, _, _ in seen)
    first_batch, first_o, _ = seen[1]  # the first task after the probe
    assert first_batch < largest / 2  # the batches did grow...
    late = statistics.median(o for b, o, _ in seen if b == largest)
    assert late <= 1.15 * first_o  # ... and o did not grow with them
    assert all(0.75 * O <= o <= 1.5 * O for _, o, _ in seen)  # never the 4-6x climb
    assert seen[-1][2] == pytest.approx(w.transfer_s, rel=0.2)


def test_every_thread_gets_work_as_soon_as_the_probe_is_seen():
    for workers in (8, 16, 32):
        w = fine(workers=workers, items=100_000, dispatch_s=0.011)
        result = simulate(w)
        first_seen = min(o.finished for o in result.observations if o.strategy == "batched")
        after = [s.decision.window for s in batched(result) if s.submitted >= first_seen]
        assert after[0] >= workers  # not one more task per completion


# --- drift, noise, tail -------------------------------------------------------------------


def _decisions_to_settle(result, at: float, settled) -> int:
    """Decisions from the first one made after a batch with post-`at` items was seen, until `settled`."""
    ds = batched(result)
    n = ds[-1].first_item + ds[-1].decision.batch_size
    first = next(s for s in ds if s.first_item + s.decision.batch_size > at * n)
    seen = min(o.finished for o in result.observations if o.started == first.submitted)
    start = next(i for i, s in enumerate(ds) if s.submitted >= seen)
    return next(j for j in range(start, len(ds)) if settled(ds[j].decision.batch_size)) - start


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_a_20x_drift_up_and_down_is_tracked_within_a_few_batches(seed):
    w = fine(mean_cost=phased_cost(C, [(0.4, 20 * C), (0.7, C)], N), seed=seed)
    result = simulate(w)
    before = statistics.median(sizes_between(result, 0.2, 0.35))
    during = statistics.median(sizes_between(result, 0.5, 0.65))
    after = statistics.median(sizes_between(result, 0.8, 0.9))
    assert before / during > 10 and after / during > 10
    band = 1 + ctl.HOLD_BAND
    # Up: confirmed after DRIFT_CONFIRM observations, then one shrink.
    assert _decisions_to_settle(result, 0.4, lambda b: b <= band * during) <= ctl.DRIFT_CONFIRM + 1
    # Down: confirmed, then 2x per new observation for log2(20) steps.
    assert _decisions_to_settle(result, 0.7, lambda b: b >= after / band) <= 10


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_oscillation_under_ten_percent_noise(seed):
    result = simulate(fine(distribution="constant", noise=0.1, seed=seed))
    steady = sizes_between(result, 0.2, 0.8)
    mid = statistics.median(steady)
    assert all(0.8 * mid <= b <= 1.2 * mid for b in steady)


def test_no_thread_gets_more_than_its_share_of_what_is_left():
    """Tail: a batch is at most (unsubmitted + in-flight items)/W, or the floor of a few overheads."""
    result = simulate(fine(items=20_000))
    tasks = [o for o in result.observations if o.strategy == "batched"]
    steady = statistics.median(sizes_between(result, 0.3, 0.7))
    ds = batched(result)
    assert ds[-1].decision.batch_size < steady  # the run ends on thinner batches
    for s in ds:
        outstanding = sum(o.batch_size for o in tasks if o.started < s.submitted < o.finished)
        left = 20_000 - s.first_item + outstanding
        floor = ctl.TAIL_FLOOR_OVERHEADS * 1.1 * O / C  # the floor, with o estimated within 10 %
        assert s.decision.batch_size <= max(math.ceil(left / 2), floor)


# --- bounds -------------------------------------------------------------------------------


def test_batch_size_is_within_one_and_remaining_across_random_settings():
    rng = random.Random(42)
    for i in range(60):
        w = SimWorkload(
            name=f"random{i}",
            items=rng.choice([1, 2, 7, 50, 333, 2_000, 5_000]),
            workers=rng.choice([1, 2, 3, 8, 16]),
            mean_cost=constant_cost(10 ** rng.uniform(-6, -0.5)),
            overhead_s=10 ** rng.uniform(-3, -1),
            dispatch_s=rng.choice([0.0, 0.002, 0.011, 0.05]),
            **rng.choice(
                [
                    {"distribution": "constant"},
                    {"distribution": "uniform", "spread": 0.9},
                    {"distribution": "lognormal", "spread": 1.5},
                    {"distribution": "pareto", "spread": 1.3},
                    {"distribution": "bimodal", "heavy_fraction": 0.02, "heavy_s": 0.5},
                ]
            ),
            noise=rng.choice([0.0, 0.1, 0.3]),
            seed=i,
        )
        result = simulate(w, worker_slots=rng.choice([1, 2]))  # the simulator asserts the bounds
        assert sum(s.decision.batch_size for s in result.decisions) == w.items


def test_batch_size_is_within_one_and_remaining_for_arbitrary_observations():
    """Fed nonsense (zero compute, huge compute, odd timings), decide() stays in bounds."""
    rng = random.Random(7)
    for trial in range(200):
        total = rng.randint(1, 10**6)
        prior = rng.choice([None, 0.0, rng.uniform(0, 1)])
        c = Controller(total, rng.randint(1, 64), initial_batch_size=rng.randint(1, 100), prior_overhead_s=prior)
        t = 0.0
        for _ in range(rng.randint(0, 40)):
            remaining = rng.randint(1, total)
            d = c.decide(remaining, rng.randint(0, 200))
            assert 1 <= d.batch_size <= remaining
            assert d.strategy in ("batched", "inline") and d.reason and d.window >= 1
            c.submitted(d)
            b = rng.randint(1, 10_000)
            start = t
            t += rng.choice([0.0, 1e-6, rng.uniform(0, 10)])
            compute = rng.choice([0.0, rng.uniform(0, t - start), rng.uniform(0, 100)])
            strategy = d.strategy if rng.random() < 0.8 else "inline"
            c.observe(BatchObservation(b, b, start, t, compute, b, 0, strategy))
            assert c.overhead_s is None or c.overhead_s >= 0
            assert c.transfer_s >= 0


def test_decide_rejects_nothing_remaining_and_bad_arguments():
    with pytest.raises(ValueError):
        Controller(10, 2).decide(0, 0)
    with pytest.raises(ValueError):
        Controller(10, 2).decide(5, -1)
    for args, kw in [((0, 2), {}), ((10, 0), {}), ((10, 2), {"initial_batch_size": 0}), ((10, 2), {"log_size": 0})]:
        with pytest.raises(ValueError):
            Controller(*args, **kw)
    with pytest.raises(ValueError):
        Controller(10, 2).observe(BatchObservation(1, 1, 2.0, 1.0, 0.0, 1, 0))


# --- inline -------------------------------------------------------------------------------


def test_inline_for_a_tiny_workload():
    w = fine(items=30, mean_cost=constant_cost(0.00001), distribution="constant")
    result = simulate(w)
    last = result.decisions[-1]
    assert last.decision.strategy == "inline"
    assert last.first_item + last.decision.batch_size == 30  # all the rest
    assert result.tasks <= 2  # the probe, at most one more


def test_a_prior_overhead_sends_a_tiny_workload_inline():
    w = fine(items=30, mean_cost=constant_cost(0.0005), distribution="constant", overhead_s=0.06)
    result = simulate(w, Controller(30, w.workers, prior_overhead_s=0.06))
    first, last = result.decisions[0].decision, result.decisions[-1].decision
    assert first.strategy == "inline" and first.reason.startswith("learn:")
    assert last.strategy == "inline" and "warm-up" in last.reason
    assert result.tasks == 0  # no probe to wait for
    assert result.makespan_s == pytest.approx(30 * 0.0005, rel=0.3)  # about its inline cost

def test_a_probe_slower_than_the_rest_of_the_work_sends_it_inline():
    """The task path's start is the probe's round trip, then a task: g·(L_wait + o) with fill
    stalling the probe (as on CPU items with the scheduler in the flow process)."""
    def after_learning(items: int, **priors) -> Decision:
        controller = Controller(items, 2, prior_overhead_s=0.032, **priors)
        learn = controller.decide(items, 0)
        assert learn.reason.startswith("learn:")
        controller.submitted(learn)
        controller.observe(BatchObservation(1, 1, 0.0, 0.002, 0.002, 1, 0, "inline"))  # 2 ms an item
        return controller.decide(items - 1, 0)

    measured = dict(prior_probe_s=0.025, prior_probe_filling_s=0.098)  # bench/tiny.toml's warm-up
    rest = after_learning(30, **measured)  # 58 ms left < 2 x (25 + 32) ms
    assert (rest.strategy, rest.batch_size) == ("inline", 29) and "probe" in rest.reason
    assert after_learning(30).strategy == "batched"  # without the probe figures: 58 ms > 32 ms / 2
    # the warm-up's item cost puts the rest within reach of the bar: the learn item stays
    assert after_learning(30, prior_item_s=0.002, **measured).strategy == "inline"
    assert after_learning(100, **measured).strategy == "batched"  # 198 ms left: tasks pay


def test_fill_only_when_it_does_not_stall_the_probe_by_more_than_it_gains():
    """Filling pays while L_fill < W/(W-1)·L_wait (docs/controller.md, "Fill")."""
    def fill_after_probe(**priors) -> Decision | None:
        controller = Controller(10_000, 2, prior_overhead_s=0.03, **priors)
        controller.submitted(learn := controller.decide(10_000, 0))
        controller.observe(BatchObservation(1, 1, 0.0, 0.0001, 0.0001, 1, 0, "inline"))
        assert learn.strategy == "inline"
        controller.submitted(probe := controller.decide(9_999, 0))
        assert probe.strategy == "batched"
        return controller.fill(9_998, 1)

    assert fill_after_probe(prior_probe_s=0.025, prior_probe_filling_s=0.098) is None  # CPU items, GIL held
    assert fill_after_probe(prior_probe_s=0.025, prior_probe_filling_s=0.030) is not None  # sleeping items
    assert fill_after_probe() is not None  # nothing measured: fill as before
    w = tuned_workload("tiny_30x2ms")
    assert w.prior_probe_filling > 2 * w.prior_probe  # the simulator's CPU items stall the probe too
    assert simulate(w).tasks == 0


def test_growth_waits_while_the_items_left_cannot_fill_a_wave_at_the_new_size():
    """Bigger tasks late in the run would queue behind the in-flight ones on a few threads."""
    w = held_out_workload("sleep_64t_coarse")
    result = simulate(w)
    sizes = [s.decision.batch_size for s in batched(result)]
    grown = [s for s, before in zip(batched(result)[2:], sizes[1:]) if s.decision.batch_size > before]
    assert all(w.items - s.first_item >= w.workers * s.decision.batch_size for s in grown)
    assert ratio_to_best_static(w)[0] <= 1.10


def test_the_jump_reaches_a_target_within_the_hold_band_of_its_cap():
    """2,000 items of 0.24 ms on two threads, 20 ms a task: one wave of two tasks of 1,000,
    where the jump cap (10 overheads: 833 items) would leave 334 items for a third."""
    controller = Controller(2_000, 2, prior_overhead_s=0.020, prior_item_s=0.00024)
    controller.submitted(probe := controller.decide(2_000, 0))
    assert probe.strategy == "batched" and probe.batch_size == 1
    controller.observe(BatchObservation(1, 1, 0.0, 0.02024, 0.00024, 1, 0))
    jump = controller.decide(1_999, 0)
    assert math.floor(ctl.JUMP_OVERHEADS * 0.020 / 0.00024) == 833
    assert jump.batch_size == 1_000, jump.reason


def test_fill_runs_slices_only_while_a_thread_idles():
    w = fine(workers=8, dispatch_s=0.011, seed=7)
    result = simulate(w)
    fills = [s for s in result.decisions if is_fill(s)]
    assert fills, "slow start with 8 threads leaves threads idle: the flow should fill"
    c = 0.0002  # fine()'s mean item cost
    assert all(s.decision.batch_size <= 3 * ctl.FILL_SLICE_S / c for s in fills[1:])
    controller = Controller(1000, 2)
    controller.submitted(controller.decide(1000, 0))
    controller.observe(BatchObservation(1, 1, 0.0, 0.05, 0.02, 1, 0))  # a 20 ms item
    assert controller.fill(999, 1) is None  # items above FILL_MAX_ITEM_S are not filled
    assert Controller(1000, 2).fill(999, 2) is None  # every thread busy


def test_no_inline_rest_for_a_large_workload():
    for w in (fine(), fine(mean_cost=constant_cost(0.00001), distribution="constant")):
        assert all(s.decision.strategy == "batched" or is_fill(s) for s in simulate(w).decisions)


# --- against the oracle -------------------------------------------------------------------


@pytest.mark.parametrize("workload", standard_workloads(), ids=lambda w: w.name)
@pytest.mark.parametrize("slots", [1, 2], ids=["fifo", "dask_slots"])
def test_makespan_within_ten_percent_of_best_static(workload, slots):
    ratio, _, oracle = ratio_to_best_static(workload, worker_slots=slots)
    assert ratio <= 1.10, f"{workload.name}: {ratio:.3f} x best static:{oracle.batch_size}"


# The judge is the sweep's held-out set: no constant was chosen by looking at these workloads
# (tests/controller_sweep.py). The goal's bound; this draw's worst is 1.05 (docs/controller.md).
HELD_OUT_BOUND = 1.25


@pytest.mark.parametrize("workload", held_out(), ids=lambda w: w.name)
def test_every_held_out_workload_is_near_the_best_static_size(workload):
    ratio, _, oracle = ratio_to_best_static(workload)
    assert ratio <= HELD_OUT_BOUND, f"{workload.name}: {ratio:.3f} x best static:{oracle.batch_size}"


def test_oracle_pruning_is_exact():
    w = fine(items=5_000, seed=3)
    d = draw(w)
    oracle = best_static(w, [1, 4, 16, 64, 256, 1024], d)
    brute = {b: simulate(w, StaticPolicy(b, w.workers), d).makespan_s for b in [1, 4, 16, 64, 256, 1024]}
    assert oracle.makespan_s == min(brute.values())
    assert oracle.batch_size == min(brute, key=brute.get)
    for b, m in oracle.makespans.items():
        assert m is None or m == brute[b]


def test_simulation_is_deterministic():
    a, b = simulate(fine(items=20_000)), simulate(fine(items=20_000))
    assert a.makespan_s == b.makespan_s and a.decisions == b.decisions


# --- log and window -----------------------------------------------------------------------


def test_log_is_bounded_and_every_reason_is_said():
    controller = Controller(N, 2, log_size=25)
    result = simulate(fine(), controller)
    assert len(result.decisions) > 25
    assert len(controller.log) == 25
    assert [d for _, d in controller.log] == [s.decision for s in result.decisions[-25:]]
    times = [t for t, _ in controller.log]
    assert times == sorted(times)
    assert all(isinstance(d, Decision) and d.reason.strip() for _, d in controller.log)
    assert all(s.decision.reason.strip() for s in result.decisions)


def test_window_opens_to_two_per_worker_thread():
    for workers in (1, 2, 8):
        result = simulate(fine(workers=workers, items=50_000))
        windows = [s.decision.window for s in result.decisions]
        assert windows[0] == ctl.COLD_START_WINDOW
        assert max(windows) == max(ctl.MIN_WINDOW, 2 * workers)
        assert windows == sorted(windows)  # opens, never closes


def test_a_second_decide_without_an_answer_raises():
    c = Controller(100, 2)
    d = c.decide(100, 0)
    with pytest.raises(ctl.ContractError):
        c.decide(100, 0)
    with pytest.raises(ctl.ContractError):
        c.fill(99, 1)
    with pytest.raises(ctl.ContractError):
        c.submitted(Decision(d.batch_size, d.strategy, d.reason, d.window))  # equal, but not the one pending
    c.cancel(d)
    with pytest.raises(ctl.ContractError):
        c.submitted(d)  # answered already
    c.submitted(c.decide(100, 0))  # the contract kept: no error


def test_a_task_never_submitted_cannot_be_observed():
    c = Controller(100, 2)
    c.cancel(c.decide(100, 0))  # nothing went out
    with pytest.raises(ctl.ContractError):
        c.observe(BatchObservation(1, 1, 0.0, 0.05, 0.01, 1, 0))
    with pytest.raises(ctl.ContractError):
        Controller(100, 2).task_failed(0.0, 0.1, 1)
    c.observe(BatchObservation(1, 1, 0.0, 0.01, 0.01, 1, 0, "inline"))  # inline needs no task


def _drive(controller: Controller, items: int, route, failing: set[int]) -> collections.Counter:
    """A fake `run_adaptive`: the same calls in the same order, on a clock that ticks per step.

    `route(k, wanted)` plays the breaker for the k-th routed batch (a path, or None: every
    path refused); tasks whose submit number is in `failing` fail as a whole and re-run.
    """
    clock, done, routed, submits = 0.0, 0, 0, 0
    remaining, reruns, in_flight = items, [], []  # in_flight: (decision, submitted, size, number)
    window, blocked = 1, False
    paths: collections.Counter = collections.Counter()

    def inline(size: int) -> None:
        nonlocal clock, done
        controller.observe(BatchObservation(size, size, clock, clock + 0.001 * size, 0.001 * size, size, 0, "inline"))
        clock += 0.001 * size
        done += size

    while remaining or reruns or in_flight:
        if (remaining or reruns) and len(in_flight) < window and not blocked:
            decision = controller.decide(remaining + sum(reruns), len(in_flight))
            window = decision.window
            if reruns:
                size = reruns.pop(0)
            else:
                size = min(decision.batch_size, remaining)
                remaining -= size
            path = route(routed, decision.strategy)
            routed += 1
            if path is None:
                controller.cancel(decision)
                paths["refused"] += 1
                reruns.insert(0, size)
                blocked = bool(in_flight)
                continue
            if path != decision.strategy:
                controller.rerouted(decision, path)
                paths[f"{decision.strategy} rerouted to {path}"] += 1
            else:
                controller.submitted(decision)
                paths[path] += 1
            if path == "inline":
                inline(size)
            else:
                in_flight.append((decision, clock, size, submits))
                submits += 1
                clock += 0.002
            continue
        ready = in_flight[0][1] + 0.02 + 0.001 * in_flight[0][2] <= clock
        if not ready and remaining and (fill := controller.fill(remaining, len(in_flight))) is not None:
            take = min(fill.batch_size, remaining)
            remaining -= take
            inline(take)
            paths["fill"] += 1
            continue
        decision, started, size, number = in_flight.pop(0)
        clock = max(clock, started + 0.02 + 0.001 * size)
        blocked = False
        if number in failing:
            controller.task_failed(started, clock, decision.batch_size)
            reruns.append(size)
            paths["failed"] += 1
            continue
        controller.observe(BatchObservation(decision.batch_size, size, started, clock, 0.001 * size, size, 0))
        done += size
    assert done == items  # every item once, re-runs included
    return paths


def test_every_path_of_the_mechanism_keeps_the_contract():
    """Submit, inline, fill, breaker reroutes both ways, every path refused, task failures."""

    def route(k: int, wanted: str) -> str | None:
        if k in (2, 3, 6):
            return None  # every path refused: the batch waits, nothing submitted
        if k in (4, 8):
            return "inline" if wanted == "batched" else "batched"  # a breaker reroutes
        return wanted

    for prior in (None, 0.02):
        controller = Controller(3_000, 4, prior_overhead_s=prior)
        paths = _drive(controller, 3_000, route, failing={1, 3, 4})
        assert {"batched", "fill", "refused", "failed", "batched rerouted to inline"} <= set(paths)
        assert paths["failed"] == 3
        assert paths["inline"] == (1 if prior else 0)  # with a prior, the flow learns c on one item first
        assert controller._pending is None
        assert controller._submits == controller._ended  # every task submitted was seen to end
        assert controller._queue.unmatched == 0  # the replay matched every completion to its submit
    # a tiny workload: inline, and an inline decision a breaker sends to a task instead
    controller = Controller(30, 2, prior_overhead_s=0.5)
    paths = _drive(controller, 30, lambda k, wanted: "batched" if k == 0 else wanted, failing=set())
    assert paths["inline rerouted to batched"] == 1 and paths["fill"] >= 1
    assert controller._queue.unmatched == 0


# --- unknown length (a stream) ------------------------------------------------------------

STREAM_C, STREAM_O = 1e-6, 0.020  # 1 µs items, 20 ms per task: a share cap far above any read-ahead


def _run_stream(controller: Controller, remaining: int, more: bool, batches: int,
                c: float = STREAM_C, o: float = STREAM_O, drain: bool = False) -> list[Decision]:
    """`batches` decisions on W threads, as many in flight as each decision's window allows, each
    task taking o + b·c (b·c of it compute) on the first free thread, seen when the window is
    full (all seen at the end with `drain`). `remaining` stays put, as a stream's read-ahead
    does while more keeps coming."""
    free = [0.0] * controller.worker_threads
    flying: list[tuple[float, float, Decision]] = []  # (finish, submit, decision)
    decisions: list[Decision] = []
    now, window = 0.0, 1
    while len(decisions) < batches:
        if len(flying) < window:
            d = controller.decide(remaining, len(flying), more=more)
            controller.submitted(d)
            decisions.append(d)
            window = d.window
            thread = free.index(min(free))
            free[thread] = max(now, free[thread]) + o + d.batch_size * c
            flying.append((free[thread], now, d))
            flying.sort(key=lambda f: f[0])
            continue
        finish, submit, d = flying.pop(0)
        now = finish
        controller.observe(BatchObservation(d.batch_size, d.batch_size, submit, finish, d.batch_size * c,
                                            d.batch_size, 0))
    for finish, submit, d in flying if drain else ():
        controller.observe(BatchObservation(d.batch_size, d.batch_size, submit, finish, d.batch_size * c,
                                            d.batch_size, 0))
    return decisions


def _dominated(c: float = STREAM_C, o: float = STREAM_O) -> int:
    """The batch of JUMP_OVERHEADS overheads of work, which may go beyond a thread's share."""
    return math.floor(ctl.JUMP_OVERHEADS * o / c)


def _share_cap(c: float = STREAM_C, o: float = STREAM_O) -> int:
    return math.floor(o * (1 - ctl.TARGET_OVERHEAD_SHARE) / (ctl.TARGET_OVERHEAD_SHARE * c))


def test_a_stream_grows_past_its_read_ahead_to_the_overhead_share_cap():
    """2,048 items read ahead of a stream (more=True): the batches grow past them to the share
    cap, each at most the items handed out before it (W = 2: doubling), so within ~log2 of the
    cap's size in batches (or a jump to JUMP_OVERHEADS overheads of work); told the 2,048 are all there is (the same observations), the
    end-game rules hold every batch to them (the issue-25 stall: 'fewer than 2 tasks' kept a
    stream at 128)."""
    streamed = _run_stream(Controller(2_048, 2, allow_inline=False), 2_048, True, 24)
    sizes = [d.batch_size for d in streamed]
    assert sizes[0] == 1
    handed = 0
    for size in sizes:  # 1/(W-1) of what went before, or a task of JUMP_OVERHEADS overheads
        assert size <= max(2_048, handed, _dominated()), (size, handed)
        handed += size
    reached = sizes.index(_share_cap())
    assert reached <= math.ceil(math.log2(_share_cap() / 2_048)) + 4 and set(sizes[reached:]) == {_share_cap()}
    for d in streamed[1:]:
        assert not re.search(r"tail|fewer than|whole waves", d.reason), d.reason
        assert "end not known" in d.reason or d.reason.startswith("hold")
    known = _run_stream(Controller(2_048, 2, allow_inline=False), 2_048, False, 12)
    assert max(d.batch_size for d in known) <= 2_048
    assert any(re.search(r"tail|fewer than", d.reason) for d in known)


@pytest.mark.parametrize("threads", [2, 4, 8])
def test_no_stream_batch_holds_more_than_a_threads_share_whenever_the_end_comes(threads):
    """With the end not known, a batch holds at most 1/(W-1) of the items handed out before it (or
    JUMP_OVERHEADS overheads of work, a straggle no longer than the growth's overheads): so
    wherever the stream ends, no task holds more than 1/W of all the items (B <= N/W), and
    none straggles with most of the work on one thread while the others idle (seen: 1M items
    went out as 1 + 178,306 + 821,693 on two threads, when a batch could take the share cap)."""
    read_ahead = 300
    sizes = [d.batch_size for d in _run_stream(Controller(read_ahead, threads, allow_inline=False), read_ahead,
                                               True, 40)]
    handed = 0
    for size in sizes:
        handed += size
        assert size <= max(read_ahead, handed / threads, _dominated()), (size, handed, threads)
    assert max(sizes) > 10 * read_ahead  # and they still grow well past the read-ahead


def test_the_end_game_rules_return_once_the_streams_end_is_known():
    """The stream ends: 300,000 items are left and nothing is in flight. The end-game rules give
    each thread its share, where the stream asked for a bigger batch than the end allows."""
    c = Controller(2_048, 2, allow_inline=False)
    _run_stream(c, 2_048, True, 8, drain=True)
    still = c.decide(300_000, 0, more=True)
    c.cancel(still)
    end = c.decide(300_000, 0, more=False)
    assert still.batch_size > end.batch_size
    assert end.batch_size == 300_000 // 2 and "end not known" not in end.reason  # the whole waves of a known end
    c.submitted(end)


def test_a_cancelled_decision_leaves_no_trace_in_the_steering():
    """The window cancels a stream's decision when the source ends before the batch is read, then
    decides again on the exact count: that must come out as if the stream's decision never was."""
    a, b = (Controller(2_048, 2, allow_inline=False) for _ in range(2))
    for controller in (a, b):
        _run_stream(controller, 2_048, True, 2)  # the probe, then a first batch (in flight)
    wanted = a.decide(2_048, 1, more=True)  # the read-ahead would go this far
    a.cancel(wanted)
    exact, reference = a.decide(50_000, 1), b.decide(50_000, 1)
    assert (exact.batch_size, exact.reason) == (reference.batch_size, reference.reason)


def test_free_items_in_a_stream_grow_only_to_the_share_cap_at_the_item_floor():
    """Items that cost nothing measurable: a list is capped by its count, a stream by the items
    handed out and the share cap, so its items count STREAM_ITEM_FLOOR_S each (else: a batch
    of 10**18 to read once enough were handed out)."""
    sizes = [d.batch_size for d in _run_stream(Controller(256, 2, allow_inline=False), 256, True, 40, c=0.0)]
    assert max(sizes) == _share_cap(c=ctl.STREAM_ITEM_FLOOR_S) == sizes[-1]


def test_more_must_be_a_bool():
    for bad in (1, "yes", None):
        with pytest.raises(TypeError, match="more must be a bool"):
            Controller(10, 2).decide(5, 0, more=bad)
        with pytest.raises(TypeError, match="more must be a bool"):
            Controller(10, 2).fill(5, 0, more=bad)
    with pytest.raises(ValueError, match="remaining >= 1"):
        Controller(10, 2).decide(0, 0, more=True)
