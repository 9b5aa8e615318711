"""`adaptive_map(fn, items)`: a user's function over their items inside their own Prefect flow,
in batches the adaptive controller sizes as the run goes (docs/api.md).

The same mechanism as the `adaptive` strategy (harness.strategies.window) and the same policy
(harness.policy.controller); only what a batch runs differs: `fn` applied to each item inside one
Prefect task, with the work of each call timed so the controller tells work from overhead.

An `async def` fn runs its batch's items concurrently on an event loop inside the task
(harness.work.async_items), at a limit harness.policy.concurrency chooses batch by batch: this
module owns that policy, asking it for each batch's limit as it submits and telling it each
batch's latency and errors as it folds the result in. `adaptive_map_async` is the awaitable
form for async flows: the same map, run in a worker thread so the flow's event loop stays free.
"""

from __future__ import annotations

import asyncio
import os
import time
import traceback
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from harness.errors import RunError, SpecError

ON_FAILURE = ("raise", "return")
# Failed items an ItemsFailed message lists (all of them are on its `failures`).
FAILURES_SHOWN = 5


@dataclass(frozen=True)
class Failed:
    """An item whose every attempt raised: its place in the items, the last exception, and
    that exception's traceback as text (a traceback does not travel from a worker)."""

    index: int
    error: BaseException
    attempts: int = 1
    traceback: str = field(default="", repr=False, compare=False)

    def __str__(self) -> str:
        return f"item {self.index}: {type(self.error).__name__}: {self.error}"


class ItemsFailed(RunError):
    """Some items failed (`on_failure="raise"`): `failures` lists them in item order, `results`
    is the whole result list with a `Failed` in place of each."""

    def __init__(self, failures: list[Failed], results: list[Any]) -> None:
        self.failures = failures
        self.results = results
        shown = "; ".join(str(f) for f in failures[:FAILURES_SHOWN])
        more = f"; and {len(failures) - FAILURES_SHOWN} more" if len(failures) > FAILURES_SHOWN else ""
        super().__init__(f"{len(failures)} of {len(results)} items failed: {shown}{more}")


class RemoteError(Exception):
    """Stands in for an item's exception that could not be pickled back from the worker."""


class _Indexed(NamedTuple):
    index: int  # the item's place in the caller's items (the window's batches carry `.index`)
    value: Any


class _Outcome(NamedTuple):
    index: int
    ok: bool
    value: Any  # fn's result, or a Failed
    compute_s: float


class _MapBatch(NamedTuple):
    """One batch's outcomes, and the time spent inside `fn` (the window's batch-result shape):
    for an async fn the batch's wall time inside the task (its items overlapped), with the limit
    it ran at, the mean latency of one attempt, and the attempts made and raised."""

    outcomes: tuple[_Outcome, ...]
    compute_s: float
    concurrency: int | None = None  # None: a plain function, one item at a time
    latency_s: float | None = None
    attempts: int = 0
    errors: int = 0


def _portable(exc: BaseException) -> BaseException:
    """`exc` if it pickles (it must travel back from a worker), else a RemoteError naming it."""
    import cloudpickle

    try:
        cloudpickle.dumps(exc)
        return exc
    except Exception:  # noqa: BLE001  (any pickling failure: keep its type name and message)
        return RemoteError(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}")


def apply_batch(fn: Callable[[Any], Any], batch: list[_Indexed], retries: int) -> _MapBatch:
    """`fn` on each item, each retried up to `retries` more times when it raises; wall time
    around each call is the work (user code may wait or release the GIL)."""
    outcomes = []
    compute = 0.0
    for item in batch:
        for attempt in range(1, retries + 2):
            started = time.perf_counter()
            try:
                value, ok = fn(item.value), True
            except Exception as exc:  # noqa: BLE001  (an item's failure is its outcome)
                value, ok = Failed(item.index, _portable(exc), attempt, traceback.format_exc()), False
            spent = time.perf_counter() - started
            compute += spent
            if ok:
                break
        outcomes.append(_Outcome(item.index, ok, value, spent))
    return _MapBatch(tuple(outcomes), compute)


def apply_batch_async(fn: Callable[[Any], Any], batch: list[_Indexed], retries: int, limit: int) -> _MapBatch:
    """`apply_batch` for an `async def` fn: the items run concurrently, at most `limit` at once,
    each retried as there; compute_s is the batch's wall time (the items overlapped)."""
    from harness.work.async_items import run_async_batch

    ran = run_async_batch(fn, [item.value for item in batch], limit, retries)
    outcomes = tuple(
        _Outcome(item.index, True, run.value, run.spent_s) if run.ok else
        _Outcome(item.index, False, Failed(item.index, _portable(run.value), run.attempts, run.traceback), run.spent_s)
        for item, run in zip(batch, ran.items))
    return _MapBatch(outcomes, ran.wall_s, ran.limit, ran.latency_s, ran.attempts, ran.errors)


def _run_batch(fn: Callable[[Any], Any], items: list[_Indexed], retries: int, limit: int | None) -> _MapBatch:
    """A batch as a task or the flow runs it: a plain fn item by item, an async one at `limit`."""
    return apply_batch(fn, items, retries) if limit is None else apply_batch_async(fn, items, retries, limit)


def _map_batch(batch: Any, label: str) -> Any:
    """The Prefect task: `batch` is an Opaque of (fn, items, retries, limit); `label` names the run."""
    from harness.strategies.tasks import Opaque

    fn, items, retries, limit = batch.value
    return Opaque(_run_batch(fn, items, retries, limit))


def _task() -> Any:
    from prefect import task
    from prefect.cache_policies import NONE

    global _MAP_TASK
    if _MAP_TASK is None:
        # A distinct name from its function's, so Dask workers unpickle the function by reference.
        _MAP_TASK = task(_map_batch, name="adaptive_map", cache_policy=NONE, task_run_name="{label}")
    return _MAP_TASK


_MAP_TASK: Any = None


def _worker_threads(explicit: int | None) -> int:
    """Threads the current flow's task runner runs tasks on (the controller's W)."""
    if explicit is not None:
        return explicit
    from prefect.context import FlowRunContext

    from prefect_dask import DaskTaskRunner

    runner = FlowRunContext.get().task_runner
    if isinstance(runner, DaskTaskRunner):
        threads = sum(runner.client.nthreads().values())  # the client its first submit would open
        if threads:
            return threads
    cores = os.cpu_count() or 1
    # ThreadPoolTaskRunner: unbounded by default, but Python work beyond the cores only queues.
    max_workers = getattr(runner, "_max_workers", None)
    return max(1, min(max_workers, cores)) if isinstance(max_workers, int) else cores


def _runner_kind() -> str:
    """The current flow's task runner class (part of a memory's key)."""
    from prefect.context import FlowRunContext

    return type(FlowRunContext.get().task_runner).__name__


def _check_call(max_batch_size: int | None, retries: int, on_failure: str, workers: int | None,
                max_concurrency: int | None = None, is_async: bool = False) -> None:
    """SpecError for an argument out of range, or a call from outside a flow."""
    from prefect.context import FlowRunContext

    if on_failure not in ON_FAILURE:
        raise SpecError(f"adaptive_map on_failure: found {on_failure!r}, expected one of {', '.join(ON_FAILURE)}")
    if max_concurrency is not None and not is_async:
        raise SpecError(f"adaptive_map max_concurrency: found {max_concurrency!r} for a plain function, expected "
                        f"it only with an async def fn (a plain function runs one item at a time per task)")
    for name, value, low in (("max_batch_size", max_batch_size, 1), ("workers", workers, 1), ("retries", retries, 0),
                             ("max_concurrency", max_concurrency, 1)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
            raise SpecError(f"adaptive_map {name}: found {value!r}, expected an integer >= {low}")
    if FlowRunContext.get() is None:
        raise SpecError("adaptive_map: call it inside a Prefect flow (it submits Prefect tasks)")


def _len_or_none(items: Iterable[Any]) -> int | None:
    """The item count when `items` has a len(); None for a stream (a generator)."""
    try:
        return len(items)  # type: ignore[arg-type]
    except TypeError:
        return None


class _Collected:
    """The results as the window folds them in, by item index, and the failures among them."""

    def __init__(self) -> None:
        self.values: dict[int, Any] = {}
        self.failures: list[Failed] = []

    def fold(self, result: _MapBatch) -> None:
        for outcome in result.outcomes:
            if outcome.index in self.values:  # the window folds each batch once; say so if it did not
                raise RunError(f"adaptive_map: item {outcome.index} came back twice (a harness bug)")
            self.values[outcome.index] = outcome.value
            if not outcome.ok:
                self.failures.append(outcome.value)

    def in_order(self, items: int) -> list[Any]:
        """The results of items 0 .. items-1 in order (a RunError if any is missing)."""
        missing = [i for i in range(items) if i not in self.values]
        if missing or len(self.values) != items:
            raise RunError(f"adaptive_map lost items {missing[:FAILURES_SHOWN]} of {items} (a harness bug)")
        return [self.values[i] for i in range(items)]


class _Limits:
    """The concurrency limit of an async fn's batches: asked per batch, told per result
    (harness.policy.concurrency); None throughout for a plain function."""

    def __init__(self, is_async: bool, max_concurrency: int | None) -> None:
        from harness.policy.concurrency import ConcurrencyPolicy

        self.policy = ConcurrencyPolicy(max_concurrency) if is_async else None

    def limit_for(self, batch: list[_Indexed]) -> int | None:
        return None if self.policy is None else self.policy.limit_for(len(batch))

    def observe(self, result: _MapBatch) -> None:
        if self.policy is None or result.concurrency is None or result.latency_s is None:
            return
        from harness.policy.concurrency import ConcurrencySample

        self.policy.observe(ConcurrencySample(result.concurrency, len(result.outcomes), wall_s=result.compute_s,
                                              latency_s=result.latency_s, attempts=result.attempts,
                                              errors=result.errors))


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def adaptive_map(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    max_batch_size: int | None = None,
    inline: bool = False,
    retries: int = 0,
    on_failure: Literal["raise", "return"] = "raise",
    trace: list[dict[str, Any]] | None = None,
    workers: int | None = None,
    max_concurrency: int | None = None,
    memory: str | os.PathLike[str] | None = "local",
) -> list[Any]:
    """`[fn(x) for x in items]`, run as Prefect tasks over adaptive batches; call it in a flow.

    Works on whatever task runner the flow has (DaskTaskRunner, ThreadPoolTaskRunner). Items
    stream: `len(items)` is used when it exists, otherwise a generator is read ahead only for
    the batch being sent (the flow holds the tasks in flight and one batch, never the whole
    input), and its batches reach a list's sizes within a few waves. Results come back in
    item order. Each task run is named `<fn name>[first-last]` after the item indices it holds.

    - `max_batch_size`: no task gets more items than this (None: as the controller sees fit).
    - `inline`: may the flow process run items itself, while it would otherwise wait (the
      first task in flight, the last few items)? Default False: in a user's flow that
      process is often a small orchestrator, and `fn` may need what only the workers have
      (memory, libraries, data, a GPU); the harness's own runs measure it on (it saves
      about one task's overhead at the start and the tail), so turn it on when the flow
      process can run `fn`.
    - `retries`: further attempts of an item whose call raised, inside the same task.
    - `on_failure`: "raise" (default) runs every item, then raises one `ItemsFailed` naming
      the failed items (its `results` has a `Failed` in place of each); "return" returns
      the list with a `Failed(index, error, attempts)` in place of each failed item.
    - `trace`: a list to append one row per batch to, with the columns of trace.csv, as each
      batch's results come back.
    - `workers`: threads the task runner runs tasks on (default: read from the runner).
    - `max_concurrency`: for an `async def` fn (also behind functools.partial), the most items
      of one task that wait at once. A task runs its batch's items concurrently on an event loop
      of its own, at a limit chosen batch by batch (harness.policy.concurrency: it starts at 100,
      grows while throughput grows, backs off when latency climbs or errors appear), never above
      this nor the batch's size. The trace's `concurrency` column has each batch's limit.
    - `memory`: where what a run learned is kept for the next run of the same function on
      the same kind of runtime, which then starts at the learned batch size (no probe):
      "local" (default) a JSON file under the harness's cache folder, "prefect" a Prefect
      Variable on the flow's API (shared by runs on fresh infrastructure), a folder (a
      `Path`) for files there, or None (off). A memory that cannot be read or written is a
      cold start with a `MemoryWarning`, never an error (docs/api.md, "Memory across runs").

    In an async flow, `await adaptive_map_async(...)` instead: this call would block the
    flow's event loop until every item is done (it warns when called with a loop running).

    A task that fails as a whole (a worker lost) is re-run elsewhere, its items counted once;
    an item's exception never fails its task. Stock Prefect settings propagation applies
    unless the runtime opted into `lean` (harness.local_runtime).
    """
    from harness.policy.controller import Controller
    from harness.runtime import learned_store
    from harness.strategies.resilience import PathGuard
    from harness.strategies.tasks import Opaque
    from harness.strategies.window import run_window
    from harness.work.async_items import is_async_function

    is_async = is_async_function(fn)
    _check_call(max_batch_size, retries, on_failure, workers, max_concurrency, is_async)
    if (wrong := learned_store.check_location(memory)) is not None:
        raise SpecError(f"adaptive_map memory: {wrong}")
    if _loop_running():
        warnings.warn("adaptive_map blocks this thread's running event loop until every item is done; "
                      "in an async flow, use `await harness.adaptive_map_async(...)`", stacklevel=2)
    count = _len_or_none(items)
    threads = _worker_threads(workers)
    key = learned_store.memory_key(fn, _runner_kind(), threads) if memory is not None else ""
    learned = learned_store.load(memory, key)
    controllers: list[Controller] = []  # the one run_window builds, for what it learned
    label = getattr(fn, "__name__", None) or getattr(getattr(fn, "func", None), "__name__", type(fn).__name__)
    map_task = _task()
    collected = _Collected()
    limits = _Limits(is_async, max_concurrency)

    def controller(total: int) -> Controller:
        controllers.append(Controller(total, threads, max_batch_size=max_batch_size, allow_inline=inline,
                                      learned=learned))
        return controllers[-1]

    def submit(batch: list[_Indexed]) -> Any:
        return map_task.submit(Opaque((fn, batch, retries, limits.limit_for(batch))),
                               f"{label}[{batch[0].index}-{batch[-1].index}]")

    def fold(result: _MapBatch) -> None:
        limits.observe(result)
        collected.fold(result)

    run = run_window(
        (_Indexed(i, x) for i, x in enumerate(items)),
        count,
        controller=controller,
        guard=PathGuard(("batched", "inline") if inline else ("batched",), seed=0, fault_rate=0.0,
                        fault_path="batched"),
        submit=submit,
        run_inline=lambda batch: _run_batch(fn, batch, retries, limits.limit_for(batch)),
        fold=fold,
        allow_inline=inline,
        on_row=trace.append if trace is not None else None,
    )
    results = collected.in_order(run.items)
    # Kept after a run whose every item succeeded: failed items may cost nothing like the rest.
    if controllers and not collected.failures and (new := controllers[-1].learned()) is not None:
        learned_store.save(memory, key, new)
    if collected.failures and on_failure == "raise":
        raise ItemsFailed(sorted(collected.failures, key=lambda f: f.index), results)
    return results


async def adaptive_map_async(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    max_batch_size: int | None = None,
    inline: bool = False,
    retries: int = 0,
    on_failure: Literal["raise", "return"] = "raise",
    trace: list[dict[str, Any]] | None = None,
    workers: int | None = None,
    max_concurrency: int | None = None,
    memory: str | os.PathLike[str] | None = "local",
) -> list[Any]:
    """`await adaptive_map_async(fn, items, ...)`: `adaptive_map` for an async flow, the same
    options and results, without blocking the flow's event loop.

    The map (submitting batches, waiting for them, folding results) runs in a worker thread
    with the flow's context (asyncio.to_thread copies it), so the flow's other coroutines run
    meanwhile; `fn` may be a plain or an `async def` function either way. Items given as a
    generator are read in that thread.
    """
    return await asyncio.to_thread(adaptive_map, fn, items, max_batch_size=max_batch_size, inline=inline,
                                   retries=retries, on_failure=on_failure, trace=trace, workers=workers,
                                   max_concurrency=max_concurrency, memory=memory)
