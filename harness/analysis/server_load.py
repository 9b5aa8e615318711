"""What each strategy cost the Prefect server, per 1,000 items: task runs created, task-run states
written and HTTP requests, from runs.csv's prefect_* columns (harness.runtime.api_calls counts
them). Pure: the report, results.json and harness.benchmark show the same figures."""

from __future__ import annotations

import pandas as pd

# runs.csv's columns and the names the per-1,000-items figures go by.
COLUMNS = {"prefect_task_runs": "task_runs", "prefect_state_changes": "state_changes",
           "prefect_api_requests": "api_requests"}
PER_ITEMS = 1000


def per_thousand_items(runs: pd.DataFrame) -> pd.DataFrame:
    """Per strategy (in runs.csv's order), the median over repeats of each count per 1,000 items
    the run processed (a sampled run: per 1,000 of its sample). Empty when runs.csv has no such
    columns or no counts (run folders from before them)."""
    if any(c not in runs for c in COLUMNS):
        return pd.DataFrame(columns=list(COLUMNS.values()))
    rows = runs[runs[list(COLUMNS)].notna().all(axis=1) & (runs["items"] > 0)]
    per = rows[list(COLUMNS)].div(rows["items"], axis=0).mul(PER_ITEMS).rename(columns=COLUMNS)
    return per.groupby(rows["strategy"].astype(str), sort=False).median()
