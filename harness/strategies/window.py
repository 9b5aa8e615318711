"""The adaptive window: stream items through a bounded window of in-flight Prefect tasks, sized
and shaped by the controller as the run goes. One mechanism, two users: the `adaptive`
strategy (harness.strategies.adaptive) and `harness.adaptive_map` in a user's own flow.

Mechanism only: before each submit it asks `Controller.decide` and answers it with exactly
one of `submitted`, `rerouted` (a breaker chose another path, or inline is not allowed) or
`cancel` (every path refused); it reports every finished task with `Controller.observe`
(`task_failed` for one that failed as a whole); it never chooses a size itself. Finished
futures are dropped as soon as their result is folded, so the flow process holds at most one
window of tasks, whatever the item count.

What a batch runs is the caller's: `submit(batch)` returns a Prefect future whose result is an
`Opaque` holding the batch's result, `run_inline(batch)` returns that result directly. A
batch result has `outcomes` (each with `ok`), or a `tally` (a FoldedBatch, folded where it
ran), and `compute_s` (work measured inside the batch, so the controller can tell work from
overhead); `fold(result)` takes each one in. The items may be an ItemCursor
(harness.work.synthetic), which hands out whole batches built where they run.

The item count may be unknown (a generator): items are then read ahead into a buffer, and the
controller is given the buffer's length as `remaining` with `more=True`, a lower bound, until
the source is exhausted. The read-ahead follows the decision: a batch bigger than the buffer
is read for when it is decided, and when the source ends first the decision is cancelled and
made again on the exact count. So the flow holds at most the window's tasks in flight plus
one batch (or LOOKAHEAD_MIN_ITEMS), never the whole input (see `_Lookahead`).
"""

from __future__ import annotations

import dataclasses
import itertools
import queue
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from harness.policy.controller import BatchObservation, Controller, Decision
from harness.strategies.resilience import PathFault, PathGuard, fail_on_path
from harness.strategies.tasks import Opaque
from harness.work.outcomes import FoldedBatch
from harness.work.synthetic import ItemCursor

# Items kept read ahead of an unknown-length source before each decision: a source this short
# is run on its exact count from the first decision (the inline and learn rules judge the
# whole rest), a stream's end is seen this much earlier, and fill has items to run; small
# enough that a stream of large items costs little memory. Beyond it the read-ahead is only
# what the decided batch needs.
LOOKAHEAD_MIN_ITEMS = 256


class _Lookahead:
    """The items not yet submitted: an iterator over the source, with a known count or a
    read-ahead buffer whose length is a lower bound on what is left."""

    def __init__(self, items: Iterable[Any] | ItemCursor, count: int | None) -> None:
        self._cursor = items if isinstance(items, ItemCursor) else None
        self._source = iter(()) if isinstance(items, ItemCursor) else iter(items)
        self._buffer: deque[Any] = deque()
        self.count = count  # total, when known up front
        self.taken = 0
        self.exhausted = False

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self._buffer:
            item = self._buffer.popleft()
        else:
            try:
                item = next(self._source)
            except StopIteration:
                self.exhausted = True
                raise
        self.taken += 1
        return item

    def take(self, n: int) -> Sequence[Any]:
        """The next `n` items (fewer at the end) as one batch: the cursor's own when there is one."""
        if self._cursor is None or self._buffer:
            return list(itertools.islice(self, n))
        batch = self._cursor.take(n)
        self.taken += len(batch)
        self.exhausted = self._cursor.remaining == 0
        return batch

    def read_ahead(self, target: int) -> None:
        """Unknown count: buffer until more than `target` items wait or the source ends (no-op
        when known). One item past the target: a source with exactly `target` left is then seen
        to end, and a batch of the whole rest is decided on the exact count (the end-game rules)."""
        if self.count is not None or self.exhausted:
            return
        while len(self._buffer) <= target:
            try:
                self._buffer.append(next(self._source))
            except StopIteration:
                self.exhausted = True
                return

    @property
    def remaining(self) -> int:
        """Items not yet taken: exact with a known count or an exhausted source, else a lower bound."""
        if self.count is not None:
            return 0 if self.exhausted else max(0, self.count - self.taken)
        return len(self._buffer)

    @property
    def more(self) -> bool:
        """Whether items beyond `remaining` may follow (an unknown count, not yet exhausted)."""
        return self.count is None and not self.exhausted


@dataclasses.dataclass
class WindowRun:
    """What a window run did: the trace rows (trace.csv's columns), tasks, sizes and notes."""

    trace: list[dict[str, Any]]
    tasks: int
    batch_sizes: Counter[int]
    wall_s: float
    items: int
    notes: list[str]


def trace_row(t0: float, obs: BatchObservation, decision: Decision, controller: Controller,
              in_flight: int) -> dict[str, Any]:
    """One row of trace.csv: a finished task or inline batch, and the estimates after it."""
    per_item, overhead, rate = controller.per_item_s, controller.overhead_s, controller.throughput
    return {
        "t_s": round(obs.finished - t0, 6),
        "batch_size": obs.batch_size,
        "items": obs.items,
        "duration_s": round(obs.duration_s, 6),
        "compute_s": round(obs.compute_s, 6),
        "throughput_items_s": round(rate, 3) if rate else None,
        "reason": decision.reason,
        "mode": obs.strategy,  # trace.csv's name for the strategy a batch ran on
        "submitted_s": round(obs.started - t0, 6),
        "in_flight": in_flight,
        "window": decision.window,
        "per_item_ms": round(per_item * 1000, 4) if per_item is not None else None,
        "overhead_ms": round(overhead * 1000, 3) if overhead is not None else None,  # fixed part o
        "failed": obs.failed,
        "transfer_ms_per_item": round(controller.transfer_s * 1000, 5),  # per-item part t
    }


def _observation(decision: Decision, started: float, finished: float, result: Any) -> BatchObservation:
    if isinstance(result, FoldedBatch):
        items, failed = result.tally.items, result.tally.items_failed
    else:
        items, failed = len(result.outcomes), sum(1 for o in result.outcomes if not o.ok)
    return BatchObservation(
        batch_size=decision.batch_size,
        items=items,
        started=started,
        finished=finished,
        compute_s=result.compute_s,
        ok=items - failed,
        failed=failed,
        strategy=decision.strategy,
    )


class _Window:
    """One window run's state: the items left, the controller, the tasks in flight (future ->
    decision, submit time, job) and the queue their futures land in when done."""

    def __init__(self, source: _Lookahead, ctl: Controller, guard: PathGuard, submit: Callable[[list[Any]], Any],
                 run_inline: Callable[[list[Any]], Any], fold: Callable[[Any], None], allow_inline: bool,
                 run: WindowRun, on_row: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.source, self.ctl, self.guard, self.run, self.on_row = source, ctl, guard, run, on_row
        self.submit, self.run_inline, self.fold, self.allow_inline = submit, run_inline, fold, allow_inline
        self.done: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.in_flight: dict[Any, tuple[Decision, float, Any]] = {}
        self.window = 1  # until the first decision says otherwise
        self.blocked = False  # every strategy refuses: wait for a task in flight before routing again
        self.t0 = time.perf_counter()

    def until_done(self) -> None:
        """Send a batch while the window has room, else take in a finished task, until nothing is left."""
        while True:
            self.source.read_ahead(LOOKAHEAD_MIN_ITEMS)
            remaining = self.source.remaining
            if not (remaining or self.in_flight or self.guard.reruns):
                return
            if (remaining or self.guard.reruns) and len(self.in_flight) < self.window and not self.blocked:
                self._send_next(remaining)
            else:
                self._take_in_next(remaining)

    def _send_next(self, remaining: int) -> None:
        """Ask the controller for the next batch and send it down the path the breakers allow."""
        more = self.source.more
        decision = self.ctl.decide(remaining + self.guard.queued_items, len(self.in_flight), more=more)
        if more and not self.guard.reruns and decision.batch_size > remaining:
            # Read ahead for this batch only. A source that ends first has made the end known:
            # the controller decides again on the exact count (its end-game rules apply).
            self.source.read_ahead(decision.batch_size)
            if not self.source.more:
                self.ctl.cancel(decision)
                return
        self.window = decision.window
        job, _ = self.guard.next_batch(self.source, decision.batch_size)
        if not job.items:  # the source held fewer items than its len() said
            self.ctl.cancel(decision)
            return
        routed = self._routed(decision, job)
        if routed is None:
            return
        self.run.batch_sizes[len(job.items)] += 1
        if routed.strategy == "inline":
            self._inline_job(routed, job)
        else:
            self._submit_job(routed, job)

    def _routed(self, decision: Decision, job: Any) -> Decision | None:
        """The decision as it goes out (rerouted when a breaker or the lack of inline says so),
        told to the controller; None, the batch queued again, when every path refuses it."""
        wanted = decision.strategy if self.allow_inline else "batched"
        batch_strategy = self.guard.route(wanted, job)
        if batch_strategy is None:
            self.ctl.cancel(decision)
            self.guard.reruns.appendleft(job)
            self.blocked = bool(self.in_flight)
            return None
        if batch_strategy != decision.strategy:
            self.ctl.rerouted(decision, batch_strategy)
            why = "breaker" if wanted == decision.strategy else "inline not allowed"
            return dataclasses.replace(decision, strategy=batch_strategy,
                                       reason=f"{decision.reason}; routed to {batch_strategy} ({why})")
        self.ctl.submitted(decision)
        return decision

    def _inline_job(self, decision: Decision, job: Any) -> None:
        batch = job.items
        if self.guard.injected(decision.strategy, job):
            self.guard.failed(decision.strategy, job, PathFault(decision.strategy, batch[0].index, job.attempt))
            return
        # Cheaper than any task: the flow process runs the batch itself.
        self._inline(decision, batch)
        self.guard.succeeded(decision.strategy)

    def _submit_job(self, decision: Decision, job: Any) -> None:
        batch = job.items
        submitted = time.perf_counter()
        if self.guard.injected(decision.strategy, job):
            future = fail_on_path.submit(Opaque(batch), decision.strategy, batch[0].index, job.attempt)
        else:
            future = self.submit(batch)
        self.run.tasks += 1
        self.in_flight[future] = (decision, submitted, job)
        future.add_done_callback(self.done.put)

    def _take_in_next(self, remaining: int) -> None:
        """Take in the next task to finish; while none has and a worker thread idles, fill in inline."""
        try:
            future = self.done.get_nowait()
        except queue.Empty:
            if self._filled_in(remaining):
                return
            future = self.done.get()
        seen = time.perf_counter()
        decision, submitted, job = self.in_flight.pop(future)
        self.blocked = False
        try:
            result = future.result().value
        except Exception as exc:  # noqa: BLE001  (a task failed as a whole, items never do: re-run its batch)
            del future
            self.ctl.task_failed(submitted, seen, decision.batch_size)
            self.guard.failed(decision.strategy, job, exc)
            return
        self.guard.succeeded(decision.strategy)
        del future  # release it: Dask may otherwise re-run finished tasks (prefect#15442)
        self._took(decision, submitted, seen, result)

    def _filled_in(self, remaining: int) -> bool:
        """The window is full and a worker thread idles: run a batch in the flow process
        meanwhile, when the controller says one pays."""
        fill = (self.ctl.fill(remaining, len(self.in_flight), more=self.source.more)
                if remaining and self.allow_inline else None)
        if fill is None:
            return False
        batch = self.source.take(fill.batch_size)
        self.window = fill.window
        if batch:  # not a task: left out of the batch-size tally
            self._inline(fill, batch)
        return True

    def _inline(self, decision: Decision, batch: list[Any]) -> None:
        submitted = time.perf_counter()
        result = self.run_inline(batch)
        self._took(decision, submitted, time.perf_counter(), result)

    def _took(self, decision: Decision, started: float, finished: float, result: Any) -> None:
        """A batch's result: observed by the controller, folded, and a trace row."""
        obs = _observation(decision, started, finished, result)
        self.ctl.observe(obs)
        self.run.items += obs.items
        self.fold(result)
        row = trace_row(self.t0, obs, decision, self.ctl, len(self.in_flight))
        # The limit an async function's batch ran at (its items at once); None for plain work.
        row["concurrency"] = getattr(result, "concurrency", None)
        self.run.trace.append(row)
        if self.on_row is not None:
            self.on_row(row)


def run_window(
    items: Iterable[Any],
    count: int | None,
    *,
    controller: Callable[[int], Controller],
    guard: PathGuard,
    submit: Callable[[list[Any]], Any],
    run_inline: Callable[[list[Any]], Any],
    fold: Callable[[Any], None],
    allow_inline: bool = True,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> WindowRun:
    """Run every item through the window (inside a flow); `fold` gets each batch's result once.

    `controller(total)` builds the controller once the first items are known (`total` is the
    count, or a lower bound on it while streaming). `guard` routes batches through the circuit
    breakers and re-runs batches whose task failed as a whole; its strategies must include
    "inline" exactly when `allow_inline`. Without inline, the controller's inline decisions go
    out as tasks (`rerouted`) and the flow never fills in while it waits. `on_row` gets each
    trace row as its batch is folded in (the run's trace has them all at the end).
    """
    source = _Lookahead(items, count)
    source.read_ahead(LOOKAHEAD_MIN_ITEMS)
    run = WindowRun(trace=[], tasks=0, batch_sizes=Counter(), wall_s=0.0, items=0, notes=[])
    if source.remaining == 0:
        return run
    window = _Window(source, controller(source.remaining), guard, submit, run_inline, fold, allow_inline, run,
                     on_row)
    window.until_done()
    run.wall_s = time.perf_counter() - window.t0
    inline_items = [row["items"] for row in run.trace if row["mode"] == "inline"]
    if inline_items:
        run.notes.append(f"{len(inline_items)} batches ({sum(inline_items)} items) ran inline in the flow process")
    run.notes += guard.notes()
    return run
