"""How one mapping stage is executed: the strategies a run compares.

A strategy takes a stage (which items, what they cost, how often to retry) and returns a
`StageResult`: every item's outcome folded into a Tally, the tasks it created, its wall time.
Strategies are mechanism: they submit, time and observe; the only decisions at run time are
the adaptive controller's (harness.controller).

Prefect strategies (`per_item`, `static:N`, `adaptive`) must run inside a flow whose task runner
is a DaskTaskRunner; the reference strategies (`raw_dask:N`, `joblib_auto`) use the Dask client
alone, no Prefect.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from prefect import task
from prefect.cache_policies import NONE
from prefect.futures import as_completed

from harness.spec import StrategyName
from harness.workloads import (
    BatchResult,
    Item,
    PermanentFault,
    Tally,
    TransientFault,
    Workload,
    run_batch,
    run_item,
)

# Reference strategies keep at most this many Dask futures alive at once: enough to keep any
# reasonable cluster busy (Dask's own scheduler queues the rest), while the flow process's
# memory stays flat in the item count.
RAW_DASK_WINDOW_PER_THREAD = 8


@dataclass
class Stage:
    """One mapping stage: the items to run and how."""

    workload: Workload
    indices: Sequence[int] | None  # None: every item; else the sample to run (see run.py)
    cost_kind: str
    retries: int
    worker_threads: int
    client: Any = None  # distributed.Client, for the reference strategies
    on_progress: Callable[[int], None] | None = None  # called with items finished so far
    # Per-task overhead of this runtime measured at warm-up (not a property of the items):
    # the adaptive controller's stand-in until its own first task has finished.
    overhead_hint_s: float | None = None

    @property
    def items(self) -> int:
        return len(self.workload) if self.indices is None else len(self.indices)

    def iter_items(self) -> Iterator[Item]:
        if self.indices is None:
            return self.workload.items()
        return iter(self.workload.take(self.indices))

    def iter_batches(self, size: int) -> Iterator[list[Item]]:
        return self.workload.batches(size, self.indices)

    def progress(self, tally: Tally) -> None:
        if self.on_progress is not None:
            self.on_progress(tally.items)


@dataclass
class StageResult:
    tally: Tally
    tasks: int
    wall_s: float
    batch_sizes: Counter[int] = field(default_factory=Counter)
    trace: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    flow_runs: int = 0  # flow runs created (the pattern's flow and its subflows; harness.patterns)
    routes: str = ""  # what the pattern built at run time, "name=count;..." (harness.patterns)


def _is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only the retryable error; a permanent fault fails at once."""
    try:
        state.result()
    except TransientFault:
        return True
    except Exception:
        return False
    return False


def _process_item(item: Item, cost_kind: str) -> Any:
    from prefect.context import TaskRunContext

    attempt = TaskRunContext.get().task_run.run_count
    return run_item(item, cost_kind, attempt)


class Opaque:
    """One task parameter or result that Prefect treats as a leaf.

    Prefect walks every element of a task's parameters and return value looking for futures
    (`visit_collection`): ~90 ms per pass over 4,096 items here, several passes per task, which
    made static:4096 twice as slow as the same batches on raw Dask. Items hold no futures, so
    a batch travels as one opaque value (pickled the same way) and the walk costs nothing.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __getstate__(self) -> tuple[Any]:
        return (self.value,)  # a tuple: pickle skips __setstate__ for a falsy state

    def __setstate__(self, state: tuple[Any]) -> None:
        (self.value,) = state


def _process_batch(items: Opaque, cost_kind: str, retries: int) -> Opaque:
    return Opaque(run_batch(items.value, cost_kind, retries))


# The task objects take other names than their functions so that Dask workers unpickle the
# functions by reference (a module attribute that is the Task itself cannot be).
process_item = task(_process_item, name="process_item", cache_policy=NONE, retry_condition_fn=_is_transient)
process_batch = task(_process_batch, name="process_batch", cache_policy=NONE)


def _fold_item_future(future: Any, tally: Tally) -> None:
    outcome = future.result(raise_on_failure=False)
    if isinstance(outcome, (PermanentFault, TransientFault)):
        tally.add_failure(outcome.index, outcome.attempt, type(outcome).__name__)
    elif isinstance(outcome, BaseException):
        raise outcome
    else:
        tally.add(outcome)


def run_per_item(stage: Stage) -> StageResult:
    """One Prefect task per item, the plain dynamic-mapping idiom: `task.map(items)`."""
    from prefect import unmapped

    tally = Tally()
    started = time.perf_counter()
    futures = process_item.with_options(retries=stage.retries).map(
        list(stage.iter_items()), unmapped(stage.cost_kind)
    )
    for future in as_completed(futures):
        _fold_item_future(future, tally)
        stage.progress(tally)
    wall = time.perf_counter() - started
    return StageResult(tally, tasks=len(futures), wall_s=wall, batch_sizes=Counter({1: len(futures)}))


def run_static(stage: Stage, size: int) -> StageResult:
    """Fixed batches of `size` items, one Prefect task per batch, mapped all at once."""
    from prefect import unmapped

    tally = Tally()
    sizes: Counter[int] = Counter()
    started = time.perf_counter()
    batches = list(stage.iter_batches(size))
    for batch in batches:
        sizes[len(batch)] += 1
    futures = process_batch.map([Opaque(b) for b in batches], unmapped(stage.cost_kind), unmapped(stage.retries))
    del batches
    for future in as_completed(futures):
        tally.add_batch(future.result().value)
        stage.progress(tally)
    wall = time.perf_counter() - started
    return StageResult(tally, tasks=len(futures), wall_s=wall, batch_sizes=sizes)


def run_raw_dask(stage: Stage, size: int) -> StageResult:
    """The same batches through Dask alone (`client.submit`), no Prefect: the overhead floor."""
    from distributed import as_completed as dask_as_completed

    client = stage.client
    tally = Tally()
    sizes: Counter[int] = Counter()
    window = max(1, RAW_DASK_WINDOW_PER_THREAD * stage.worker_threads)
    batches = stage.iter_batches(size)
    tasks = 0
    started = time.perf_counter()

    def submit_next() -> Any:
        nonlocal tasks
        batch = next(batches, None)
        if batch is None:
            return None
        tasks += 1
        sizes[len(batch)] += 1
        # pure=False: identical batches (same items) must still run, as they would in Prefect.
        return client.submit(run_batch, batch, stage.cost_kind, stage.retries, pure=False)

    first = [f for f in (submit_next() for _ in range(window)) if f is not None]
    with client.as_current():  # distributed.as_completed finds its client through this
        pending = dask_as_completed(first)
        for future in pending:
            tally.add_batch(future.result())
            future.release()
            stage.progress(tally)
            nxt = submit_next()
            if nxt is not None:
                pending.add(nxt)
    wall = time.perf_counter() - started
    return StageResult(tally, tasks=tasks, wall_s=wall, batch_sizes=sizes)


def _joblib_item(item: Item, cost_kind: str, retries: int) -> BatchResult:
    return run_batch([item], cost_kind, retries)


def run_joblib_auto(stage: Stage) -> StageResult:
    """joblib's `Parallel(batch_size="auto")` on the same Dask cluster, no Prefect."""
    import joblib

    tally = Tally()
    started = time.perf_counter()
    with stage.client.as_current(), joblib.parallel_config(backend="dask"):
        parallel = joblib.Parallel(batch_size="auto", return_as="generator_unordered")
        for result in parallel(
            joblib.delayed(_joblib_item)(item, stage.cost_kind, stage.retries)
            for item in stage.iter_items()
        ):
            tally.add_batch(result)
            stage.progress(tally)
    wall = time.perf_counter() - started
    batches = parallel.n_dispatched_batches
    median = round(stage.items / batches) if batches else 0
    return StageResult(tally, tasks=batches, wall_s=wall, batch_sizes=Counter({median: batches}),
                       notes=["joblib reports batch counts, not sizes: batch size is items / batches"])


PREFECT_STRATEGIES = ("per_item", "static", "adaptive")


def execute(name: StrategyName, stage: Stage) -> StageResult:
    """Run `stage` with the named strategy (Prefect ones must be called inside a flow)."""
    if name.kind == "per_item":
        return run_per_item(stage)
    if name.kind == "static":
        return run_static(stage, name.batch_size or 1)
    if name.kind == "raw_dask":
        return run_raw_dask(stage, name.batch_size or 1)
    if name.kind == "joblib_auto":
        return run_joblib_auto(stage)
    if name.kind == "adaptive":
        from harness.adaptive import run_adaptive

        return run_adaptive(stage)
    raise ValueError(f"unknown strategy {name}")
