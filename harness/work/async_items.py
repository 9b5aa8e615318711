"""An `async def` function over a batch of items inside one task: the items run concurrently on
an event loop of the task's own, at most `limit` at once, each retried as a plain function's
items are, the results in item order.

Runs on Dask worker threads and in Prefect's thread-pool tasks, which have no running event
loop: the batch gets a fresh one (`asyncio.run`). Where the calling thread already runs a loop
(an async flow running a batch itself), the batch runs on a loop in a thread of its own, so it
never re-enters or blocks that loop. This module imports neither Prefect nor Dask.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any


def is_async_function(fn: Any) -> bool:
    """Whether calling `fn` gives a coroutine: an `async def` function, also behind
    functools.partial, or an object whose `__call__` is one."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


@dataclass(frozen=True)
class ItemRun:
    """One item's last attempt: its result or exception, attempts made, time in its attempts."""

    ok: bool
    value: Any  # the result, or the last exception
    attempts: int
    spent_s: float  # the attempts' time, from each start (not the wait for a slot)
    traceback: str = ""


@dataclass(frozen=True)
class AsyncBatch:
    """A batch's items in order, its wall time (the items overlapped), the limit it ran at, the
    mean latency of one attempt, and the attempts made and raised (the concurrency policy's view)."""

    items: tuple[ItemRun, ...]
    wall_s: float
    limit: int
    latency_s: float
    attempts: int
    errors: int


async def _run_items(fn: Callable[[Any], Awaitable[Any]], values: Sequence[Any], limit: int,
                     retries: int) -> tuple[list[ItemRun | None], list[float]]:
    """`limit` workers take items in order from one shared iterator: at most `limit` calls wait
    at once, and only `limit` asyncio tasks exist whatever the batch's size."""
    runs: list[ItemRun | None] = [None] * len(values)
    latencies: list[float] = []
    pending = iter(enumerate(values))

    async def worker() -> None:
        for i, value in pending:
            spent = 0.0
            for attempt in range(1, retries + 2):
                started = time.perf_counter()
                try:
                    result = await fn(value)
                except Exception as exc:  # noqa: BLE001  (an item's failure is its outcome)
                    took = time.perf_counter() - started
                    spent += took
                    latencies.append(took)
                    runs[i] = ItemRun(False, exc, attempt, spent, traceback.format_exc())
                    continue
                took = time.perf_counter() - started
                spent += took
                latencies.append(took)
                runs[i] = ItemRun(True, result, attempt, spent)
                break

    await asyncio.gather(*(worker() for _ in range(min(limit, len(values)))))
    return runs, latencies


def run_async_batch(fn: Callable[[Any], Awaitable[Any]], values: Sequence[Any], limit: int,
                    retries: int) -> AsyncBatch:
    """`fn` on each of `values`, at most `limit` at once, each retried up to `retries` more times."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    started = time.perf_counter()
    runs, latencies = run_coroutine(lambda: _run_items(fn, values, limit, retries))
    wall = time.perf_counter() - started
    items = tuple(run for run in runs if run is not None)
    errors = sum(run.attempts - (1 if run.ok else 0) for run in items)
    return AsyncBatch(items, wall, min(limit, max(1, len(values))),
                      sum(latencies) / len(latencies) if latencies else 0.0, len(latencies), errors)


def run_coroutine(make: Callable[[], Awaitable[Any]]) -> Any:
    """Run the coroutine `make()` gives to completion from synchronous code: on a fresh event loop
    in this thread, or, when this thread already runs one, in a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_awaited(make))
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="harness-async-batch") as pool:
        return pool.submit(lambda: asyncio.run(_awaited(make))).result()


async def _awaited(make: Callable[[], Awaitable[Any]]) -> Any:
    return await make()

