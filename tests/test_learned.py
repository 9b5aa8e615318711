"""Memory across runs, pure parts: `Learned` and its stored form, `Controller.learned()`, and a
controller started from a memory, driven by made-up observations and the simulator."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from controller_sim import best_static, constant_cost, draw, oracle_sweep, simulate, warm_up_item_cost
from test_controller import C, fine

from harness.policy import controller as ctl
from harness.policy.controller import BatchObservation, Controller
from harness.policy.learned import SCHEMA, VERSION, Learned

MEMORY = Learned(per_item_s=0.0002, item_cv=0.3, overhead_s=0.02, transfer_s=0.0, batch_size=3000,
                 worker_threads=2, items=200_000)


def cold_controller(w, d, **options) -> Controller:
    """What the `adaptive` strategy builds: the warm-up's priors, no memory."""
    return Controller(w.items, w.workers, prior_overhead_s=w.prior_overhead, prior_item_s=warm_up_item_cost(w, d),
                      prior_probe_s=w.prior_probe, prior_probe_filling_s=w.prior_probe_filling, **options)


# --- the stored form ----------------------------------------------------------------------


def test_the_stored_form_round_trips_through_json():
    stored = json.loads(json.dumps(MEMORY.to_dict()))
    assert stored["schema"] == SCHEMA and stored["version"] == VERSION
    assert Learned.from_dict(stored) == MEMORY


@pytest.mark.parametrize("change, message", [
    (lambda d: [1, 2], "must be a JSON object"),
    (lambda d: {**d, "schema": "other"}, "schema: found 'other'"),
    (lambda d: {**d, "version": VERSION + 1}, f"version: found {VERSION + 1}"),
    (lambda d: {k: v for k, v in d.items() if k != "overhead_s"}, "missing \\['overhead_s'\\]"),
    (lambda d: {**d, "colour": "red"}, "unknown \\['colour'\\]"),
    (lambda d: {**d, "per_item_s": -1.0}, "per_item_s: found -1.0"),
    (lambda d: {**d, "overhead_s": math.nan}, "overhead_s: found nan"),
    (lambda d: {**d, "transfer_s": math.inf}, "transfer_s: found inf"),
    (lambda d: {**d, "item_cv": "0.3"}, "item_cv: found '0.3'"),
    (lambda d: {**d, "batch_size": 0}, "batch_size: found 0, expected an integer >= 1"),
    (lambda d: {**d, "batch_size": 2.5}, "batch_size: found 2.5"),
    (lambda d: {**d, "worker_threads": True}, "worker_threads: found True"),
])
def test_a_foreign_or_damaged_entry_is_a_value_error(change, message):
    with pytest.raises(ValueError, match=message):
        Learned.from_dict(change(MEMORY.to_dict()))


# --- what a run learned -------------------------------------------------------------------


def test_nothing_is_learned_before_a_full_wave():
    c = Controller(10_000, 4)
    assert c.learned() is None
    t = 0.0
    for _ in range(3):  # the probe and two more: under a wave of 4
        d = c.decide(1000, 0)
        c.submitted(d)
        c.observe(BatchObservation(d.batch_size, d.batch_size, t, t + 0.03, 0.01, d.batch_size, 0))
        t += 0.03
        assert c.learned() is None


def test_a_run_learns_its_estimates_and_the_size_of_its_bulk():
    w = fine()
    d = draw(w)
    c = cold_controller(w, d)
    run = simulate(w, c, d)
    learned = c.learned()
    assert learned is not None and learned.items == w.items and learned.worker_threads == 2
    assert learned.per_item_s == pytest.approx(C, rel=0.05) and learned.overhead_s == pytest.approx(0.020, rel=0.1)
    assert 0 < learned.item_cv < 1  # uniform ±50 %: cv 0.29
    sizes = [s.decision.batch_size for s in run.decisions if s.decision.strategy == "batched"]
    assert learned.batch_size == max(sizes)  # the bulk: neither the probe, the ramp nor the tail
    assert sizes[0] < learned.batch_size and sizes[-1] < learned.batch_size


# --- a run started from a memory ----------------------------------------------------------


def test_a_warm_start_opens_the_window_at_once_at_the_learned_size():
    w = fine()
    d = draw(w)
    cold = cold_controller(w, d)
    cold_run = simulate(w, cold, d)
    memory = cold.learned()
    warm_run = simulate(w, Controller(w.items, w.workers, learned=memory), d)
    first = warm_run.decisions[0].decision
    assert first.strategy == "batched" and first.window == w.workers  # no probe: every thread at once
    assert first.reason.startswith("from memory: ")
    # the learned size, or the whole-wave plan's within the hold band of it (the items split into whole waves)
    assert memory.batch_size / (1 + ctl.HOLD_BAND) <= first.batch_size <= memory.batch_size * (1 + ctl.HOLD_BAND)
    assert all(s.decision.strategy == "batched" for s in warm_run.decisions)  # no learn item, no fill
    assert warm_run.decisions[w.workers].decision.reason.startswith("memory kept: ")
    assert warm_run.makespan_s <= cold_run.makespan_s  # no probe, no ramp


def test_a_memory_of_many_items_makes_no_giant_task_of_few():
    for items, cap in ((500, None), (100_000, 700)):
        c = Controller(items, 2, learned=MEMORY, max_batch_size=cap)
        first = c.decide(items, 0)
        assert "from memory: " in first.reason
        assert first.batch_size == (items // 2 if cap is None else cap)  # a thread's share; the user's cap


@pytest.mark.parametrize(("learned", "items", "threads", "first"), [
    (6_244, 100_000, 16, 6_250),  # a cold run's bulk a few items short of one wave: one wave
    (29, 60, 2, 30),  # not four of 15
    (3_000, 200_000, 2, 3_031),  # many waves: the nearest whole-wave size, 33 waves of 2
])
def test_the_first_warm_wave_is_the_learned_size_split_into_whole_waves(learned, items, threads, first):
    """The learned size, not the plan the remembered c and o make (that plan lacks what the
    model leaves out, and sent 32 sleeping threads 4 waves of 235 where cold settled on 938)."""
    memory = dataclasses.replace(MEMORY, batch_size=learned, worker_threads=threads, items=items, overhead_s=0.001)
    decision = Controller(items, threads, learned=memory).decide(items, 0)
    assert decision.reason.startswith("from memory: ") and decision.batch_size == first


def test_a_stream_starts_from_memory_too():
    c = Controller(256, 2, learned=MEMORY)
    first = c.decide(256, 0, more=True)
    assert first.reason.startswith("from memory: ") and first.window == 2
    assert first.batch_size <= MEMORY.batch_size


@pytest.mark.parametrize("factor", [10, 0.1])
def test_work_ten_times_off_the_memory_drops_it_and_recovers(factor):
    """A memory learned on 0.2 ms items, then items 10x costlier (or cheaper): the first task
    seen drops it, the trace's reason says so, and the run ends near the best static size."""
    w = fine(mean_cost=constant_cost(factor * C))
    d = draw(w)
    run = simulate(w, Controller(w.items, w.workers, learned=MEMORY), d)
    reasons = [s.decision.reason for s in run.decisions]
    dropped = [r for r in reasons if "memory dropped: per-item cost" in r]
    assert len(dropped) == 1 and reasons.index(dropped[0]) == w.workers  # right after the first wave
    assert ("x above" if factor > 1 else "x below") in dropped[0]
    oracle = best_static(w, oracle_sweep(w), d)
    assert run.makespan_s / oracle.makespan_s < 1.25  # the bar for a 10x costlier workload


def test_an_overhead_far_off_the_memory_drops_it():
    c = Controller(100_000, 2, learned=MEMORY)
    d = c.decide(100_000, 0)
    c.submitted(d)
    work = d.batch_size * MEMORY.per_item_s  # the item cost agrees, the task took 1 s more
    c.observe(BatchObservation(d.batch_size, d.batch_size, 0.0, work + 1.0, work, d.batch_size, 0))
    nxt = c.decide(100_000 - d.batch_size, 0)
    assert nxt.reason.startswith("memory dropped: the task's cost beyond its work 1e+03 ms")
    assert c.overhead_s == pytest.approx(1.0)  # the observation, not the memory


def test_a_cancelled_decision_keeps_the_memory_note_for_the_next():
    c = Controller(100_000, 2, learned=MEMORY)
    d = c.decide(100_000, 0)
    c.submitted(d)
    work = d.batch_size * MEMORY.per_item_s * 10
    c.observe(BatchObservation(d.batch_size, d.batch_size, 0.0, work + 0.02, work, d.batch_size, 0))
    cancelled = c.decide(50_000, 0)
    c.cancel(cancelled)
    assert c.decide(50_000, 0).reason == cancelled.reason


def test_a_memory_far_below_one_wave_grows_to_a_whole_wave_of_the_rest():
    """Cheap items whose plan is one wave of 100,000 per thread, a memory of 5,000 (learned on
    fewer items, or under a max_batch_size): the rest, not yet submitted, goes out as one
    whole wave behind the small first one, not as 5,000-item tasks to the end."""
    w = fine(mean_cost=constant_cost(2e-6))
    d = draw(w)
    small = Learned(per_item_s=2e-6, item_cv=0.3, overhead_s=0.02, transfer_s=0.0, batch_size=5000,
                    worker_threads=2, items=10_000)
    run = simulate(w, Controller(w.items, w.workers, learned=small), d)
    assert run.sizes[:2] == [5000, 5000] and run.tasks <= 6
    grown = run.decisions[2].decision.reason
    assert "memory kept" in grown and "items not yet submitted as one whole wave of 2" in grown
    assert run.makespan_s / best_static(w, oracle_sweep(w), d).makespan_s < 1.25


def test_a_capped_run_remembers_the_size_its_work_asked_for():
    w = fine()
    d = draw(w)
    capped = cold_controller(w, d, max_batch_size=500)
    simulate(w, capped, d)
    free = cold_controller(w, d)
    simulate(w, free, d)
    assert capped.learned().batch_size > 500
    assert capped.learned().batch_size == pytest.approx(free.learned().batch_size, rel=0.25)


def test_local_memory_lives_where_harness_memory_dir_says(tmp_path, monkeypatch):
    """memory="local" keeps its files in HARNESS_MEMORY_DIR when set (a shared volume; each test
    session's own folder), and reads them back from there."""
    from harness.runtime import learned_store

    learned = Learned(1e-3, 0.1, 0.02, 1e-5, 500, 2, 20_000)
    monkeypatch.setenv(learned_store.MEMORY_DIR_ENV, str(tmp_path))
    learned_store.save("local", "adaptive-map-f-0123456789abcdef", learned)
    assert json.loads((tmp_path / "adaptive-map-f-0123456789abcdef.json").read_text()) == learned.to_dict()
    assert learned_store.load("local", "adaptive-map-f-0123456789abcdef") == learned
