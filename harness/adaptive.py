"""The `adaptive` strategy's mechanism: stream items through a bounded window of in-flight
Prefect tasks, sized and shaped by the controller as the run goes.

Mechanism only: before each submit it asks `Controller.decide`, and it reports every
finished task with `Controller.observe`; it never chooses a size itself. Finished futures
are dropped as soon as their result is folded into the tally, so the flow process holds at
most one window of tasks, whatever the item count.
"""

from __future__ import annotations

import itertools
import queue
import time
from collections import Counter
from typing import Any

from harness.controller import BatchObservation, Controller, Decision
from harness.strategies import Opaque, Stage, StageResult, process_batch
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
        "mode": obs.strategy,
        "submitted_s": round(obs.started - t0, 6),
        "in_flight": in_flight,
        "window": decision.window,
        "per_item_ms": round(per_item * 1000, 4) if per_item is not None else None,
        "overhead_ms": round(overhead * 1000, 3) if overhead is not None else None,
        "failed": obs.failed,
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


def run_adaptive(stage: Stage) -> StageResult:
    """Run the stage with batch sizes and strategy chosen from live throughput (inside a flow)."""
    controller = Controller(stage.items, stage.worker_threads)
    items = stage.iter_items()
    remaining = stage.items
    done: queue.SimpleQueue[Any] = queue.SimpleQueue()
    in_flight: dict[Any, tuple[Decision, float]] = {}
    tally = Tally()
    sizes: Counter[int] = Counter()
    trace: list[dict[str, Any]] = []
    tasks = 0
    window = 1  # until the first decision says otherwise
    t0 = time.perf_counter()

    while remaining or in_flight:
        if remaining and len(in_flight) < window:
            decision = controller.decide(remaining, len(in_flight))
            window = decision.window
            batch = list(itertools.islice(items, decision.batch_size))
            remaining -= len(batch)
            sizes[len(batch)] += 1
            submitted = time.perf_counter()
            if decision.strategy == "inline":
                # Cheaper than any task: the flow process runs the batch itself.
                result = run_batch(batch, stage.cost_kind, stage.retries)
                obs = _observation(decision, submitted, time.perf_counter(), result)
                controller.observe(obs)
                tally.add_batch(result)
                trace.append(_trace_row(t0, obs, decision, controller, len(in_flight)))
                stage.progress(tally)
                continue
            future = process_batch.submit(Opaque(batch), stage.cost_kind, stage.retries)
            tasks += 1
            in_flight[future] = (decision, submitted)
            future.add_done_callback(done.put)
            continue
        future = done.get()
        seen = time.perf_counter()
        decision, submitted = in_flight.pop(future)
        result = future.result().value
        del future  # release it: Dask may otherwise re-run finished tasks (prefect#15442)
        obs = _observation(decision, submitted, seen, result)
        controller.observe(obs)
        tally.add_batch(result)
        trace.append(_trace_row(t0, obs, decision, controller, len(in_flight)))
        stage.progress(tally)

    wall = time.perf_counter() - t0
    inline = sum(1 for row in trace if row["mode"] == "inline")
    notes = [f"{inline} batches ran inline in the flow process"] if inline else []
    return StageResult(tally, tasks=tasks, wall_s=wall, batch_sizes=sizes, trace=trace, notes=notes)
