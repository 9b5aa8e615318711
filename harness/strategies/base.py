"""What every strategy shares: the stage it runs and the result it returns. The strategy names
and their registry are vocabulary (harness.workload.vocabulary).

A strategy takes a stage (which items, what they cost, how often to retry) and returns a
`StageResult`: every item's outcome folded into a Tally, the tasks it created, its wall time.
Strategies are mechanism: they submit, time and observe; the only decisions at run time are
the adaptive controller's (harness.policy.controller).

This module imports neither Prefect nor Dask: the run's checks before it starts
(harness.measure.admission) read its constants before either is loaded, which takes seconds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.strategies.timings import TaskTimings
    from harness.work.synthetic import Item, ItemCursor, Kernel, Tally, Workload

# per_item and static:N submit their fixed tasks through a window of this many per worker
# thread, fed lazily from the batch iterator: the flow process holds what is in flight, not
# the item count. 8, as raw_dask's window: the scheduler's queue never runs dry while the flow
# folds a result and submits the next (a Prefect submit takes 10-50 ms here, a task at least
# that), and 8 x threads tasks of items stay small next to the runtime.
SUBMIT_WINDOW_PER_THREAD = 8
# The adaptive strategy's largest batch in bytes of item payload: the controller's upper bound
# on batch size is this / payload_bytes. A batch is pickled whole in the flow and unpickled on
# a worker; at 8 MiB that takes ~5-10 ms here, more than a task's own overhead, so a bigger
# batch buys no smaller overhead share, only memory (up to the controller's widest window).
ADAPTIVE_MAX_BATCH_BYTES = 8 * 2**20


@dataclass
class Stage:
    """One mapping stage: the items to run and how."""

    workload: Workload
    indices: Sequence[int] | None  # None: every item; else the sample to run (see run.py)
    cost_kind: str | Kernel  # what the tasks run: a synthetic cost kind, or a user's function (workloads.run_batch)
    retries: int
    worker_threads: int
    client: Any = None  # distributed.Client, for the reference strategies
    on_progress: Callable[[int], None] | None = None  # called with items finished so far
    # Per-task overhead of this runtime measured at warm-up (not a property of the items):
    # the adaptive controller's stand-in until its own first task has finished.
    overhead_hint_s: float | None = None
    item_hint_s: float | None = None  # ... the mean compute per item of its tasks
    # ... and one task's round trip into a waiting flow and into one that fills meanwhile
    # (harness.strategies.probe): the adaptive controller's start.
    probe_hint_s: float | None = None
    probe_filling_hint_s: float | None = None
    on_submitted: Callable[[int], None] | None = None  # called with tasks submitted so far

    @property
    def items(self) -> int:
        return len(self.workload) if self.indices is None else len(self.indices)

    def iter_items(self) -> Iterator[Item]:
        if self.indices is None:
            return self.workload.items()
        # One item at a time, as the window takes them: taking the whole sample at once built
        # every sampled item's payload up front (a per_item sample of 500 items of 1 MiB grew
        # the flow process by 535 MiB, against 25 MiB for its window of 16 tasks).
        return (item for index in self.indices for item in self.workload.take([index]))

    def submitted(self, tasks: int) -> None:
        """Tasks submitted so far, for the progress line before the first result arrives."""
        if self.on_submitted is not None:
            self.on_submitted(tasks)

    @property
    def max_batch_size(self) -> int | None:
        """The adaptive strategy's batch-size cap from ADAPTIVE_MAX_BATCH_BYTES, None when items carry no payload."""
        payload = self.workload.spec.items.payload_bytes
        return max(1, ADAPTIVE_MAX_BATCH_BYTES // payload) if payload else None

    def iter_batches(self, size: int) -> Iterator[Sequence[Item]]:
        return self.workload.batches(size, self.indices)

    def cursor(self) -> ItemCursor:
        """The stage's items in order, handed out as batches of any size (the adaptive strategy's)."""
        return self.workload.cursor(self.indices)

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
    timings: TaskTimings | None = None  # per-task timings (harness.strategies.timings), for tasks.csv
