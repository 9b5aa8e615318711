"""`per_item`: one Prefect task per item (what `task.map(items)` builds), submitted through a
bounded window (base.submit_window: tasks per worker thread, bytes of payload) fed lazily from
the items."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from harness.strategies.base import Stage, StageResult, window_notes
from harness.workload.vocabulary import Strategy
from harness.strategies.tasks import process_item, windowed
from harness.strategies.timings import TaskTimings
from harness.work.faults import PermanentFault, TransientFault
from harness.work.outcomes import Tally


def _fold_item_future(future: Any, tally: Tally, timings: TaskTimings, away_s: float) -> None:
    outcome = future.result(raise_on_failure=False)
    if isinstance(outcome, (PermanentFault, TransientFault)):
        timings.finished(id(future), None, away_s=away_s)
        tally.add_failure(outcome.index, outcome.attempt, type(outcome).__name__)
    elif isinstance(outcome, BaseException):
        raise outcome
    else:
        timings.finished(id(future), outcome.compute_s, away_s=away_s)
        tally.add(outcome)


def execute(strategy: Strategy, stage: Stage) -> StageResult:
    tally = Tally()
    started = time.perf_counter()
    timings = TaskTimings(started)
    task = process_item.with_options(retries=stage.retries)
    tasks = 0

    def submissions() -> Iterator[Any]:
        nonlocal tasks
        for item in stage.iter_items():
            future = task.submit(item, stage.cost_kind)
            timings.submitted(id(future), 1)
            tasks += 1
            if not tally.items:  # the progress line counts submissions until results arrive
                stage.submitted(tasks)
            yield future

    window = stage.submit_window(1)
    for future, away_s in windowed(submissions(), window.tasks, timings.in_flight):
        _fold_item_future(future, tally, timings, away_s)
        stage.progress(tally)
    wall = time.perf_counter() - started
    return StageResult(tally, tasks=tasks, wall_s=wall, batch_sizes=Counter({1: tasks}), timings=timings,
                       notes=window_notes(window))
