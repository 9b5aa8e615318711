"""report.md and report.html from a run folder's runs.csv / trace.csv / env.json, with PNG plots
beside them: which strategy, by how much, how sure we are, and what orchestration cost.

Wall times of strategies measured on a sample are compared through their projection to the
whole workload (wall x items_total / items) and marked as such; nothing is extrapolated
silently. The numbers come from harness.stats, the pictures from harness.plots. This module
builds one `Report` from them (a frozen tree of display strings) and renders it twice with the
Jinja2 templates in harness/templates/: body.j2 lays the sections out once, and markdown.j2 /
html.j2 say how a heading, paragraph, list, table or figure looks in each format. A new section
is one `Report` field plus one block in body.j2. `python -m harness report RUN_DIR` re-renders
both files from the CSVs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from harness import conditions, plots, settle, stats
from harness.records import read_run_folder

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

REFERENCES_INTRO = ("Ratio of median wall times with an exact distribution-free 95 % interval (Mann-Whitney, "
                    "README \"How sure is a ratio\"; below 1: adaptive is faster). With fewer repeats than a "
                    "verdict needs, no interval is claimed.")
TWINS_INTRO = ("Each dynamic-workflow run against its static twin (the same work with its shape fixed up front): "
               "median wall of dynamic / twin, exact distribution-free 95 % interval.")


# --- the model ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """A table as it is shown: column names and rows of cells, already formatted."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Table:
        return cls(tuple(frame.columns), tuple(tuple(row) for row in frame.itertuples(index=False)))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.rows), columns=list(self.columns))

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]


@dataclass(frozen=True)
class Comparison:
    """One ratio of median walls with its interval and verdict, as shown."""

    against: str  # the role of the denominator: "best static", "per_item", "static twin", ...
    strategy: str
    estimate: str
    interval: str  # "[low, high]", exact distribution-free 95 % (harness.stats)
    verdict: str  # stats.Ratio.label
    in_words: str


@dataclass(frozen=True)
class ComparisonSection:
    """A heading, one sentence saying what the ratios are, and one row per comparison."""

    title: str
    intro: str
    ratio_column: str  # what the estimate is a ratio of, e.g. "adaptive / it (wall)"
    rows: tuple[Comparison, ...]

    @property
    def table(self) -> Table:
        return Table(("against", "strategy", self.ratio_column, "95 % CI", "verdict", "in words"),
                     tuple((c.against, c.strategy, c.estimate, c.interval, c.verdict, c.in_words) for c in self.rows))


@dataclass(frozen=True)
class Plot:
    key: str  # a key of PLOT_FILES
    file: str  # the PNG's name beside the report
    title: str


@dataclass(frozen=True)
class Settling:
    """How a `repeats = "auto"` run decided it had measured enough (harness.settle)."""

    summary: str  # "6 rounds in 412 s of a 600 s budget; stopped: every ratio settled."
    ratios: tuple[str, ...]  # one line per settling ratio: settled or not, and why


@dataclass(frozen=True)
class Report:
    """Everything report.md and report.html show, computed once from the run folder."""

    name: str  # the workload
    items_total: int
    threads: Any  # worker threads in all; "?" when env.json does not say
    headline: str  # "" when there is no adaptive run to judge
    findings: tuple[str, ...]  # the oracle and the fastest strategy, one sentence each
    strategies: Table  # one row per strategy
    sampled_note: str  # which rows were measured on a sample; "" when none
    legend: str
    references: ComparisonSection  # adaptive against the best static, per_item, raw_dask, joblib
    twins: ComparisonSection  # dynamic-workflow runs against their static twins
    settling: Settling | None  # None: the run had a fixed number of repeats
    warnings: tuple[str, ...]  # noisy strategies, slow first repeats, a busy machine
    notes: tuple[str, ...]  # "strategy: note", from env.json's strategy_notes
    plots: tuple[Plot, ...]
    environment: tuple[str, ...]

    @property
    def title(self) -> str:
        return f"{self.name}: {self.items_total:,} items on {self.threads} worker threads"


# --- building it ----------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.{digits}f}"


def _strategy_table(t: pd.DataFrame) -> Table:
    """The comparison table as display strings, one row per strategy."""
    return Table.from_frame(pd.DataFrame({
        "strategy": t.index,
        "repeats": [int(v) for v in t["repeats"]],
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
    }))


def _comparison(against: str, strategy: str, ratio: stats.Ratio, in_words: str) -> Comparison:
    return Comparison(against, strategy, _fmt(ratio.estimate, 3), ratio.interval(3), ratio.label, in_words)


def _findings(t: pd.DataFrame) -> tuple[str, ...]:
    lines = []
    if oracle := t.attrs["oracle"]:
        lines.append(f"Best static batch size in hindsight (the oracle): {oracle}, {_fmt(t.loc[oracle, 'wall_s'], 3)} s.")
    best = t["wall_s"].idxmin()
    lines.append(f"Fastest overall: {best}, {_fmt(t.loc[best, 'wall_s'], 3)} s (median).")
    return tuple(lines)


def _sampled_note(t: pd.DataFrame) -> str:
    if not t["sampled"].any():
        return ""
    sampled = ", ".join(f"{s} ({int(t.loc[s, 'items']):,} items)" for s in t.index[t["sampled"]])
    return f"* measured on an evenly spread sample, wall projected to all {t.attrs['items_total']:,} items: {sampled}."


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
        f"warm-up: {env.get('warm_up_s')} s; repeats: {env.get('repeats')}"
        + (f" (asked: {env['repeats_requested']})" if env.get("repeats_requested") == "auto" else "")
        + " (interleaved, order rotated each repeat)",
        f"machine: {env.get('cpu_model') or 'CPU model not recorded'}; workload digest {env.get('workload_digest') or '—'}; "
        f"1-minute load at start {(env.get('load') or {}).get('at_start', {}).get('load_1min', '—')}, "
        f"at end {(env.get('load') or {}).get('at_end', {}).get('load_1min', '—')}",
        f"started {env.get('started_at')}, finished {env.get('finished_at')}",
    ]
    if env.get("sampling"):
        lines.append("sampling budgets: " + ", ".join(f"{k} {v}" for k, v in env["sampling"].items()))
    if env.get("phases"):
        lines.append("drift phases: " + ", ".join(f"from {p['at']:.0%} of items {p['mean_ms']} ms" for p in env["phases"]))
    return lines


def _settling(runs: pd.DataFrame, env: dict[str, Any]) -> Settling | None:
    block = env.get("settling")
    if not block:
        return None
    summary = (f"repeats = \"auto\": {block['rounds']} rounds in {block['rounds_s']:.0f} s of a {block['budget_s']:.0f} s "
               f"budget; stopped: {block['stopped_because']}. A run stops no earlier than the "
               f"{block.get('floor', '?')} rounds its verdicts need; a ratio settles when its 95 % interval "
               f"reaches no further than ±{block['target_half_width']:.0%} from its estimate.")
    lines = tuple(f"adaptive / {s.strategy} ({s.role}): {s.why}" for s in settle.ratio_statuses(runs))
    return Settling(summary, lines)


def _read_trace(run_dir: Path) -> pd.DataFrame:
    path = run_dir / "trace.csv"
    try:
        return pd.read_csv(path) if path.is_file() else pd.DataFrame()
    except pd.errors.EmptyDataError:  # a run without adaptive writes a header-less empty file
        return pd.DataFrame()


def _draw(table: pd.DataFrame, samples: dict[str, Any], trace: pd.DataFrame, env: dict[str, Any],
          folder: Path) -> tuple[Plot, ...]:
    """Write the PNGs into `folder`; the plots that exist (a run without a sweep has no sweep plot)."""
    made = {
        "walls": plots.plot_walls(table, samples, folder / PLOT_FILES["walls"]),
        "sweep": plots.plot_sweep(table, folder / PLOT_FILES["sweep"]),
        "trace": plots.plot_trace(trace, table.attrs["items_total"], env.get("phases", []), folder / PLOT_FILES["trace"])
        if not trace.empty else None,
    }
    return tuple(Plot(key, path.name, PLOT_TITLES[key]) for key, path in made.items() if path is not None)


def build(runs: pd.DataFrame, env: dict[str, Any], trace: pd.DataFrame | None = None,
          plots_into: Path | None = None) -> Report:
    """The report of one run; with `plots_into`, its PNGs are drawn there (from `trace` too)."""
    rows = stats.main_rows(runs)
    table = stats.summarize(rows)
    refs = stats.adaptive_references(rows, table)
    twins = stats.variant_ratios(runs)
    drawn = () if plots_into is None else _draw(
        table, stats.samples_by_strategy(rows), pd.DataFrame() if trace is None else trace, env, plots_into)
    return Report(
        name=str(runs["workload"].iloc[0]),
        items_total=table.attrs["items_total"],
        threads=env.get("runtime", {}).get("worker_threads", "?"),
        headline=stats.headline(refs),
        findings=_findings(table),
        strategies=_strategy_table(table),
        sampled_note=_sampled_note(table),
        legend=LEGEND,
        references=ComparisonSection(
            "adaptive against the references", REFERENCES_INTRO, "adaptive / it (wall)",
            tuple(_comparison(r.role, r.strategy, r.ratio, r.ratio.phrase(r.strategy)) for r in refs)),
        twins=ComparisonSection(
            "Dynamic vs static twin", TWINS_INTRO, "dynamic / twin (wall)",
            tuple(_comparison("static twin", r.numerator.rsplit(" ", 1)[0], r,
                              f"dynamic took {r.phrase('its static twin')}") for r in twins)),
        settling=_settling(runs, env),
        warnings=tuple(stats.instability_warnings(rows) + conditions.load_warnings(runs, env.get("cpu_count"))),
        notes=tuple(f"{s}: {note}" for s, said in (env.get("strategy_notes") or {}).items() for note in said),
        plots=drawn,
        environment=tuple(environment_lines(env)),
    )


def read_report(run_dir: Path, draw_plots: bool = False) -> Report:
    """The report of the run in `run_dir`; with `draw_plots`, its PNGs are (re)drawn beside it."""
    run_dir = Path(run_dir)
    folder = read_run_folder(run_dir, writable=draw_plots)  # SpecError naming a damaged file
    runs, env = folder.runs, folder.env
    if not draw_plots:
        return build(runs, env)
    return build(runs, env, _read_trace(run_dir), plots_into=run_dir)


def load(run_dir: Path) -> tuple[Report, pd.DataFrame]:
    """The report (without plots) and the adaptive trace of the run in `run_dir`."""
    return read_report(run_dir), _read_trace(Path(run_dir))


def summary_frame(report: Report) -> pd.DataFrame:
    """The comparison table as display strings, one row per strategy."""
    return report.strategies.frame()


def references_frame(report: Report) -> pd.DataFrame:
    return report.references.table.frame()


def twins_frame(report: Report) -> pd.DataFrame:
    return report.twins.table.frame()


# --- rendering it ---------------------------------------------------------------------------

# Cells that read as numbers (figures, ranges, intervals, the sampled mark, the n/a dash): right-aligned.
_NUMERIC_CELL = re.compile(r"^[-+\d.,%×*–— \[\]]+$")


def markdown_table(frame: pd.DataFrame) -> str:
    """The frame's display strings exactly as formatted (no re-parsing), first column left, numbers right."""
    numeric = [all(_NUMERIC_CELL.match(str(v)) for v in frame[c]) for c in frame.columns]
    return frame.to_markdown(index=False, disable_numparse=True,
                             colalign=["right" if n and i else "left" for i, n in enumerate(numeric)])


# A paragraph starting with one of these would read as a list item, heading or quote in markdown.
_MARKDOWN_BLOCK_MARK = re.compile(r"^([*+#>-]|\d+\.)")


def _markdown_text(text: str) -> str:
    return _MARKDOWN_BLOCK_MARK.sub(r"\\\1", text)


@cache
def _environment(fmt: str) -> jinja2.Environment:
    """The templates for one format: `fmt` names its macros file (markdown.j2 or html.j2).
    HTML escapes every value it shows; markdown shows them as they are."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("harness", "templates"),
        autoescape=fmt == "html",
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,  # a misspelt field fails the render instead of printing nothing
    )
    env.globals["fmt"] = f"{fmt}.j2"
    env.filters["markdown_table"] = lambda table: markdown_table(table.frame())
    env.filters["markdown_text"] = _markdown_text
    env.filters["thousands"] = "{:,}".format
    return env


def render(report: Report, template: str, **values: Any) -> str:
    """`template` (report.md.j2, report.html.j2, artifact.md.j2) filled with `report` and `values`."""
    fmt = "html" if template.endswith(".html.j2") else "markdown"
    return _environment(fmt).get_template(template).render(report=report, **values)


def render_markdown(report: Report) -> str:
    return render(report, "report.md.j2")


def render_html(report: Report) -> str:
    return render(report, "report.html.j2")


def write_report(run_dir: Path) -> Path:
    """Write report.md, report.html and their PNGs into `run_dir`; return report.md's path."""
    run_dir = Path(run_dir)
    report = read_report(run_dir, draw_plots=True)
    html, markdown = render_html(report), render_markdown(report)
    path = run_dir / "report.md"
    for name, text in (("report.html", html), ("report.md", markdown)):
        # Whole or not at all: a full disk leaves the previous report, never half of a new one.
        tmp = run_dir / f".{name}.tmp"
        try:
            tmp.write_text(text)
            tmp.replace(run_dir / name)
        finally:
            tmp.unlink(missing_ok=True)
    return path
