"""`async def` functions in `adaptive_map`, `adaptive_map_async` and `harness.benchmark`: the
batch runner directly, then real flows on the session's Prefect API with a ThreadPoolTaskRunner
and a DaskTaskRunner on a real LocalCluster. Items await a few ms each; tens of them per test."""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections import defaultdict

import pytest

import harness.policy.concurrency  # noqa: F401  (see below)
import harness.strategies.window  # noqa: F401  imported here, not first inside a flow's thread:
# pytest's assertion rewriting parses a module as it is first imported, and Python 3.11's
# ast.parse can fail when another thread parses at once ("SystemError: AST constructor recursion
# depth mismatch", seen once here). adaptive_map imports these on its first call.
from harness import Failed, ItemsFailed, adaptive_map, adaptive_map_async
from harness.api.adaptive_map import _Indexed, apply_batch_async
from harness.errors import SpecError
from harness.work.async_items import is_async_function, run_async_batch

WAIT_S = 0.003  # each item's simulated I/O

# Items in flight per event loop (one per task running a batch): a task's own count, even where
# two tasks run at once in one process (the thread-pool runner).
_in_flight: dict[int, int] = defaultdict(int)


async def counted(x: int, wait_s: float = WAIT_S) -> tuple[int, int]:
    """(x squared, the items of this task in flight when it started, itself included)."""
    loop = id(asyncio.get_running_loop())
    _in_flight[loop] += 1
    seen = _in_flight[loop]
    try:
        await asyncio.sleep(wait_s)
    finally:
        _in_flight[loop] -= 1
    return x * x, seen


_attempts: dict[int, int] = defaultdict(int)  # per process: a Dask worker retries in its own


async def flaky(x: int) -> int:
    """Item x % 7 == 3 always raises; x % 5 == 0 raises on its first attempt only."""
    await asyncio.sleep(0.001)
    _attempts[x] += 1
    if x % 7 == 3:
        raise ValueError(f"bad item {x}")
    if x % 5 == 0 and _attempts[x] == 1:
        raise ConnectionError(f"try again {x}")
    return x + 1


# ---------------------------------------------------------------- the batch runner


def test_a_batch_runs_at_most_limit_at_once_in_item_order_with_retries():
    assert is_async_function(counted) and is_async_function(functools.partial(counted, wait_s=0.001))
    assert not is_async_function(abs)
    ran = run_async_batch(counted, list(range(30)), limit=4, retries=0)
    assert [run.value[0] for run in ran.items] == [x * x for x in range(30)]
    assert max(run.value[1] for run in ran.items) == 4 and ran.limit == 4
    # 30 waits of 3 ms, 4 at a time: the batch's wall time is well under their sum (they overlapped)
    assert ran.wall_s < sum(run.spent_s for run in ran.items) and ran.attempts == 30 and ran.errors == 0

    _attempts.clear()
    batch = apply_batch_async(flaky, [_Indexed(i, x) for i, x in enumerate(range(20))], retries=1, limit=8)
    failed = [o.value for o in batch.outcomes if not o.ok]
    assert [o.index for o in batch.outcomes] == list(range(20))
    assert [f.index for f in failed] == [3, 10, 17] and all(f.attempts == 2 for f in failed)
    assert all(isinstance(f, Failed) and "bad item" in str(f.error) and "ValueError" in f.traceback for f in failed)
    assert [o.value for o in batch.outcomes if o.ok] == [x + 1 for x in range(20) if x % 7 != 3]
    # errors: 3 items failing twice, 4 items (0, 5, 15 and 10, which also fails) raising once more
    assert batch.concurrency == 8 and batch.attempts == 20 + 3 + 3 and batch.errors == 3 * 2 + 3


def test_a_batch_run_where_an_event_loop_runs_gets_a_loop_of_its_own():
    async def flow_like() -> list[int]:  # an async flow's thread: its loop must not be re-entered
        ran = run_async_batch(counted, [1, 2, 3], limit=2, retries=0)
        return [run.value[0] for run in ran.items]

    assert asyncio.run(flow_like()) == [1, 4, 9]


@pytest.mark.cluster
def test_max_concurrency_is_refused_for_a_plain_function_and_when_out_of_range(runtime):
    from prefect import flow

    @flow
    def mapped(fn, limit):
        return adaptive_map(fn, [1, 2], max_concurrency=limit)

    with pytest.raises(SpecError, match="max_concurrency.*plain function"):
        mapped(abs, 4)
    with pytest.raises(SpecError, match="max_concurrency: found 0"):
        mapped(counted, 0)


# ---------------------------------------------------------------- real flows


def _thread_flow(**options):
    from prefect import flow
    from prefect.task_runners import ThreadPoolTaskRunner

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def mapped(fn, items):
        return adaptive_map(fn, items, **options)

    return mapped


@pytest.mark.cluster
def test_async_items_come_back_in_order_never_above_max_concurrency(runtime):
    items = list(range(80))
    trace: list[dict] = []
    results = _thread_flow(trace=trace, max_concurrency=5)(counted, items)
    assert [square for square, _ in results] == [x * x for x in items]
    in_flight = [seen for _, seen in results]
    assert max(in_flight) <= 5 and max(in_flight) > 1  # concurrent, and within the cap
    assert all(row["concurrency"] is not None and 1 <= row["concurrency"] <= min(5, row["items"]) for row in trace)
    assert sum(row["items"] for row in trace) == len(items)

    plain: list[dict] = []
    _thread_flow(trace=plain)(abs, items)
    assert plain and all(row["concurrency"] is None for row in plain)  # empty for sync work


@pytest.mark.cluster
def test_async_failures_and_retries_as_for_plain_functions(runtime):
    from prefect import flow

    items = list(range(60))

    @flow(task_runner=runtime.task_runner())
    def mapped(on_failure):
        try:
            return adaptive_map(flaky, items, retries=1, on_failure=on_failure)
        except ItemsFailed as exc:
            return exc

    returned = mapped("return")
    assert [r.index for r in returned if isinstance(r, Failed)] == [x for x in items if x % 7 == 3]
    assert all(r.attempts == 2 and "bad item" in str(r.error) for r in returned if isinstance(r, Failed))
    # x % 5 == 0 raised once each and its retry succeeded
    assert [r for r in returned if not isinstance(r, Failed)] == [x + 1 for x in items if x % 7 != 3]
    raised = mapped("raise")
    assert isinstance(raised, ItemsFailed) and str(raised).startswith("9 of 60 items failed: item 3: ValueError")


# The event loop of an async flow may be held this long at most while adaptive_map_async waits:
# a bound on the loop, not on the work (GIL hand-offs are 5 ms; a loaded 2-core machine adds some).
LOOP_GAP_MAX_S = 0.100
TICK_S = 0.002


@pytest.mark.cluster
def test_an_async_flow_awaits_the_map_without_blocking_its_event_loop(runtime):
    from prefect import flow

    items = list(range(60))

    @flow(task_runner=runtime.task_runner())
    async def mapped():
        gaps: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(TICK_S)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        ticking = asyncio.create_task(ticker())
        trace: list[dict] = []
        try:
            results = await adaptive_map_async(functools.partial(counted, wait_s=0.005), items, trace=trace,
                                               max_concurrency=8)
        finally:
            done.set()
            await ticking
        return results, gaps, trace

    results, gaps, trace = asyncio.run(mapped())
    assert [square for square, _ in results] == [x * x for x in items]
    assert max(seen for _, seen in results) <= 8
    assert len(gaps) > 10 and max(gaps) < LOOP_GAP_MAX_S, f"the flow's loop was held {max(gaps) * 1e3:.0f} ms"
    assert trace and all(row["concurrency"] for row in trace)


async def halved(x: int) -> float:
    """An async [task] function for harness.benchmark (module level: the workers import it)."""
    await asyncio.sleep(0.002)
    return x / 2


@pytest.mark.cluster
def test_an_async_task_through_benchmark_agrees_across_strategies(runtime, tmp_path):
    from harness import benchmark

    items = list(range(40))
    result = benchmark(halved, items, strategies=["per_item", "static:8", "adaptive"], repeats=1,
                       out=tmp_path / "results", address=runtime.scheduler_address)
    runs = result.runs
    assert set(runs["strategy"]) == {"per_item", "static:8", "adaptive"}
    assert (runs["items_ok"] == len(items)).all() and (runs["items_failed"] == 0).all()
    assert runs["checksum"].astype(str).nunique() == 1  # the same results whatever the strategy
    import pandas as pd

    trace = pd.read_csv(result.folder / "trace.csv")
    assert "concurrency" in trace.columns and trace["concurrency"].notna().all()
    assert os.path.isfile(result.folder / "report.md")


async def recorded(item: tuple[int, str]) -> int:
    """An async [task] function for harness.benchmark that notes how many items of its own task
    were in flight as it started (itself included), one line in a file per process under the
    folder its item names: it runs in Dask worker processes, out of this process's sight."""
    x, folder = item
    loop = id(asyncio.get_running_loop())
    _in_flight[loop] += 1
    try:
        with open(os.path.join(folder, f"in-flight-{os.getpid()}.txt"), "a") as file:
            file.write(f"{_in_flight[loop]}\n")
        await asyncio.sleep(WAIT_S)
    finally:
        _in_flight[loop] -= 1
    return x


@pytest.mark.cluster
def test_benchmark_max_concurrency_caps_every_strategy(runtime, tmp_path):
    """static:20 would run its 20 items at once and adaptive's policy starts at 100: with
    max_concurrency=3 no task of either ever has more than 3 waiting."""
    from harness import benchmark

    notes = tmp_path / "in-flight"
    notes.mkdir()
    items = [(i, str(notes)) for i in range(40)]
    result = benchmark(recorded, items, strategies=["static:20", "adaptive"], repeats=1, max_concurrency=3,
                       out=tmp_path / "results", address=runtime.scheduler_address)
    assert (result.runs["items_ok"] == len(items)).all() and set(result.runs["strategy"]) == {"static:20", "adaptive"}
    seen = [int(line) for path in notes.glob("*.txt") for line in path.read_text().split()]
    assert len(seen) >= 2 * len(items)  # each item under both strategies (and the warm-up's)
    assert max(seen) == 3  # concurrent, and never above the cap
    import pandas as pd

    trace = pd.read_csv(result.folder / "trace.csv")  # adaptive's batches: the limit each ran at
    assert trace["concurrency"].notna().all() and trace["concurrency"].max() <= 3
