"""The report in the Prefect UI: headline and table as artifacts on a `harness-report` flow
run, read back with Prefect's client from the session's real API server."""

from __future__ import annotations

import json

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from run_fixture import TRUE_WALL_S, write_run

from harness.report.artifacts import artifact_key, publish
from harness.report.run_report import read_report


def test_artifact_keys_are_what_prefect_accepts():
    assert artifact_key("Big_Run.v2", "summary") == "harness-big-run-v2-summary"


@pytest.mark.cluster
def test_headline_and_table_reach_the_flow_run(runtime, tmp_path):
    folder = write_run(tmp_path / "run")
    flow_run_id = publish(folder)
    data = read_report(folder)
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        flow_run = client.read_flow_run(flow_run_id)
    assert flow_run.state.is_completed()
    by_type = {a.type: a for a in artifacts}
    assert set(by_type) == {"markdown", "table"}
    markdown, table = by_type["markdown"], by_type["table"]
    assert markdown.key == "harness-fixture-headline" and table.key == "harness-fixture-summary"
    assert data.headline and data.headline in markdown.data and markdown.description == data.headline
    rows = table.data if isinstance(table.data, list) else json.loads(table.data)  # stored as JSON text
    assert [row["strategy"] for row in rows] == list(TRUE_WALL_S)
    assert rows == data.strategies.frame().to_dict("records")  # the comparison table as display strings
