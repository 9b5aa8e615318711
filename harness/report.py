"""report.md from a run folder's CSVs: the strategies side by side, against per_item, the best
static batch size in hindsight (the oracle) and the ideal (all work spread evenly over the
worker threads).

Wall times of strategies measured on a sample are compared through their projection to the
whole workload (wall x items_total / items) and marked as such; nothing is extrapolated silently.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from harness.records import read_runs


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per strategy: medians over repeats and ratios against the references."""
    grouped = runs.groupby("strategy", sort=False)
    table = pd.DataFrame({
        "repeats": grouped.size(),
        "items": grouped["items"].max(),
        "sampled": grouped["sampled"].any(),
        "wall_s": grouped["projected_wall_s"].median(),
        "iqr_s": grouped["projected_wall_s"].quantile(0.75) - grouped["projected_wall_s"].quantile(0.25),
        "throughput_items_s": grouped["throughput_items_s"].median(),
        "tasks": grouped["tasks"].median(),
        "batch_size": grouped["batch_size_median"].median(),
        "overhead_ms_per_task": grouped["overhead_per_task_ms"].median(),
        "ideal_s": (grouped["ideal_s"].median() * runs["items_total"].max() / grouped["items"].max()),
        "failed": grouped["items_failed"].max(),
        "retries": grouped["retries"].median(),
        "peak_rss_mb": grouped["peak_rss_mb"].max(),
    })
    statics = table[table.index.str.startswith("static:")]
    oracle_wall = statics["wall_s"].min() if len(statics) else math.nan
    per_item_wall = table["wall_s"].get("per_item", math.nan)
    table["vs_per_item"] = per_item_wall / table["wall_s"]
    table["vs_oracle"] = table["wall_s"] / oracle_wall
    table["vs_ideal"] = table["wall_s"] / table["ideal_s"]
    table.attrs["oracle"] = statics["wall_s"].idxmin() if len(statics) else None
    return table


def _fmt(value: float, digits: int = 2) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.{digits}f}"


def render_markdown(runs: pd.DataFrame, env: dict) -> str:
    table = summarize(runs)
    name = runs["workload"].iloc[0]
    total = int(runs["items_total"].max())
    threads = env.get("runtime", {}).get("worker_threads", "?")
    lines = [f"# {name}: {total:,} items on {threads} worker threads", ""]
    oracle = table.attrs["oracle"]
    if oracle:
        lines.append(f"Best static batch size in hindsight (the oracle): **{oracle}**, "
                     f"{_fmt(table.loc[oracle, 'wall_s'], 3)} s.")
    if "adaptive" in table.index and oracle:
        lines.append(f"adaptive / oracle: **{_fmt(table.loc['adaptive', 'vs_oracle'])}x**.")
    lines.append("")
    shown = pd.DataFrame({
        "strategy": table.index,
        "wall s (median)": [_fmt(v, 3) + ("*" if s else "") for v, s in zip(table["wall_s"], table["sampled"])],
        "IQR s": [_fmt(v, 3) for v in table["iqr_s"]],
        "items/s": [_fmt(v, 0) for v in table["throughput_items_s"]],
        "x per_item": [_fmt(v) for v in table["vs_per_item"]],
        "/ oracle": [_fmt(v) for v in table["vs_oracle"]],
        "/ ideal": [_fmt(v) for v in table["vs_ideal"]],
        "tasks": [_fmt(v, 0) for v in table["tasks"]],
        "batch": [_fmt(v, 0) for v in table["batch_size"]],
        "overhead ms/task": [_fmt(v, 1) for v in table["overhead_ms_per_task"]],
        "failed": [_fmt(v, 0) for v in table["failed"]],
        "peak RSS MB": [_fmt(v, 0) for v in table["peak_rss_mb"]],
    })
    lines.append(shown.to_markdown(index=False))
    lines.append("")
    if table["sampled"].any():
        sampled = ", ".join(f"{s} ({int(table.loc[s, 'items']):,} items)" for s in table.index[table["sampled"]])
        lines.append(f"\\* measured on an evenly spread sample, wall projected to all {total:,} items: {sampled}.")
        lines.append("")
    for strategy, said in env.get("strategy_notes", {}).items():
        lines += [f"- {strategy}: {note}" for note in said] + [""]
    lines += [
        "wall: the mapping stage, first submit to last result, median over repeats; "
        "x per_item: how many times faster than one task per item; / oracle and / ideal: wall "
        "over the best static's and over total item compute / worker threads; overhead: "
        "(wall x threads - compute) / tasks.",
        "",
        "## Environment",
        "",
        f"- Python {env.get('python')}, {env.get('platform')}, {env.get('cpu_count')} CPUs, {env.get('memory_gb')} GB",
        f"- packages: {', '.join(f'{k} {v}' for k, v in env.get('packages', {}).items() if v)}",
        f"- git commit: {env.get('git_commit') or 'unknown'}",
        f"- runtime profile: {env.get('runtime', {}).get('profile')}; start-up: {env.get('runtime', {}).get('startup')}",
    ]
    return "\n".join(lines) + "\n"


def write_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    runs = read_runs(run_dir)
    env = json.loads((run_dir / "env.json").read_text())
    path = run_dir / "report.md"
    path.write_text(render_markdown(runs, env))
    return path
