"""One line per run: how the adaptive strategy did against every reference, across workloads.

README's benchmark table is this module's output over one run folder per workload
(`python -m harness table results/bench-*/latest`). Each line reads its run's CSVs through
harness.analysis.stats, so a ratio here is the report's ratio: median wall over median wall, sampled
strategies projected to all items, with the same exact distribution-free 95 % interval (or
"too few repeats" when the run had fewer than a verdict needs). `--json` gives each run's
results.json figures instead.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.analysis import stats
from harness.errors import SpecError
from harness.measure.records import read_run_folder
from harness.measure.results_file import read_results
from harness.workload.vocabulary import Strategy

COLUMNS = ("workload", "work", "best static N", "adaptive / best static", "adaptive vs per_item",
           "adaptive / raw_dask (best N)", "adaptive / joblib_auto")


def _workload_line(env: dict) -> str:
    """'12,000 items, cpu lognormal 0.05 ms' from env.json's workload block."""
    w = env.get("workload", {})
    cost = w.get("cost") or {}
    items = f"{w.get('items', 0):,} items"
    if not cost:
        return items
    return f"{items}, {cost.get('kind', '')} {cost.get('distribution', '')} {cost.get('mean_ms', '')} ms".strip()


def _ratio_cell(ref: stats.Reference | None, *, speedup: bool = False) -> str:
    """'1.11× [1.05, 1.17]', '40× [38, 44] faster' (speedup), or the estimate and 'too few repeats'."""
    if ref is None:
        return "—"
    r = ref.ratio.inverted() if speedup else ref.ratio
    digits = 0 if r.estimate >= 10 else 2
    word = " faster" if speedup else ""
    if not r.has_interval:
        return f"{r.estimate:,.{digits}f}×{word} (too few repeats, need ≥ {r.need or stats.repeats_needed()})"
    mark = "" if r.significant else " (n.s.)"
    return f"{r.estimate:,.{digits}f}× {r.interval(digits)}{word}{mark}"


def run_line(run_dir: Path) -> dict[str, str]:
    """The table's line for one run folder (raises SpecError when it is not one)."""
    folder = read_run_folder(run_dir)  # SpecError naming a damaged or missing file
    runs, env = stats.main_rows(folder.runs), folder.env
    table = stats.summarize(runs)
    refs = {r.role: r for r in stats.adaptive_references(runs, table)}
    oracle = table.attrs.get("oracle")
    best = refs.get("best static")
    raw = refs.get("best raw_dask")
    return {
        "workload": str(runs["workload"].iloc[0]),
        "work": _workload_line(env),
        "best static N": str(Strategy.parse(oracle).batch_size) if oracle else "—",
        "adaptive / best static": _ratio_cell(best),
        "adaptive vs per_item": _ratio_cell(refs.get("per_item"), speedup=True)
        if "per_item" in refs and refs["per_item"].ratio.estimate < 1 else _ratio_cell(refs.get("per_item")),
        "adaptive / raw_dask (best N)": f"{_ratio_cell(raw)} ({Strategy.parse(raw.strategy).batch_size})" if raw else "—",
        "adaptive / joblib_auto": _ratio_cell(refs.get("joblib_auto")),
    }


def table(run_dirs: list[Path]) -> pd.DataFrame:
    if not run_dirs:
        raise SpecError("table: no run folders given")
    return pd.DataFrame([run_line(Path(d)) for d in run_dirs], columns=list(COLUMNS))


def table_json(run_dirs: list[Path]) -> list[dict]:
    """Each run folder's results.json (rebuilt from its CSVs when the run predates it), with its path."""
    if not run_dirs:
        raise SpecError("table: no run folders given")
    out = []
    for d in map(Path, run_dirs):
        read_run_folder(d)  # SpecError naming a damaged or missing file
        out.append({"run_dir": str(d), **read_results(d)})
    return out


def render(frame: pd.DataFrame) -> str:
    legend = ("Ratios are median wall / median wall with an exact distribution-free 95 % interval over the repeats "
              "(below 1: adaptive is faster); \"faster\" is the inverse; (n.s.): the interval straddles 1.")
    return frame.to_markdown(index=False, disable_numparse=True) + "\n\n" + legend + "\n"
