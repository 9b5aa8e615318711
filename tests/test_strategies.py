"""The strategy registry as pure code: names in and out, sampling budgets, that a new kind is
one module plus one registry line, and the fixed strategies' window in tasks and bytes (no
Prefect, no cluster)."""

from __future__ import annotations

import pandas as pd
import pytest

from harness.analysis import stats
from harness.errors import SpecError
from harness.strategies import Stage, StageResult, base, execute
from harness.workload import vocabulary
from harness.workload.vocabulary import DASK_TASK_BUDGET, PREFECT_TASK_BUDGET, REGISTRY, STATIC, Strategy, StrategyKind
from harness.work.outcomes import Tally


@pytest.mark.parametrize("text", ["per_item", "static:64", "adaptive", "raw_dask:1", "joblib_auto"])
def test_a_name_parses_to_a_strategy_that_prints_as_the_same_name(text):
    assert str(Strategy.parse(text)) == text


def test_the_size_must_match_the_kind():
    with pytest.raises(ValueError, match="static:N"):
        Strategy("static")
    with pytest.raises(ValueError, match="per_item"):
        Strategy("per_item", 4)
    with pytest.raises(ValueError, match="unknown strategy kind 'fastest'"):
        Strategy("fastest")


@pytest.mark.parametrize(("text", "items", "measured"), [
    ("per_item", 10**6, PREFECT_TASK_BUDGET),
    ("static:64", 10**6, PREFECT_TASK_BUDGET * 64),
    ("raw_dask:8", 10**6, DASK_TASK_BUDGET * 8),
    ("static:64", 1_000, 1_000),  # under the budget: every item
    ("adaptive", 10**6, 10**6),  # chooses its own structure: always every item
    ("joblib_auto", 10**6, 10**6),
])
def test_sample_size_keeps_each_kind_within_its_task_budget(text, items, measured):
    assert Strategy.parse(text).sample_size(items) == measured


def test_only_the_prefect_kinds_need_a_flow():
    assert {k for k in REGISTRY.names if REGISTRY[k].needs_flow} == {"per_item", "static", "adaptive", "adaptive_warm"}


def test_best_of_a_kind_ignores_other_kinds_and_unregistered_names():
    table = pd.DataFrame({"wall_s": [3.0, 2.0, 1.0, 0.5]}, index=["static:10", "static:100", "raw_dask:10", "static-ish"])
    assert stats.best_of(table, STATIC) == "static:100"


def execute(strategy: Strategy, stage: Stage) -> StageResult:
    """The whole of a new kind's module (here this test module): count the items, no tasks."""
    tally = Tally()
    for _ in stage.iter_items():
        tally.items_ok += 1
    return StageResult(tally, tasks=0, wall_s=0.0)


def test_a_new_kind_is_one_module_and_one_registry_line(monkeypatch):
    registry = vocabulary.Registry()
    monkeypatch.setattr(vocabulary, "REGISTRY", registry)
    registry.add(StrategyKind("counting", __name__, sized=True))  # the registry line

    strategy = Strategy.parse("counting:3", "--strategies")
    assert strategy == Strategy("counting", 3) and not strategy.needs_flow
    assert registry.forms == "counting:N (N an integer >= 1)"
    with pytest.raises(SpecError, match=r"--strategies: found 'countng' \(unknown strategy 'countng'; did you mean 'counting'\?\)"):
        Strategy.parse("countng", "--strategies")

    class FakeWorkload:
        def items(self):
            return iter(range(7))

        def __len__(self):
            return 7

    result = execute(strategy, Stage(FakeWorkload(), None, "cpu", 0, 1))  # type: ignore[arg-type]
    assert result.tally.items == 7


# ---------------------------------------------------------------- the window in tasks and bytes

MiB = 2**20


def test_small_payloads_leave_the_window_at_its_task_count():
    window = base.submit_window(2, 64, 64)
    assert (window.tasks, window.limit) == (base.SUBMIT_WINDOW_PER_THREAD * 2, "tasks")
    assert base.submit_window(3, 1, 0).tasks == base.SUBMIT_WINDOW_PER_THREAD * 3  # no payload at all
    assert base.window_notes(window) == []


def test_a_large_payload_narrows_the_window_to_the_byte_budget():
    window = base.submit_window(2, 4, 4 * MiB)  # 16 MiB a batch: 8 of them in the 128 MiB budget
    assert window.limit == "bytes" and window.batch_bytes == 16 * MiB
    assert window.tasks == base.IN_FLIGHT_MAX_BYTES // (16 * MiB) < base.SUBMIT_WINDOW_PER_THREAD * 2
    assert window.payload_bytes <= base.IN_FLIGHT_MAX_BYTES
    assert base.window_notes(window) == [f"window bounded by payload bytes: {window.describe()}"]


@pytest.mark.parametrize(("threads", "batch_size", "payload"), [
    (2, 1024, 64 * 1024),  # 64 MiB a batch: the budget holds 2, fewer than 2 threads + 1
    (4, 8, 16 * MiB),  # 128 MiB a batch: the budget holds 1
    (1, 16, 16 * MiB),  # one batch alone (256 MiB) is over the budget
])
def test_a_batch_too_big_for_the_budget_still_keeps_every_thread_busy_plus_one_queued(threads, batch_size, payload):
    window = base.submit_window(threads, batch_size, payload)
    assert (window.tasks, window.limit) == (threads + 1, "least")
    assert window.payload_bytes > base.IN_FLIGHT_MAX_BYTES
    assert f"{threads + 1} tasks in flight, the least that keeps {threads} worker threads busy" in window.describe()


def test_the_window_stays_between_its_least_and_its_task_count_and_within_the_budget_unless_least():
    for threads in (1, 2, 3, 8, 64):
        for batch_size in (1, 7, 64, 4096):
            for payload in (0, 1, 256, 64 * 1024, MiB, 16 * MiB):
                window = base.submit_window(threads, batch_size, payload)
                assert threads + 1 <= window.tasks <= base.SUBMIT_WINDOW_PER_THREAD * threads
                assert window.payload_bytes <= base.IN_FLIGHT_MAX_BYTES or window.limit == "least"
                # the byte bound narrows the window only as far as it must
                assert window.limit != "bytes" or (window.tasks + 1) * window.batch_bytes > base.IN_FLIGHT_MAX_BYTES


@pytest.mark.parametrize("args", [(0, 1, 0), (1, 0, 0), (1, 1, -1)])
def test_a_window_of_nothing_is_a_bug(args):
    with pytest.raises(ValueError):
        base.submit_window(*args)


# ---------------------------------------------------------------- seen late, on a real flow


@pytest.mark.cluster
def test_windowed_says_how_long_the_flow_was_away_from_tasks_done_before_it_looked(runtime):
    """A task the flow waited for was seen when it finished (away 0); one already done when the
    flow looked, after it was busy for longer than SEEN_LATE_AFTER_S, is seen late and the
    overhead fit leaves it out."""
    import time

    from prefect import flow, task
    from prefect.task_runners import ThreadPoolTaskRunner

    from harness.strategies.tasks import windowed
    from harness.strategies.timings import SEEN_LATE_AFTER_S, TaskTimings

    @task
    def nap(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def seen(task_s: float, busy_s: float) -> tuple[list[float], list[bool]]:
        timings, away = TaskTimings(), []
        submissions = (nap.submit(task_s) for _ in range(4))

        def tracked():
            for future in submissions:
                timings.submitted(id(future), 1)
                yield future

        for future, away_s in windowed(tracked(), window=1):
            future.result()
            timings.finished(id(future), 0.0, away_s=away_s)
            away.append(away_s)
            time.sleep(busy_s)  # the flow folding a result: nothing is looked at meanwhile
        return away, [row["seen_late"] for row in timings.records()]

    away, late = seen(0.3, 0.0)  # each task takes longer than the flow: it waits for each
    assert away == [0.0] * 4 and late == [False] * 4
    # window 1: the next task is submitted only after the flow looked, so with the flow busy
    # longer than a task, every later task is done before the flow looks again
    away, late = seen(0.0, 0.3)
    assert all(a >= 0.3 > SEEN_LATE_AFTER_S for a in away[1:]) and late[1:] == [True] * 3
