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
    from harness.policy.learned import Learned
    from harness.strategies.timings import TaskTimings
    from harness.work.kernels import Kernel
    from harness.work.outcomes import Tally
    from harness.work.synthetic import Item, ItemCursor, Workload

# per_item, static:N and raw_dask:N submit their fixed tasks through a window of at most this
# many per worker thread (fewer for large payloads: IN_FLIGHT_MAX_BYTES), fed lazily from the
# batch iterator: the flow process holds what is in flight, not the item count. 8: the
# scheduler's queue never runs dry while the flow folds a result and submits the next (a
# Prefect submit takes 10-50 ms here, a task at least that), and 8 x threads tasks of small
# items stay small next to the runtime.
SUBMIT_WINDOW_PER_THREAD = 8
# The adaptive strategy's largest batch in bytes of item payload: the controller's upper bound
# on batch size is this / payload_bytes. A batch is pickled whole in the flow and unpickled on
# a worker; at 8 MiB that takes ~5-10 ms here, more than a task's own overhead, so a bigger
# batch buys no smaller overhead share, only memory (up to the controller's widest window).
ADAPTIVE_MAX_BATCH_BYTES = 8 * 2**20
# ... and the item payload those fixed strategies (per_item, static:N, raw_dask:N) keep in
# flight at most: their window narrows from SUBMIT_WINDOW_PER_THREAD per thread to what fits
# this many bytes, never below every worker thread busy plus one queued (`submit_window`).
# 128 MiB: what adaptive may hold at its full window on 8 worker threads (2 tasks per thread,
# harness.policy.controller, of ADAPTIVE_MAX_BATCH_BYTES); and the flow process, which keeps up
# to 3 copies of what is in flight (harness.measure.admission.FLOW_PAYLOAD_COPIES), then holds
# ~0.4 GiB of payload beside its own ~0.25 GiB: well under a GiB. The shipped workloads
# (payloads of at most 256 B) never reach it.
IN_FLIGHT_MAX_BYTES = 128 * 2**20


@dataclass(frozen=True)
class SubmitWindow:
    """How many tasks a fixed strategy keeps in flight at most (`submit_window`), and what set it."""

    tasks: int
    threads: int
    batch_bytes: int  # item payload of one full batch
    # "tasks": SUBMIT_WINDOW_PER_THREAD per worker thread; "bytes": IN_FLIGHT_MAX_BYTES;
    # "least": the budget holds fewer batches than keep every thread busy plus one queued.
    limit: str

    @property
    def payload_bytes(self) -> int:
        """Item payload in flight when the window is full of full batches."""
        return self.tasks * self.batch_bytes

    def describe(self) -> str:
        if self.limit == "tasks":
            return f"{self.tasks} tasks in flight ({SUBMIT_WINDOW_PER_THREAD} per worker thread)"
        budget = f"the {_mib(IN_FLIGHT_MAX_BYTES)} budget in flight (IN_FLIGHT_MAX_BYTES)"
        if self.limit == "bytes":
            return f"{self.tasks} tasks in flight ({_mib(self.batch_bytes)} of payload each, within {budget})"
        return (f"{self.tasks} tasks in flight, the least that keeps {self.threads} worker threads busy plus "
                f"one queued: {_mib(self.payload_bytes)} of payload, over {budget}")


def window_notes(window: SubmitWindow) -> list[str]:
    """The strategy's note when the payload, not the task count, set its window (none otherwise)."""
    return [] if window.limit == "tasks" else [f"window bounded by payload bytes: {window.describe()}"]


def _mib(n: int) -> str:
    """Bytes in MiB, or in GiB from 10 GiB on, with at most two decimals ("16 MiB", "0.25 MiB")."""
    value, unit = (n / 2**30, "GiB") if n >= 10 * 2**30 else (n / 2**20, "MiB")
    return f"{value:,.2f}".rstrip("0").rstrip(".") + f" {unit}"


def submit_window(threads: int, batch_size: int, payload_bytes: int) -> SubmitWindow:
    """The tasks per_item (batch size 1), static:N and raw_dask:N keep in flight on `threads`
    worker threads with items of `payload_bytes`: SUBMIT_WINDOW_PER_THREAD per thread, fewer
    where that would hold more than IN_FLIGHT_MAX_BYTES of payload, never fewer than threads + 1
    (then a full window holds more than the budget; harness.measure.admission counts it so).
    The preflight's estimate (admission.memory_need) asks this same function."""
    if threads < 1 or batch_size < 1 or payload_bytes < 0:
        raise ValueError(f"need threads >= 1, batch_size >= 1, payload_bytes >= 0; "
                         f"got {threads}, {batch_size}, {payload_bytes}")
    most, least = SUBMIT_WINDOW_PER_THREAD * threads, threads + 1
    batch_bytes = batch_size * payload_bytes
    fits = IN_FLIGHT_MAX_BYTES // batch_bytes if batch_bytes else most
    if fits >= most:
        return SubmitWindow(most, threads, batch_bytes, "tasks")
    if fits >= least:
        return SubmitWindow(fits, threads, batch_bytes, "bytes")
    return SubmitWindow(least, threads, batch_bytes, "least")


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
    # What an earlier adaptive stage of the same work learned: `adaptive_warm` starts from it.
    learned: Learned | None = None

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
    def payload_bytes(self) -> int:
        """Bytes of payload per item ([items] payload_bytes; 0 for a user's items)."""
        return self.workload.spec.items.payload_bytes

    @property
    def max_batch_size(self) -> int | None:
        """The adaptive strategy's batch-size cap from ADAPTIVE_MAX_BATCH_BYTES, None when items carry no payload."""
        payload = self.payload_bytes
        return max(1, ADAPTIVE_MAX_BATCH_BYTES // payload) if payload else None

    def submit_window(self, batch_size: int) -> SubmitWindow:
        """The window of a fixed strategy with batches of `batch_size` on this stage (`submit_window`)."""
        return submit_window(self.worker_threads, batch_size, self.payload_bytes)

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
    learned: Learned | None = None  # what an adaptive stage learned (Controller.learned()), for a warm one
