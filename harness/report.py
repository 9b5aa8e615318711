"""report.md and report.html from a run folder's runs.csv / trace.csv / env.json, with PNG plots
beside them: which strategy, by how much, how sure we are, and what orchestration cost.

Wall times of strategies measured on a sample are compared through their projection to the
whole workload (wall x items_total / items) and marked as such; nothing is extrapolated
silently. The numbers come from harness.stats, the pictures from harness.plots; this module
only lays them out. `python -m harness report RUN_DIR` re-renders both files from the CSVs.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness import plots, stats
from harness.records import read_runs

PLOT_FILES = {"walls": "wall_per_strategy.png", "sweep": "wall_vs_batch_size.png", "trace": "adaptive_over_time.png"}
PLOT_TITLES = {
    "walls": "Wall time per strategy",
    "sweep": "Wall time against batch size (the sweep), adaptive marked",
    "trace": "Adaptive batch size and throughput over time",
}
LEGEND = (
    "wall: the mapping stage, first submit to last result, median over repeats (IQR: the middle "
    "half of the repeats); items/s: all items / median wall; × per_item: how many times faster "
    "than one task per item; / oracle and / ideal: wall over the best static's and over total item "
    "compute / worker threads; efficiency: ideal / wall (1 = every worker thread computing all the "
    "time); overhead: (wall × threads − compute) / tasks, what each task cost beyond its work."
)

REFERENCES_INTRO = "Ratio of median wall times with a 95 % bootstrap interval (below 1: adaptive is faster)."
TWINS_INTRO = ("Each dynamic-workflow run against its static twin (the same work with its shape fixed up front): "
               "median wall of dynamic / twin, 95 % bootstrap interval.")


@dataclass
class ReportData:
    """Everything the report shows, computed once and laid out as markdown or html."""

    name: str
    items_total: int
    threads: Any
    table: pd.DataFrame
    samples: dict[str, Any]
    references: list[stats.Reference]
    headline: str
    warnings: list[str]
    twins: list[stats.Ratio]
    notes: dict[str, list[str]]
    env: dict[str, Any]
    plots: dict[str, str] = field(default_factory=dict)  # key -> file name beside the report


def _read_trace(run_dir: Path) -> pd.DataFrame:
    path = run_dir / "trace.csv"
    try:
        return pd.read_csv(path) if path.is_file() else pd.DataFrame()
    except pd.errors.EmptyDataError:  # a run without adaptive writes a header-less empty file
        return pd.DataFrame()


def build(runs: pd.DataFrame, env: dict[str, Any]) -> ReportData:
    rows = stats.main_rows(runs)
    table = stats.summarize(rows)
    refs = stats.adaptive_references(rows, table)
    return ReportData(
        name=str(runs["workload"].iloc[0]),
        items_total=table.attrs["items_total"],
        threads=env.get("runtime", {}).get("worker_threads", "?"),
        table=table,
        samples=stats.samples_by_strategy(rows),
        references=refs,
        headline=stats.headline(refs),
        warnings=stats.instability_warnings(rows),
        twins=stats.variant_ratios(runs),
        notes=env.get("strategy_notes", {}) or {},
        env=env,
    )


def draw(data: ReportData, trace: pd.DataFrame, folder: Path) -> None:
    """Write the PNGs into `folder` and record which exist (a run without a sweep has no sweep plot)."""
    made = {
        "walls": plots.plot_walls(data.table, data.samples, folder / PLOT_FILES["walls"]),
        "sweep": plots.plot_sweep(data.table, folder / PLOT_FILES["sweep"]),
        "trace": plots.plot_trace(trace, data.items_total, data.env.get("phases", []), folder / PLOT_FILES["trace"])
        if not trace.empty else None,
    }
    data.plots = {key: path.name for key, path in made.items() if path is not None}


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.{digits}f}"


def summary_frame(data: ReportData) -> pd.DataFrame:
    """The comparison table as display strings, one row per strategy."""
    t = data.table
    return pd.DataFrame({
        "strategy": t.index,
        "repeats": t["repeats"].astype(int),
        "wall s (median)": [_fmt(v, 3) + ("*" if s else "") for v, s in zip(t["wall_s"], t["sampled"])],
        "IQR s": [f"{_fmt(a, 3)}–{_fmt(b, 3)}" for a, b in zip(t["q1_s"], t["q3_s"])],
        "items/s": [_fmt(v, 0) for v in t["throughput_items_s"]],
        "× per_item": [_fmt(v) for v in t["vs_per_item"]],
        "/ oracle": [_fmt(v) for v in t["vs_oracle"]],
        "/ ideal": [_fmt(v) for v in t["vs_ideal"]],
        "efficiency": [_fmt(v) for v in t["efficiency"]],
        "tasks": [_fmt(v, 0) for v in t["tasks"]],
        "batch": [_fmt(v, 0) for v in t["batch_size"]],
        "overhead ms/task": [_fmt(v, 1) for v in t["overhead_ms_per_task"]],
        "failed": [_fmt(v, 0) for v in t["failed"]],
        "peak RSS MB": [_fmt(v, 0) for v in t["peak_rss_mb"]],
    })


# Cells that read as numbers (figures, ranges, intervals, the sampled mark, the n/a dash): right-aligned.
_NUMERIC_CELL = re.compile(r"^[-+\d.,%×*–— \[\]]+$")


def markdown_table(frame: pd.DataFrame) -> str:
    """The frame's display strings exactly as formatted (no re-parsing), first column left, numbers right."""
    numeric = [all(_NUMERIC_CELL.match(str(v)) for v in frame[c]) for c in frame.columns]
    return frame.to_markdown(index=False, disable_numparse=True,
                             colalign=["right" if n and i else "left" for i, n in enumerate(numeric)])


def _ratio_frame(ratios: list[tuple[str, str, stats.Ratio]], what: str) -> pd.DataFrame:
    return pd.DataFrame({
        "against": [a for a, _, _ in ratios],
        "strategy": [s for _, s, _ in ratios],
        what: [_fmt(r.estimate, 3) for _, _, r in ratios],
        "95 % CI": [r.interval(3) for _, _, r in ratios],
        "verdict": [r.label for _, _, r in ratios],
        "in words": [r.phrase(s) for _, s, r in ratios],
    })


def references_frame(data: ReportData) -> pd.DataFrame:
    return _ratio_frame([(r.role, r.strategy, r.ratio) for r in data.references], "adaptive / it (wall)")


def twins_frame(data: ReportData) -> pd.DataFrame:
    frame = _ratio_frame([("static twin", r.numerator.rsplit(" ", 1)[0], r) for r in data.twins], "dynamic / twin (wall)")
    frame["in words"] = [f"dynamic took {r.phrase('its static twin')}" for r in data.twins]
    return frame


def _intro(data: ReportData) -> list[str]:
    lines = []
    oracle = data.table.attrs["oracle"]
    if oracle:
        lines.append(f"Best static batch size in hindsight (the oracle): {oracle}, "
                     f"{_fmt(data.table.loc[oracle, 'wall_s'], 3)} s.")
    best = data.table["wall_s"].idxmin()
    lines.append(f"Fastest overall: {best}, {_fmt(data.table.loc[best, 'wall_s'], 3)} s (median).")
    return lines


def _sampled_note(data: ReportData) -> str:
    t = data.table
    if not t["sampled"].any():
        return ""
    sampled = ", ".join(f"{s} ({int(t.loc[s, 'items']):,} items)" for s in t.index[t["sampled"]])
    return f"* measured on an evenly spread sample, wall projected to all {data.items_total:,} items: {sampled}."


def environment_lines(env: dict[str, Any]) -> list[str]:
    rt = env.get("runtime", {})
    startup = rt.get("startup", {})
    workers = rt.get("workers", [])
    lines = [
        f"Python {env.get('python')}, {env.get('platform')}, {env.get('cpu_count')} CPUs, {env.get('memory_gb')} GB",
        "packages: " + ", ".join(f"{k} {v}" for k, v in env.get("packages", {}).items() if v),
        f"git commit: {env.get('git_commit') or 'unknown'}",
        f"Dask: {len(workers)} workers, {rt.get('worker_threads', '?')} threads in all, scheduler {rt.get('scheduler_address', '?')}"
        + (f" ({rt['startup'].get('dask_cluster')}); workers: " if rt.get("startup") else "; workers: ")
        + ", ".join(f"{w.get('address')} x{w.get('nthreads')}" for w in workers),
        f"runtime profile: {rt.get('profile')}; start-up (not in any wall time): "
        + ", ".join(f"{k} {v}" for k, v in startup.items()),
        f"warm-up: {env.get('warm_up_s')} s; repeats: {env.get('repeats')} (interleaved, order rotated each repeat)",
        f"started {env.get('started_at')}, finished {env.get('finished_at')}",
    ]
    if env.get("sampling"):
        lines.append("sampling budgets: " + ", ".join(f"{k} {v}" for k, v in env["sampling"].items()))
    if env.get("phases"):
        lines.append("drift phases: " + ", ".join(f"from {p['at']:.0%} of items {p['mean_ms']} ms" for p in env["phases"]))
    return lines


def render_markdown(data: ReportData) -> str:
    lines = [f"# {data.name}: {data.items_total:,} items on {data.threads} worker threads", ""]
    if data.headline:
        lines += [f"**{data.headline}**", ""]
    lines += _intro(data) + [""]
    lines += [markdown_table(summary_frame(data)), ""]
    if note := _sampled_note(data):
        lines += ["\\" + note, ""]
    lines += [LEGEND, ""]
    if data.references:
        lines += ["## adaptive against the references", "", REFERENCES_INTRO, "",
                  markdown_table(references_frame(data)), ""]
    if data.twins:
        lines += ["## Dynamic vs static twin", "", TWINS_INTRO, "",
                  markdown_table(twins_frame(data)), ""]
    if data.warnings:
        lines += ["## Warnings", ""] + [f"- {w}" for w in data.warnings] + [""]
    if data.notes:
        lines += ["## Notes", ""]
        for strategy, said in data.notes.items():
            lines += [f"- {strategy}: {note}" for note in said]
        lines.append("")
    if data.plots:
        lines += ["## Plots", ""] + [f"![{PLOT_TITLES[k]}]({f})" for k, f in data.plots.items()] + [""]
    lines += ["## Environment", ""] + [f"- {line}" for line in environment_lines(data.env)]
    return "\n".join(lines) + "\n"


# Self-check run by the browser when the page loads: a missing PNG gets a visible note, and
# the page records how many images it could show (data-images-ok / data-images on <html>) and
# any script or resource error (data-errors), which the headless-browser test reads back.
_PAGE_SCRIPT = """
window.__errors = [];
window.addEventListener('error', function (e) {
  window.__errors.push((e.target && e.target.src) || e.message || 'error');
}, true);
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var ok = images.filter(function (img) { return img.complete && img.naturalWidth > 0; });
  images.forEach(function (img) {
    if (!(img.complete && img.naturalWidth > 0)) {
      var note = document.createElement('p');
      note.className = 'missing';
      note.textContent = 'image not found: ' + img.getAttribute('src');
      img.parentNode.insertBefore(note, img.nextSibling);
    }
  });
  var root = document.documentElement;
  root.setAttribute('data-images', String(images.length));
  root.setAttribute('data-images-ok', String(ok.length));
  root.setAttribute('data-errors', String(window.__errors.length));
});
"""

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 75em; padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f0f0f0; }
.headline { font-size: 1.25em; font-weight: 600; background: #eef6ee; padding: 0.6em 1em; border-left: 4px solid #2ca02c; }
.warn { color: #8a4b00; }
.missing { color: #b00; font-weight: 600; }
img { max-width: 100%; display: block; margin: 1em 0; }
.legend { font-size: 0.85em; color: #555; }
"""


def _table_html(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, escape=True, border=0)


def render_html(data: ReportData) -> str:
    e = html.escape
    title = f"{data.name}: {data.items_total:,} items on {data.threads} worker threads"
    parts = [f"<h1>{e(title)}</h1>"]
    if data.headline:
        parts.append(f'<p class="headline">{e(data.headline)}</p>')
    parts += [f"<p>{e(line)}</p>" for line in _intro(data)]
    parts.append(_table_html(summary_frame(data)))
    if note := _sampled_note(data):
        parts.append(f'<p class="legend">{e(note)}</p>')
    parts.append(f'<p class="legend">{e(LEGEND)}</p>')
    if data.references:
        parts += ["<h2>adaptive against the references</h2>", f"<p>{e(REFERENCES_INTRO)}</p>",
                  _table_html(references_frame(data))]
    if data.twins:
        parts += ["<h2>Dynamic vs static twin</h2>", f"<p>{e(TWINS_INTRO)}</p>", _table_html(twins_frame(data))]
    if data.warnings:
        parts += ["<h2>Warnings</h2>", "<ul>"] + [f'<li class="warn">{e(w)}</li>' for w in data.warnings] + ["</ul>"]
    if data.notes:
        parts += ["<h2>Notes</h2>", "<ul>"]
        parts += [f"<li>{e(s)}: {e(n)}</li>" for s, said in data.notes.items() for n in said] + ["</ul>"]
    if data.plots:
        parts.append("<h2>Plots</h2>")
        parts += [f'<figure><img src="{e(f)}" alt="{e(PLOT_TITLES[k])}"><figcaption>{e(PLOT_TITLES[k])}</figcaption></figure>'
                  for k, f in data.plots.items()]
    parts += ["<h2>Environment</h2>", "<ul>"] + [f"<li>{e(line)}</li>" for line in environment_lines(data.env)] + ["</ul>"]
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{e(title)}</title>\n'
            f"<style>{_CSS}</style>\n<script>{_PAGE_SCRIPT}</script>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def load(run_dir: Path) -> tuple[ReportData, pd.DataFrame]:
    run_dir = Path(run_dir)
    runs = read_runs(run_dir)
    env = json.loads((run_dir / "env.json").read_text())
    return build(runs, env), _read_trace(run_dir)


def write_report(run_dir: Path) -> Path:
    """Write report.md, report.html and their PNGs into `run_dir`; return report.md's path."""
    run_dir = Path(run_dir)
    data, trace = load(run_dir)
    draw(data, trace, run_dir)
    (run_dir / "report.html").write_text(render_html(data))
    path = run_dir / "report.md"
    path.write_text(render_markdown(data))
    return path
