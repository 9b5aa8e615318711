"""The report where Prefect users already look: the headline and the comparison table as
artifacts on a small `harness-report` flow run, in the same API server the run used.

Run while the runtime is still up, after the run folder is committed (run.py's `on_committed`),
so the link points at the folder's final path; the flow has no tasks, so it needs no Dask and
costs about one flow-run round trip. Its flow run is "<workload>/report", tagged like the run's
flow runs (harness.patterns.labels).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import flow, tags
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from harness.patterns.labels import HARNESS_TAG
from harness.report.run_report import read_report, render


def artifact_key(workload: str, what: str) -> str:
    """Prefect keys allow lowercase letters, digits and dashes only: `harness-<workload>-<what>`."""
    return re.sub(r"[^a-z0-9-]+", "-", f"harness-{workload}-{what}".lower()).strip("-")


def _publish(workload: str, headline: str, summary_md: str, table: list[dict[str, Any]]) -> None:
    create_markdown_artifact(summary_md, key=artifact_key(workload, "headline"),
                             description=headline or f"{workload}: strategy comparison")
    create_table_artifact(table, key=artifact_key(workload, "summary"),
                          description=f"{workload}: one row per strategy, medians over repeats")


# Named apart from its function, like the harness's other flows.
publish_report = flow(_publish, name="harness-report", validate_parameters=False, persist_result=False)


def report_link(run_dir: Path) -> str:
    """Where the artifact points: the committed folder's report.html, as an absolute path (the
    Prefect UI may run anywhere; the path names the machine's file)."""
    return str(Path(run_dir).resolve() / "report.html")


def publish(run_dir: Path) -> UUID:
    """Create the artifacts for the report in `run_dir`; return the flow run that carries them.
    `run_dir` is a committed run folder: its name is the run id its flow runs are tagged with."""
    run_dir = Path(run_dir)
    report = read_report(run_dir)
    markdown = render(report, "artifact.md.j2", report_html=report_link(run_dir))
    flow_obj = publish_report.with_options(flow_run_name=f"{report.name}/report")
    with tags(HARNESS_TAG, f"workload:{report.name}", f"run:{run_dir.name}"):
        state = flow_obj(report.name, report.headline, markdown, report.strategies.records(), return_state=True)
    return state.state_details.flow_run_id
