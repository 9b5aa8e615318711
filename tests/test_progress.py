"""The progress display: silent off a terminal, and on one it tracks items done, throughput
and the batch size of the last finished task, fed by a real stage's on_progress calls."""

from __future__ import annotations

import io

import pytest

from harness.patterns import run_pattern
from harness.report.progress import ProgressDisplay
from harness.workload.vocabulary import Strategy
from harness.strategies import Stage
from harness.work.synthetic import Workload


def test_quiet_when_the_stream_is_not_a_terminal():
    stream = io.StringIO()
    with ProgressDisplay(stream) as display:
        update = display.stage("static:5 1/1", 20)
        for done in (5, 10, 15, 20):
            update(done)
    assert not display.enabled and stream.getvalue() == ""


def test_on_a_terminal_it_shows_items_rate_and_batch():
    stream = io.StringIO()
    with ProgressDisplay(stream, force=True) as display:
        update = display.stage("adaptive 1/3", 100)
        update(8)
        update(24)
        (row,) = display.rows
        second = display.stage("per_item 1/3", 10)  # the next stage replaces the first
        second(1)
        (next_row,) = display.rows
    assert row["completed"] == 24 and row["total"] == 100 and row["batch"] == "16"
    assert float(row["rate"].replace(",", "")) > 0
    assert next_row["name"] == "per_item 1/3"
    assert "adaptive 1/3" in stream.getvalue()


@pytest.mark.cluster
def test_a_real_stage_reports_each_finished_batch(runtime, make_spec):
    spec = make_spec(name="progress", count=40, strategies=("static:10",))
    workload = Workload(spec)
    seen: list[int] = []
    with ProgressDisplay(io.StringIO(), force=True) as display:
        update = display.stage("static:10", len(workload))
        stage = Stage(workload, None, spec.cost.kind, spec.faults.retries, runtime.worker_threads, runtime.client,
                      on_progress=lambda done: (seen.append(done), update(done)))
        run_pattern(spec, Strategy("static", 10), stage, runtime)
        (row,) = display.rows
    assert seen == [10, 20, 30, 40]
    assert row["completed"] == 40 and row["batch"] == "10"
