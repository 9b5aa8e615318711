"""results.json: every figure of a run's report, machine-readable and schema-versioned.

Built from runs.csv's rows and env.json alone (harness.analysis.stats does the numbers, as for the
report), and written by run.py with the CSVs before the run folder is committed, so it never
depends on the report rendering. The schema is harness/schemas/results.schema.json, documented
in README ("results.json"); `validate` checks a document against it.
"""

from __future__ import annotations

import json
import math
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from harness.measure.machine_load import LOAD_COLUMNS, load_warnings

from harness.analysis import overhead, server_load, settle, stats
from harness.measure.records import read_run_folder
from harness.measure.run_folder import write_json

SCHEMA_ID = "harness.results/1"
# History: harness.results/1 (this version): strategies, references, twins, verdicts, settling, load;
# later the optional `overhead` and `server_load` blocks (additive: readers of the first documents
# are unaffected).

# The per-strategy figures, as harness.analysis.stats.summarize names them.
STRATEGY_FIELDS = ("repeats", "items", "sampled", "wall_s", "q1_s", "q3_s", "iqr_s", "throughput_items_s",
                   "vs_per_item", "vs_oracle", "vs_ideal", "efficiency", "ideal_s", "tasks", "batch_size",
                   "overhead_ms_per_task", "failed", "retries", "peak_rss_mb")


def _plain(value: Any) -> Any:
    """numpy/pandas scalars as JSON values; NaN as null."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


def build(runs: pd.DataFrame, env: dict[str, Any]) -> dict[str, Any]:
    rows = stats.main_rows(runs)
    table = stats.summarize(rows)
    refs = stats.adaptive_references(rows, table)
    settling = env.get("settling")
    return {
        "schema": SCHEMA_ID,
        "workload": {"name": str(runs["workload"].iloc[0]), "digest": env.get("workload_digest"),
                     "items_total": table.attrs["items_total"], **(env.get("workload") or {})},
        "repeats": {"rounds": int(rows["repeat"].nunique()) if "repeat" in rows else None,
                    "requested": env.get("repeats_requested", env.get("repeats")),
                    "needed_for_a_verdict": stats.repeats_needed(), "confidence": stats.CONFIDENCE},
        "settling": None if not settling else {
            **settling, "ratios": [s.as_dict() for s in settle.statuses_of(runs, settling)]},
        "oracle": table.attrs["oracle"],
        "headline": stats.run_headline(refs, table, env.get("strategy_notes")),
        "strategies": [{"strategy": str(name), **{k: _plain(table.loc[name, k]) for k in STRATEGY_FIELDS}}
                       for name in table.index],
        "references": [{"role": r.role, "strategy": r.strategy, "ratio": r.ratio.as_dict()} for r in refs],
        "twins": [r.as_dict() for r in stats.variant_ratios(runs)],
        "overhead": _overhead(rows),
        "server_load": _server_load(rows),
        "warnings": stats.instability_warnings(rows) + load_warnings(runs, env.get("cpu_count")),
        "load": _load(runs, env),
        "environment": env,
    }


OVERHEAD_FIELDS = ("overhead_ms_per_task", "fixed_ms_per_task", "transfer_us_per_item", "flow_lag_ms_per_task",
                   "idle_ms_per_task", "tail_idle_s")


def _overhead(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """The report's "Where the overhead goes" table (harness.analysis.overhead.per_strategy)."""
    split = overhead.per_strategy(rows).rename(columns={"overhead_per_task_ms": "overhead_ms_per_task"})
    return [{"strategy": str(name), **{k: _plain(split.loc[name, k]) for k in OVERHEAD_FIELDS}}
            for name in split.index]


def _server_load(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """The report's "What the Prefect server saw" (harness.analysis.server_load): per 1,000 items."""
    per = server_load.per_thousand_items(rows)
    return [{"strategy": str(name), **{f"{k}_per_1000_items": _plain(per.loc[name, k]) for k in per.columns}}
            for name in per.index]


def _load(runs: pd.DataFrame, env: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"at_start": None, "at_end": None, **(env.get("load") or {})}
    for column in LOAD_COLUMNS:
        out[f"{column}_max"] = _plain(runs[column].max()) if column in runs else None
    out["cpu_idle_pct_min"] = _plain(runs["cpu_idle_pct"].min()) if "cpu_idle_pct" in runs else None
    return out


def write_results(folder: Path, runs: pd.DataFrame, env: dict[str, Any]) -> Path:
    path = Path(folder) / "results.json"
    write_json(path, build(runs, env))
    return path


def read_results(run_dir: Path) -> dict[str, Any]:
    """results.json of a run folder, rebuilt from its CSVs when the folder predates it."""
    run_dir = Path(run_dir)
    path = run_dir / "results.json"
    if path.is_file():
        return json.loads(path.read_text())
    folder = read_run_folder(run_dir)  # SpecError naming a damaged file
    return build(folder.runs, folder.env)


@cache
def schema() -> dict[str, Any]:
    return json.loads(resources.files("harness").joinpath("schemas/results.schema.json").read_text())


def validate(document: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError when `document` does not follow the schema."""
    import jsonschema

    jsonschema.validate(document, schema())
