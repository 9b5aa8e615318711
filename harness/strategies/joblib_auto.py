"""`joblib_auto`: joblib's `Parallel(batch_size="auto")` on the same Dask cluster, no Prefect.

Its memory is joblib's: it bounds no bytes in flight. `pre_dispatch` counts batches, not items,
batch_size="auto" has no upper bound (it grows while a batch takes under 0.2 s), and joblib
reads batch_size x threads items ahead; a fixed batch size would no longer be joblib's "auto".
So the window of the other strategies (base.submit_window) does not apply here, and the
preflight (harness.measure.admission) counts every item of the stage as possibly in flight,
refusing a workload where that cannot fit."""

from __future__ import annotations

import time
from collections import Counter

import joblib

from harness.strategies.base import Stage, StageResult
from harness.workload.vocabulary import Strategy
from harness.work.kernels import run_batch
from harness.work.outcomes import BatchResult, Tally
from harness.work.synthetic import Item


def _joblib_item(item: Item, cost_kind: str, retries: int) -> BatchResult:
    return run_batch([item], cost_kind, retries)


def execute(strategy: Strategy, stage: Stage) -> StageResult:
    tally = Tally()
    started = time.perf_counter()
    with stage.client.as_current(), joblib.parallel_config(backend="dask"):
        parallel = joblib.Parallel(batch_size="auto", return_as="generator_unordered")
        for result in parallel(
            joblib.delayed(_joblib_item)(item, stage.cost_kind, stage.retries)
            for item in stage.iter_items()
        ):
            tally.add_batch(result)
            stage.progress(tally)
    wall = time.perf_counter() - started
    batches = parallel.n_dispatched_batches
    median = round(stage.items / batches) if batches else 0
    return StageResult(tally, tasks=batches, wall_s=wall, batch_sizes=Counter({median: batches}),
                       notes=["joblib reports batch counts, not sizes: batch size is items / batches"])
