"""`adaptive`: stream items through a bounded window of in-flight Prefect tasks, sized and
shaped by the controller as the run goes.

Mechanism only: before each submit it asks `Controller.decide` and answers it with exactly
one of `submitted`, `rerouted` (a breaker chose another path) or `cancel` (every path
refused); it reports every finished task with `Controller.observe` (`task_failed` for one
that failed as a whole); it never chooses a size itself. Finished futures
are dropped as soon as their result is folded into the tally, so the flow process holds at
most one window of tasks, whatever the item count.
"""

from __future__ import annotations

import dataclasses
import itertools
import queue
import time
from collections import Counter
from typing import Any

from harness.controller import STRATEGIES, BatchObservation, Controller, Decision
from harness.resilience import PathFault, PathGuard, fail_on_path
from harness.strategies.base import Stage, StageResult, Strategy
from harness.strategies.tasks import Opaque, process_batch
from harness.workloads import BatchResult, Tally, run_batch


def _trace_row(t0: float, obs: BatchObservation, decision: Decision, controller: Controller,
               in_flight: int) -> dict[str, Any]:
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


def _observation(decision: Decision, started: float, finished: float, result: BatchResult) -> BatchObservation:
    failed = sum(1 for o in result.outcomes if not o.ok)
    return BatchObservation(
        batch_size=decision.batch_size,
        items=len(result.outcomes),
        started=started,
        finished=finished,
        compute_s=result.compute_s,
        ok=len(result.outcomes) - failed,
        failed=failed,
        strategy=decision.strategy,
    )


def execute(strategy: Strategy, stage: Stage) -> StageResult:
    """Run the stage with batch sizes and strategy chosen from live throughput (inside a flow)."""
    controller = Controller(stage.items, stage.worker_threads, prior_overhead_s=stage.overhead_hint_s,
                            max_batch_size=stage.max_batch_size)
    items = stage.iter_items()
    remaining = stage.items
    done: queue.SimpleQueue[Any] = queue.SimpleQueue()
    in_flight: dict[Any, tuple[Decision, float, Any]] = {}  # future -> decision, submit time, batch
    tally = Tally()
    sizes: Counter[int] = Counter()
    trace: list[dict[str, Any]] = []
    tasks = 0
    window = 1  # until the first decision says otherwise
    t0 = time.perf_counter()
    # Failed tasks, re-runs and circuit breakers (harness.resilience); inline is the last resort.
    guard = PathGuard.for_stage(stage, tuple(sorted(STRATEGIES, key=lambda s: s == "inline")))
    blocked = False  # every strategy refuses: wait for a task in flight before routing again

    def run_inline(decision: Decision, batch: list[Any]) -> None:
        submitted = time.perf_counter()
        result = run_batch(batch, stage.cost_kind, stage.retries)
        obs = _observation(decision, submitted, time.perf_counter(), result)
        controller.observe(obs)
        tally.add_batch(result)
        trace.append(_trace_row(t0, obs, decision, controller, len(in_flight)))
        stage.progress(tally)

    while remaining or in_flight or guard.reruns:
        if (remaining or guard.reruns) and len(in_flight) < window and not blocked:
            decision = controller.decide(remaining + guard.queued_items, len(in_flight))
            window = decision.window
            job, new = guard.next_batch(items, decision.batch_size)
            batch = job.items
            remaining -= len(batch) if new else 0
            batch_strategy = guard.route(decision.strategy, job)
            if batch_strategy is None:
                controller.cancel(decision)
                guard.reruns.appendleft(job)
                blocked = bool(in_flight)
                continue
            if batch_strategy != decision.strategy:
                controller.rerouted(decision, batch_strategy)
                decision = dataclasses.replace(decision, strategy=batch_strategy,
                                               reason=f"{decision.reason}; routed to {batch_strategy} (breaker)")
            else:
                controller.submitted(decision)
            sizes[len(batch)] += 1
            submitted = time.perf_counter()
            if batch_strategy == "inline":
                if guard.injected(batch_strategy, job):
                    guard.failed(batch_strategy, job, PathFault(batch_strategy, batch[0].index, job.attempt))
                    continue
                # Cheaper than any task: the flow process runs the batch itself.
                run_inline(decision, batch)
                guard.succeeded(batch_strategy)
                continue
            if guard.injected(batch_strategy, job):
                future = fail_on_path.submit(Opaque(batch), batch_strategy, batch[0].index, job.attempt)
            else:
                future = process_batch.submit(Opaque(batch), stage.cost_kind, stage.retries)
            tasks += 1
            in_flight[future] = (decision, submitted, job)
            future.add_done_callback(done.put)
            continue
        try:
            future = done.get_nowait()
        except queue.Empty:
            fill = controller.fill(remaining, len(in_flight)) if remaining else None
            if fill is not None:  # a worker thread idles and the window is full: work meanwhile
                batch = list(itertools.islice(items, fill.batch_size))
                remaining -= len(batch)  # not a task: left out of the batch-size tally
                window = fill.window
                run_inline(fill, batch)
                continue
            future = done.get()
        seen = time.perf_counter()
        decision, submitted, job = in_flight.pop(future)
        blocked = False
        try:
            result = future.result().value
        except Exception as exc:  # noqa: BLE001  (a task failed as a whole, items never do: re-run its batch)
            del future
            controller.task_failed(submitted, seen, decision.batch_size)
            guard.failed(decision.strategy, job, exc)
            continue
        guard.succeeded(decision.strategy)
        del future  # release it: Dask may otherwise re-run finished tasks (prefect#15442)
        obs = _observation(decision, submitted, seen, result)
        controller.observe(obs)
        tally.add_batch(result)
        trace.append(_trace_row(t0, obs, decision, controller, len(in_flight)))
        stage.progress(tally)

    wall = time.perf_counter() - t0
    inline = [row["items"] for row in trace if row["mode"] == "inline"]
    notes = [f"{len(inline)} batches ({sum(inline)} items) ran inline in the flow process"] if inline else []
    notes += guard.notes()
    return StageResult(tally, tasks=tasks, wall_s=wall, batch_sizes=sizes, trace=trace, notes=notes)
