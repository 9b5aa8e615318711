"""`static:N`: fixed batches of N items, one Prefect task per batch, mapped all at once."""

from __future__ import annotations

import time
from collections import Counter

from prefect import unmapped
from prefect.futures import as_completed

from harness.strategies.base import Stage, StageResult, Strategy
from harness.strategies.tasks import Opaque, process_batch
from harness.strategies.timings import TaskTimings
from harness.workloads import Tally


def execute(strategy: Strategy, stage: Stage) -> StageResult:
    assert strategy.batch_size is not None  # a sized kind: Strategy checks it
    tally = Tally()
    sizes: Counter[int] = Counter()
    started = time.perf_counter()
    timings = TaskTimings(started)
    batches = list(stage.iter_batches(strategy.batch_size))
    for batch in batches:
        sizes[len(batch)] += 1
    futures = process_batch.map([Opaque(b) for b in batches], unmapped(stage.cost_kind), unmapped(stage.retries))
    timings.mapped(futures, [len(b) for b in batches])
    del batches
    for future in as_completed(futures):
        result = future.result().value
        timings.finished(id(future), result.compute_s)
        tally.add_batch(result)
        stage.progress(tally)
    wall = time.perf_counter() - started
    return StageResult(tally, tasks=len(futures), wall_s=wall, batch_sizes=sizes, timings=timings)
