"""`raw_dask:N`: the same batches as static:N through Dask alone (`client.submit`), no Prefect:
the overhead floor. The same window too (base.submit_window): at most that many Dask futures
are alive at once, enough to keep the cluster busy while the flow process's memory stays flat
in the item count."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from distributed import as_completed

from harness.strategies.base import Stage, StageResult, window_notes
from harness.workload.vocabulary import Strategy
from harness.strategies.timings import TaskTimings
from harness.work.kernels import run_batch_folded
from harness.work.outcomes import Tally


def execute(strategy: Strategy, stage: Stage) -> StageResult:
    assert strategy.batch_size is not None  # a sized kind: Strategy checks it
    client = stage.client
    tally = Tally()
    sizes: Counter[int] = Counter()
    window = stage.submit_window(strategy.batch_size)
    batches = stage.iter_batches(strategy.batch_size)
    tasks = 0
    started = time.perf_counter()
    timings = TaskTimings(started)

    def submit_next() -> Any:
        nonlocal tasks
        batch = next(batches, None)
        if batch is None:
            return None
        tasks += 1
        sizes[len(batch)] += 1
        # pure=False: identical batches (same items) must still run, as they would in Prefect.
        future = client.submit(run_batch_folded, batch, stage.cost_kind, stage.retries, pure=False)
        timings.submitted(id(future), len(batch))
        return future

    looked = time.perf_counter()  # the flow is away from the start: filling the window takes a while
    first = [f for f in (submit_next() for _ in range(window.tasks)) if f is not None]
    with client.as_current():  # distributed.as_completed finds its client through this
        pending = as_completed(first)
        while not pending.is_empty():
            timings.in_flight(pending.count())
            # Already done when the flow looks: it finished at some point since the last look.
            away_s = time.perf_counter() - looked if pending.has_ready() else 0.0
            future = next(pending)
            looked = time.perf_counter()
            result = future.result()
            timings.finished(id(future), result.compute_s, away_s=away_s)
            tally.add_batch(result)
            future.release()
            stage.progress(tally)
            nxt = submit_next()
            if nxt is not None:
                pending.add(nxt)
    wall = time.perf_counter() - started
    return StageResult(tally, tasks=tasks, wall_s=wall, batch_sizes=sizes, timings=timings,
                       notes=window_notes(window))
