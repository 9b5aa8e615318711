"""`static:N`: fixed batches of N items, one Prefect task per batch, submitted through a
bounded window (base.submit_window: tasks per worker thread, bytes of payload) fed lazily from
the batches."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from harness.strategies.base import Stage, StageResult, window_notes
from harness.workload.vocabulary import Strategy
from harness.strategies.tasks import Opaque, process_batch, windowed
from harness.strategies.timings import TaskTimings
from harness.work.outcomes import Tally


def execute(strategy: Strategy, stage: Stage) -> StageResult:
    assert strategy.batch_size is not None  # a sized kind: Strategy checks it
    tally = Tally()
    sizes: Counter[int] = Counter()
    started = time.perf_counter()
    timings = TaskTimings(started)

    def submissions() -> Iterator[Any]:
        for batch in stage.iter_batches(strategy.batch_size):
            sizes[len(batch)] += 1
            future = process_batch.submit(Opaque(batch), stage.cost_kind, stage.retries)
            timings.submitted(id(future), len(batch))
            yield future

    window = stage.submit_window(strategy.batch_size)
    for future, away_s in windowed(submissions(), window.tasks, timings.in_flight):
        result = future.result().value
        timings.finished(id(future), result.compute_s, away_s=away_s)
        tally.add_batch(result)
        stage.progress(tally)
    wall = time.perf_counter() - started
    return StageResult(tally, tasks=sum(sizes.values()), wall_s=wall, batch_sizes=sizes, timings=timings,
                       notes=window_notes(window))
