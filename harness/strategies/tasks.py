"""The Prefect tasks the Prefect strategies submit (per_item, static:N, adaptive), and `Opaque`,
the wrapper their batches travel in."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prefect import task
from prefect.cache_policies import NONE
from prefect.futures import PrefectFuture, as_completed

from harness.strategies.timings import is_done
from harness.work.faults import TransientFault
from harness.work.kernels import run_batch_folded, run_item
from harness.work.synthetic import Item


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

    __slots__ = ("value", "_token")

    def __init__(self, value: Any) -> None:
        self.value = value
        self._token: str | None = None

    def __dask_tokenize__(self) -> str:
        # prefect-dask submits with Dask's default pure=True, so Dask hashes every argument for
        # the task's key; an object without this method is pickled whole just to be hashed
        # (~8 µs per item of a batch here, docs/runtime-notes.md "Where static:N loses to
        # raw_dask:N"). The key already holds a fresh task-run id, so it is never shared: a
        # fresh token per value changes nothing but the cost.
        if self._token is None:
            self._token = uuid.uuid4().hex
        return self._token

    def __getstate__(self) -> tuple[Any]:
        return (self.value,)  # a tuple: pickle skips __setstate__ for a falsy state

    def __setstate__(self, state: tuple[Any]) -> None:
        (self.value,) = state
        self._token = None


def _process_batch(items: Opaque, cost_kind: str, retries: int) -> Opaque:
    return Opaque(run_batch_folded(items.value, cost_kind, retries))


def item_run_name(parameters: dict[str, Any]) -> str:
    """A per_item task run's name in the Prefect UI: "item 17"."""
    return f"item {parameters['item'].index}"


def batch_run_name(parameters: dict[str, Any]) -> str:
    """A batch task run's name in the Prefect UI: its item range, "batch 0-4095", "batch 17" (a
    batch of a sample or of a pattern's stage may skip indices: then its size follows,
    "batch 3-997 (64 items)")."""
    items = parameters["items"].value
    first, last = items[0].index, items[-1].index
    if len(items) == 1:
        return f"batch {first}"
    return f"batch {first}-{last}" + ("" if last - first + 1 == len(items) else f" ({len(items)} items)")


# The task objects take other names than their functions so that Dask workers unpickle the
# functions by reference (a module attribute that is the Task itself cannot be).
# Task run names are resolved on the worker from the parameters already there: no extra API call.
process_item = task(_process_item, name="process_item", cache_policy=NONE, retry_condition_fn=_is_transient,
                    task_run_name=item_run_name)
process_batch = task(_process_batch, name="process_batch", cache_policy=NONE, task_run_name=batch_run_name)


def windowed(submissions: Iterable[PrefectFuture[Any]], window: int,
             on_in_flight: Callable[[int], None] | None = None) -> Iterator[tuple[PrefectFuture[Any], float]]:
    """Each future of `submissions` as it finishes, with at most `window` in flight, and how long
    the flow had been away when it looked: 0 when it waited for the task, else the time since it
    last looked, when it was already done (busy folding or submitting, the flow cannot tell when
    within that span it finished; TaskTimings.finished decides whether that makes it late).

    `submissions` is lazy (a generator calling `task.submit`): it is advanced once to fill each
    free place, so the flow process holds one window of tasks and their items, not the stage.
    Completion order comes from Prefect's `as_completed` over the futures in flight;
    `on_in_flight` hears how many are in flight after each fill (TaskTimings.in_flight).
    """
    source = iter(submissions)
    looked = time.perf_counter()  # the flow is away from the start: filling the window takes a while
    pending = set(itertools.islice(source, window))
    while pending:
        if on_in_flight is not None:
            on_in_flight(len(pending))
        away_s = time.perf_counter() - looked if any(is_done(future) for future in pending) else 0.0
        finished = next(as_completed(list(pending)))
        looked = time.perf_counter()
        pending.discard(finished)
        pending.update(itertools.islice(source, 1))
        yield finished, away_s

