"""Per-task timings of one stage as the flow sees them: when each task was submitted, when its
result was seen, how many items it carried and how much of it was item compute.

A strategy makes one `TaskTimings` at the start of its stage (the same clock origin as its
wall time), calls `submitted(key, items)` for each task it submits and `finished(key,
compute_s)` when it reads that task's result; the key is anything that names the task while it
is in flight (an index, or `id(future)`: keeping the future itself would keep Dask from
releasing it). run.py writes the rows to tasks.csv and harness.analysis.overhead splits the per-task
overhead with them (README, "Where the overhead goes").
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import Any

TASK_COLUMNS = ("task", "items", "submit_s", "finish_s", "compute_s", "seen_late")
# A task already done when the flow looked finished at some point in the time the flow was away
# (folding results, submitting). Up to 2 ms away its finish time is still good: a tenth of a
# Prefect task's fixed cost here (20-40 ms) and about one raw Dask task's (README, "Where the
# overhead goes"); two tasks finishing together on two threads are both kept. Beyond, the task
# is seen late: per_item's flow spends ~15 ms submitting between looks.
SEEN_LATE_AFTER_S = 0.002


class TaskTimings:
    """Tasks in submit order: [task number, items, submit_s, finish_s, compute_s] from `t0`."""

    def __init__(self, t0: float | None = None) -> None:
        self.t0 = time.perf_counter() if t0 is None else t0
        self.rows: list[list[Any]] = []
        self._pending: dict[Hashable, int] = {}
        self.peak_in_flight = 0  # the most tasks in flight at once, as the strategy's window counts them

    def in_flight(self, tasks: int) -> None:
        """The strategy's window holds `tasks` tasks submitted and not yet seen finished."""
        self.peak_in_flight = max(self.peak_in_flight, tasks)

    def submitted(self, key: Hashable, items: int, at: float | None = None) -> None:
        """A task carrying `items` items was submitted (at `at`, perf_counter; default now)."""
        at = time.perf_counter() if at is None else at
        self._pending[key] = len(self.rows)
        self.rows.append([len(self.rows), items, at - self.t0, None, None, False])

    def mapped(self, futures: list[Any], sizes: list[int]) -> None:
        """Tasks submitted by one `map` call that has just returned. Prefect's map submits them one
        after another, so their submit times are spread evenly over the call; the flow could not
        look at any result during it, so a task already finished when it returned is `seen_late`:
        its finish time is when the flow first looked, not when it finished (kept out of the fit)."""
        now = time.perf_counter()
        first = self.t0 if not self.rows else self.rows[-1][2] + self.t0
        for i, (future, items) in enumerate(zip(futures, sizes)):
            self.submitted(id(future), items, first + (i + 1) / len(futures) * (now - first))
            self.rows[-1][5] = is_done(future)

    def finished(self, key: Hashable, compute_s: float | None, at: float | None = None, *,
                 away_s: float = 0.0) -> None:
        """The flow read the task's result; `compute_s` None when the task failed as a whole.
        `away_s`: the task was already done when the flow looked, after this long away (0: the
        flow waited for it). Beyond SEEN_LATE_AFTER_S its finish time is too uncertain and it is
        `seen_late` (out of the overhead fit)."""
        at = time.perf_counter() if at is None else at
        row = self.rows[self._pending.pop(key)]
        row[3], row[4] = at - self.t0, compute_s
        row[5] = row[5] or away_s > SEEN_LATE_AFTER_S

    @classmethod
    def from_trace(cls, trace: list[dict[str, Any]]) -> TaskTimings:
        """The tasks of an adaptive window (harness.strategies.window) from its trace rows, whose
        times count from the window's start as its wall does: each batched row is a task seen
        finished at `t_s`, submitted at `submitted_s`. Inline batches are not tasks; a task that
        failed as a whole has no trace row, so it is not here either."""
        timings = cls(0.0)
        tasks = sorted((row for row in trace if row.get("mode") != "inline"), key=lambda row: row["submitted_s"])
        for i, row in enumerate(tasks):
            timings.submitted(i, row["items"], row["submitted_s"])
            timings.finished(i, row["compute_s"], row["t_s"])
        return timings

    def records(self) -> list[dict[str, Any]]:
        """One dict per task whose result was seen, in submit order."""
        return [dict(zip(TASK_COLUMNS, row)) for row in self.rows if row[3] is not None]


def is_done(future: Any) -> bool:
    """Whether the task behind a Prefect future has finished, without waiting (its runner's own
    future: a Dask future under prefect-dask, a concurrent one under the thread pool)."""
    return bool(getattr(future, "wrapped_future", future).done())
