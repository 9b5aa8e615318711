"""What each strategy costs the Prefect server (runs.csv's prefect_* columns, the report's "What
the Prefect server saw"): counted on the client side, checked against what the API lists."""

from __future__ import annotations

import json
import math
import time

import pandas as pd
import pytest
from run_fixture import write_run

from harness.analysis.server_load import per_thousand_items
from harness.api.benchmark import BenchmarkResult
from harness.measure import results_file
from harness.measure.records import RUN_COLUMNS
from harness.report.run_report import read_report, render_html, render_markdown

SECTION = "What the Prefect server saw"
# The server's task-run recorder writes what the events say in batches, after the run has sent
# them: how long the test waits for every task run of a flow run to be there, finished.
RECORDER_WAIT_S = 60.0


def _listed(client, run_id: str, flow_run_name: str, tasks: int) -> tuple[int, int]:
    """(task runs, task-run states) the API lists for the flow run of that name in that run,
    once the recorder has written all `tasks` of them in a final state."""
    from prefect.client.schemas.filters import (FlowRunFilter, FlowRunFilterName, FlowRunFilterTags,
                                                TaskRunFilter, TaskRunFilterFlowRunId)

    (flow_run,) = client.read_flow_runs(flow_run_filter=FlowRunFilter(
        name=FlowRunFilterName(any_=[flow_run_name]), tags=FlowRunFilterTags(all_=[f"run:{run_id}"])))
    by_flow_run = TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run.id]))
    deadline = time.monotonic() + RECORDER_WAIT_S
    while True:
        task_runs = client.read_task_runs(task_run_filter=by_flow_run)
        if (len(task_runs) >= tasks and all(t.state is not None and t.state.is_final() for t in task_runs)) \
                or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return len(task_runs), sum(len(client.read_task_run_states(t.id)) for t in task_runs)


@pytest.mark.cluster
def test_the_counts_are_what_the_api_lists(runtime, make_spec, tmp_path):
    from prefect.client.orchestration import get_client

    from harness.measure.run import run_workload
    from harness.workload.spec import with_overrides

    # Items of 10 ms: adaptive sends tasks rather than running so small a stage inline.
    spec = with_overrides(make_spec(name="serverload", count=40, mean_ms=10.0, repeats=1,
                                    strategies=("per_item", "static:8", "adaptive", "raw_dask:8")),
                          address=runtime.scheduler_address)
    folder = run_workload(spec, tmp_path / "results")
    runs = pd.read_csv(folder / "runs.csv")
    assert list(runs.columns) == list(RUN_COLUMNS)
    with get_client(sync_client=True) as client:
        for r in runs.itertuples():
            if r.strategy.startswith("raw_dask"):  # Dask alone: nothing reaches Prefect
                assert (r.prefect_task_runs, r.prefect_state_changes, r.prefect_api_requests) == (0, 0, 0)
                continue
            listed = _listed(client, folder.name, f"serverload/{r.strategy}/r{r.repeat}", r.tasks)
            assert (r.prefect_task_runs, r.prefect_state_changes) == listed, r.strategy
            assert r.prefect_task_runs == r.tasks  # one task run per task the strategy counted
            assert r.prefect_state_changes >= 3 * r.tasks  # Pending, Running, Completed at least
            assert r.prefect_api_requests > 0  # the flow run's own, at least


def test_the_section_per_thousand_items(tmp_path):
    runs = _with_counts(pd.read_csv(write_run(tmp_path / "run") / "runs.csv"))
    table = per_thousand_items(runs)
    # per_item on a sample of 500 items: 500 task runs, 3 states each, 2 requests a task run + 10.
    assert table.loc["per_item"].tolist() == [1000.0, 3000.0, 2020.0]
    assert table.loc["static:50"].tolist() == [20.0, 60.0, 41.0]
    assert table.loc["raw_dask:50"].tolist() == [0.0, 0.0, 0.0]
    runs.to_csv(tmp_path / "run" / "runs.csv", index=False)
    report = read_report(tmp_path / "run")
    rows = {row["strategy"]: row for row in report.server_load.records()}
    assert rows["per_item"]["task runs"] == "1,000" and rows["per_item"]["API requests"] == "2,020"
    assert rows["joblib_auto"]["Prefect"] == "no" and rows["joblib_auto"]["state changes"] == "0"
    for text in (render_markdown(report), render_html(report)):
        assert SECTION in text and "per 1,000 items" in text
    document = results_file.build(runs, json.loads((tmp_path / "run" / "env.json").read_text()))
    results_file.validate(document)
    assert document["server_load"][0] == {"strategy": "per_item", "task_runs_per_1000_items": 1000.0,
                                          "state_changes_per_1000_items": 3000.0,
                                          "api_requests_per_1000_items": 2020.0}
    assert BenchmarkResult(tmp_path / "run", runs).server_load.equals(table)


def test_no_section_without_the_columns(tmp_path):
    """Run folders from before the columns (and runs.csv with them empty) show no such section."""
    folder = write_run(tmp_path / "run")
    runs = pd.read_csv(folder / "runs.csv")
    assert per_thousand_items(runs.drop(columns=["prefect_task_runs", "prefect_state_changes",
                                                 "prefect_api_requests"], errors="ignore")).empty
    report = read_report(folder)
    assert not report.server_load.rows
    assert SECTION not in render_markdown(report) and SECTION not in render_html(report)
    assert results_file.build(runs, {})["server_load"] == []


def _with_counts(runs: pd.DataFrame) -> pd.DataFrame:
    """The fixture's rows with counts: a Prefect task run writes 3 states and makes 2 requests,
    each flow run 10 more; the references send nothing."""
    prefect = ~runs["strategy"].str.startswith(("raw_dask", "joblib"))
    runs["prefect_task_runs"] = runs["tasks"].where(prefect, 0)
    runs["prefect_state_changes"] = 3 * runs["prefect_task_runs"]
    runs["prefect_api_requests"] = (2 * runs["prefect_task_runs"] + 10).where(prefect, 0)
    assert not math.isnan(runs["prefect_api_requests"].sum())
    return runs
