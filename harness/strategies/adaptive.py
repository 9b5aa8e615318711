"""`adaptive`: stream the stage's items through the adaptive window (harness.strategies.window),
batches sized and shaped by the controller as the run goes.

This module says only what a batch of the synthetic workload runs (`process_batch` as a task,
`run_batch` inline) and folds each result into the stage's tally; the window is the mechanism
shared with `harness.adaptive_map`, the controller (harness.policy.controller) the policy.
A user's `async def` [task] function also gets its concurrency limit chosen batch by batch
(harness.policy.concurrency): this module asks the policy as it submits and tells it each
folded result, as adaptive_map does, within the task's `max_concurrency`.
`adaptive_warm` is the same, its controller started from `stage.learned` (what the run's cold
stage learned: harness.measure.run) when there is one; both hand back what they learned.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from harness.policy.concurrency import ConcurrencyPolicy, ConcurrencySample
from harness.policy.controller import STRATEGIES, Controller
from harness.strategies.resilience import PathGuard
from harness.strategies.base import Stage, StageResult
from harness.workload.vocabulary import ADAPTIVE_WARM, Strategy
from harness.strategies.tasks import Opaque, process_batch
from harness.strategies.timings import TaskTimings
from harness.strategies.window import run_window
from harness.work.kernels import run_batch_folded
from harness.work.outcomes import FoldedBatch, Tally


def execute(strategy: Strategy, stage: Stage) -> StageResult:
    """Run the stage with batch sizes and strategy chosen from live throughput (inside a flow)."""
    tally = Tally()
    # `[task] max_concurrency` caps the policy, which then never grows past it (the kernel caps each batch too).
    limits = (ConcurrencyPolicy(max_concurrency=getattr(stage.cost_kind, "max_concurrency", None))
              if getattr(stage.cost_kind, "is_async", False) else None)

    def kernel(batch: list[Any]) -> Any:
        """What the batch runs: an async function's kernel carries the batch's limit."""
        if limits is None:
            return stage.cost_kind
        return dataclasses.replace(stage.cost_kind, concurrency=limits.limit_for(len(batch)))

    def fold(result: FoldedBatch) -> None:
        if limits is not None and result.concurrency is not None and result.latency_s is not None:
            seen = result.tally  # attempts: each item's first plus its retries; raised: each retried
            # attempt, and a failed item's last
            limits.observe(ConcurrencySample(result.concurrency, seen.items, wall_s=result.compute_s,
                                             latency_s=result.latency_s, attempts=seen.items + seen.retries,
                                             errors=seen.retries + seen.items_failed))
        tally.add_batch(result)
        stage.progress(tally)

    def submit(batch: list[Any]) -> Any:
        return process_batch.submit(Opaque(batch), kernel(batch), stage.retries)

    # Failed tasks, re-runs and circuit breakers (harness.strategies.resilience); inline is the last resort.
    guard = PathGuard.for_stage(stage, tuple(sorted(STRATEGIES, key=lambda s: s == "inline")))
    memory = stage.learned if strategy.kind == ADAPTIVE_WARM.name else None
    controllers: list[Controller] = []

    def controller(total: int) -> Controller:
        controllers.append(Controller(total, stage.worker_threads, prior_overhead_s=stage.overhead_hint_s,
                                      prior_item_s=stage.item_hint_s, prior_probe_s=stage.probe_hint_s,
                                      prior_probe_filling_s=stage.probe_filling_hint_s,
                                      max_batch_size=stage.max_batch_size,  # bytes cap (base.py)
                                      learned=memory))
        return controllers[-1]

    run = run_window(
        stage.cursor(),  # batches built where they run (harness.work.synthetic.ItemSlice)
        stage.items,
        controller=controller,
        guard=guard,
        submit=submit,
        run_inline=lambda batch: run_batch_folded(batch, kernel(batch), stage.retries),
        fold=fold,
    )
    if strategy.kind == ADAPTIVE_WARM.name and memory is None:
        run.notes.append("no memory to start from (no cold adaptive stage learned one, none in the cache): ran cold")
    return StageResult(tally, tasks=run.tasks, wall_s=run.wall_s, batch_sizes=run.batch_sizes,
                       trace=run.trace, notes=run.notes, timings=TaskTimings.from_trace(run.trace),
                       learned=controllers[-1].learned() if controllers else None)
