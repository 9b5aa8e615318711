"""`per_item`: one Prefect task per item, the plain dynamic-mapping idiom `task.map(items)`."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from prefect import unmapped
from prefect.futures import as_completed

from harness.strategies.base import Stage, StageResult, Strategy
from harness.strategies.tasks import process_item
from harness.strategies.timings import TaskTimings
from harness.workloads import PermanentFault, Tally, TransientFault


def _fold_item_future(future: Any, tally: Tally, timings: TaskTimings) -> None:
    outcome = future.result(raise_on_failure=False)
    if isinstance(outcome, (PermanentFault, TransientFault)):
        timings.finished(id(future), None)
        tally.add_failure(outcome.index, outcome.attempt, type(outcome).__name__)
    elif isinstance(outcome, BaseException):
        raise outcome
    else:
        timings.finished(id(future), outcome.compute_s)
        tally.add(outcome)


def execute(strategy: Strategy, stage: Stage) -> StageResult:
    tally = Tally()
    started = time.perf_counter()
    timings = TaskTimings(started)
    futures = process_item.with_options(retries=stage.retries).map(
        list(stage.iter_items()), unmapped(stage.cost_kind)
    )
    timings.mapped(futures, [1] * len(futures))
    for future in as_completed(futures):
        _fold_item_future(future, tally, timings)
        stage.progress(tally)
    wall = time.perf_counter() - started
    return StageResult(tally, tasks=len(futures), wall_s=wall, batch_sizes=Counter({1: len(futures)}),
                       timings=timings)
