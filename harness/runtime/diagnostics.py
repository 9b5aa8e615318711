"""What Dask saw of one stage: the scheduler's task stream summed by action, and, on request,
its performance report (`distributed.performance_report`, an HTML file of the dashboard's
plots).

Both are read from the scheduler, so they see every task of the stage whichever client
submitted it: the reference strategies' (this runtime's client) and the Prefect strategies'
(the DaskTaskRunner's own client). The task stream is recorded by the scheduler anyway
(harness.runtime.cluster.TASK_STREAM_LENGTH bounds it); the stage's records are fetched once, at
its end, outside its wall time. The performance report is drawn at the end of the stage too,
also outside its wall time (README, "Dask's own diagnostics", says what it costs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The task stream's actions (distributed.diagnostics.task_stream) and the field each goes to;
# spilling to disk ("disk-read", "disk-write") and anything newer go to other_s.
ACTIONS = {"compute": "compute_s", "transfer": "transfer_s", "deserialize": "deserialize_s"}


@dataclass(frozen=True)
class DaskSeen:
    """One stage's tasks as the scheduler recorded them: worker-thread seconds per action."""

    tasks: int = 0
    compute_s: float = 0.0  # running the task's function: for a Prefect task, Prefect's task engine too
    transfer_s: float = 0.0  # fetching its inputs from other workers
    deserialize_s: float = 0.0  # unpickling its function and arguments on the worker
    other_s: float = 0.0  # spilling (disk-read, disk-write)


def summarize(records: Iterable[Mapping[str, Any]]) -> DaskSeen:
    """Sum the task stream's records (each with `startstops`: action, start, stop) by action."""
    totals = dict.fromkeys((*ACTIONS.values(), "other_s"), 0.0)
    tasks = 0
    for record in records:
        tasks += 1
        for part in record.get("startstops", ()):
            totals[ACTIONS.get(part["action"], "other_s")] += max(0.0, part["stop"] - part["start"])
    return DaskSeen(tasks=tasks, **totals)


@dataclass
class StageWatch:
    """Filled in when the stage ends: what Dask saw, and the performance report if one was asked."""

    seen: DaskSeen | None = None
    report: Path | None = None
    closing_s: float = 0.0  # reading the task stream and drawing the report, after the stage


@contextlib.contextmanager
def watch_stage(client: Any, report: Path | None = None) -> Iterator[StageWatch]:
    """Record the task stream of the tasks run inside the block (and with `report`, write the
    performance report there) on the scheduler `client` is connected to.

    Our client is made current only to open and to close the performance report, never during
    the stage: prefect-dask's DaskTaskRunner adopts whatever client `distributed.get_client()`
    finds, which would change how the measured flow runs.
    """
    import time

    from distributed import get_task_stream, performance_report

    watch = StageWatch()
    stream = get_task_stream(client=client)
    drawn = performance_report(filename=str(report)) if report is not None else None
    with stream:
        if drawn is not None:
            with client.as_current():
                drawn.__enter__()
        yield watch
        started = time.perf_counter()
        if drawn is not None:  # only when the stage succeeded: a failed run writes no folder
            with client.as_current():
                drawn.__exit__(None, None, None)
            watch.report = report
    watch.seen = summarize(stream.data)
    watch.closing_s = time.perf_counter() - started
