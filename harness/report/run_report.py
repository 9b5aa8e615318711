"""report.md and report.html from a run folder's runs.csv / trace.csv / env.json, with PNG plots
beside them: which strategy, by how much, how sure we are, and what orchestration cost.

Wall times of strategies measured on a sample are compared through their projection to the
whole workload (wall x items_total / items) and marked as such; nothing is extrapolated
silently. The numbers come from harness.analysis.stats, the pictures from harness.report.plots. This module
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

from harness.report import advice, plots

from harness.measure.machine_load import load_warnings

from harness.analysis import overhead, server_load, settle, stats
from harness.measure.records import read_run_folder
from harness.workload.vocabulary import STATIC

# What the report reads of env.json (environment_lines, build): a run folder's env.json lacking
# one would render as "Python None, 0 workers, ? threads", so it is refused as damage instead.
# Only keys every `harness run` has written; the rest (settling, dask_reports, ...) are optional.
REPORT_ENV_KEYS = ("python", "platform", "cpu_count", "memory_gb", "packages", "runtime", "repeats", "warm_up_s",
                   "started_at", "finished_at")

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
    "time); overhead: (wall × threads − compute) / tasks, what each task cost beyond its work, all "
    "causes mixed (split below, under \"Where the overhead goes\"); memory: the strategy's own peak "
    "RSS above its start, freed memory returned to the OS first (the largest over repeats); Prefect: "
    "whether the strategy runs Prefect tasks in a flow (yes) or Dask alone (no). Repeats are "
    "numbered from 1, as in the progress line (runs.csv's `repeat` column counts from 0)."
)
OVERHEAD_INTRO = (
    "Each task's busy time is from its start on a worker thread (replayed: a first-come-first-served "
    "queue of the submitted tasks on the threads) to when the flow saw it finish. "
    "fixed ms/task: o in busy − compute = o + t × items, the cost of a task whatever it carries "
    "(this strategy's median of busy − compute − t × items); "
    "transfer µs/item: t, the cost of moving and serialising one item, fitted per runtime (Prefect, "
    "or Dask alone) across tasks of different sizes (Theil-Sen through each size's median); "
    "flow lag ms/task: the rest, mixed − fixed − t × items per task − idle, busy time beyond a "
    "typical task's o + t × items: mostly tasks done on a worker whose result waited for the flow "
    "process, busy submitting or reading other tasks (per_item's overhead on fine work is nearly all "
    "here: the flow process is its bottleneck); "
    "idle ms/task: (threads × wall − Σ busy) / tasks, thread time with no task on it; "
    "so fixed + t × items per task + flow lag + idle = the mixed overhead. tail idle s: the part of "
    "that idle time after the last task started, threads with nothing left to run (smaller last "
    "batches cut it). "
    "Tasks seen late (already done when the flow looked after more than 2 ms away, or started in "
    "the replay by such a task's completion: their busy time is unknown) stay out of "
    "the fit; a strategy with fewer than 3 tasks left gets its runtime's o."
)


REFERENCES_INTRO = ("Ratio of median wall times with an exact distribution-free 95 % interval (Mann-Whitney, "
                    "docs/reading-a-report.md, \"How sure is a ratio\"; below 1: adaptive is faster). With fewer repeats than a "
                    "verdict needs, no interval is claimed.")
WARM_INTRO = ("adaptive_warm is the adaptive strategy started from what the cold adaptive stage before it "
              "learned (no probe, the first wave at the learned batch size; docs/adaptive.md, \"Warm start\"). "
              "Each row: the median wall time of the first strategy over the second, as above; below 1: the first is faster.")
DASK_SEEN_INTRO = (
    "Where each task's overhead went, from the Dask scheduler's task stream (medians over repeats, "
    "ms per task; their sum is the overhead column above): in the task beyond its items = Dask's "
    "compute minus the items' own compute, for a Prefect task its task engine on the worker; moving "
    "data = fetching and deserializing its inputs on the worker; threads idle = worker-thread time "
    "with no task running (scheduling, the flow process submitting and reading results, the "
    "Prefect API). Items the adaptive strategy runs inline in the flow process are no Dask task: "
    "their compute counts against its in-task figure.")
DASK_REPORTS_INTRO = ("Dask's performance report of each strategy's first repeat (the dashboard's plots, "
                      "saved; open in a browser). Figures of this run include the cost of drawing them.")
SERVER_LOAD_INTRO = (
    "What each strategy sent the Prefect API server, per 1,000 items (medians over repeats; a "
    "sampled strategy per 1,000 items of its sample), counted in the flow process and every Dask "
    "worker as they sent it: task runs = task runs created; state changes = task-run states "
    "written (one row each in the server's database: Pending, Running, Completed for a task run "
    "that succeeds first time); API requests = HTTP requests to the API (the flow run's, log "
    "batches, reads; each retry one more). Task runs and their states travel as events over the "
    "events websocket, not as requests. The references (Prefect: no) send nothing: Dask alone. "
    "A flow run's own requests are per flow run: per 1,000 items of a sample they read high.")
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
    interval: str  # "[low, high]", exact distribution-free 95 % (harness.analysis.stats)
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
class Link:
    label: str
    file: str  # beside the report


@dataclass(frozen=True)
class Settling:
    """How a `repeats = "auto"` run decided it had measured enough (harness.analysis.settle)."""

    summary: str  # "6 rounds in 412 s of a 600 s budget; stopped: every ratio settled."
    ratios: tuple[str, ...]  # one line per settling ratio: settled or not, and why


@dataclass(frozen=True)
class AdviceSection:
    """Choosing a batch size: the near-optimal band, a warning when the sweep did not bracket the
    best size, and which strategies run through Prefect."""

    lines: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class OverheadSection:
    """Where the per-task overhead goes (harness.analysis.overhead): one row per strategy, the fits."""

    intro: str = ""
    fits: tuple[str, ...] = ()  # one line per runtime: o and t and what they were fitted on
    table: Table = Table((), ())


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
    dask_seen: Table  # what Dask saw: each strategy's overhead per task split; no rows for old runs
    dask_reports: tuple[Link, ...]  # the Dask performance reports in the folder (--dask-report)
    settling: Settling | None  # None: the run had a fixed number of repeats
    warnings: tuple[str, ...]  # noisy strategies, slow first repeats, a busy machine
    notes: tuple[str, ...]  # "strategy: note", from env.json's strategy_notes
    plots: tuple[Plot, ...]
    environment: tuple[str, ...]
    batch_advice: AdviceSection = AdviceSection()
    overhead: OverheadSection = OverheadSection()
    server_load: Table = Table(("strategy",), ())  # no rows for runs without the prefect_* columns
    # adaptive_warm and adaptive against the best static, and warm against cold; no rows without adaptive_warm
    warm: ComparisonSection = ComparisonSection("Warm start against cold", WARM_INTRO, "ratio (wall)", ())

    @property
    def title(self) -> str:
        return f"{self.name}: {self.items_total:,} items on {self.threads} worker threads"


# --- building it ----------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.{digits}f}"


def own_memory_mb(runs: pd.DataFrame) -> pd.Series:
    """Per strategy, the largest over repeats of its own peak RSS above its start (older runs.csv:
    rss_growth_mb, the same without freed memory returned first)."""
    column = next((c for c in ("peak_rss_above_start_mb", "rss_growth_mb") if c in runs and runs[c].notna().any()), None)
    if column is None:
        return pd.Series(math.nan, index=runs["strategy"].unique())
    return runs.groupby("strategy", sort=False)[column].max()


def _strategy_table(t: pd.DataFrame, memory: pd.Series | None = None) -> Table:
    """The comparison table as display strings, one row per strategy."""
    memory = pd.Series(math.nan, index=t.index) if memory is None else memory.reindex(t.index)
    prefect, _ = advice.through_prefect(list(t.index))
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
        "memory MB": [_fmt(v, 0) for v in memory],
        "Prefect": ["yes" if s in prefect else "no" for s in t.index],
    }))


def _dask_seen(runs: pd.DataFrame, threads: Any) -> Table:
    """Per strategy, the overhead per task split by what the task stream saw (DASK_SEEN_INTRO)."""
    empty = Table(("strategy",), ())
    if "dask_compute_s" not in runs or not isinstance(threads, int) or runs["dask_compute_s"].isna().all():
        return empty
    r = runs[runs["dask_compute_s"].notna() & (runs["tasks"] > 0)]
    moving = r["dask_transfer_s"] + r["dask_deserialize_s"]
    per_task = 1000 / r["tasks"]
    split = pd.DataFrame({
        "strategy": r["strategy"],
        "tasks": r["tasks"],
        "dask_tasks": r["dask_tasks"],
        "in_task": (r["dask_compute_s"] - r["compute_s"]) * per_task,
        "moving": moving * per_task,
        "idle": (r["wall_s"] * threads - r["dask_compute_s"] - moving) * per_task,
        "overhead": r["overhead_per_task_ms"],
        "busy": r["dask_compute_s"] / (r["wall_s"] * threads),
    }).groupby("strategy", sort=False).median()
    return Table.from_frame(pd.DataFrame({
        "strategy": split.index,
        "tasks": [_fmt(v, 0) for v in split["tasks"]],
        "Dask tasks": [_fmt(v, 0) for v in split["dask_tasks"]],
        "in the task beyond items ms": [_fmt(v, 1) for v in split["in_task"]],
        "moving data ms": [_fmt(v, 2) for v in split["moving"]],
        "threads idle ms": [_fmt(v, 1) for v in split["idle"]],
        "overhead ms/task": [_fmt(v, 1) for v in split["overhead"]],
        "worker threads busy": [f"{v:.0%}" if not math.isnan(v) else "—" for v in split["busy"]],
    }))


def _three_figures(value: float) -> str:
    """A count per 1,000 items to three significant figures (static:16384 makes 0.0650 task runs per
    1,000 items, per_item 1,000): whole numbers from 100 up, 0 as 0."""
    if value == 0 or math.isnan(value) or abs(value) >= 100:
        return _fmt(value, 0)
    return _fmt(value, 2 - math.floor(math.log10(abs(value))))


def _server_load(runs: pd.DataFrame) -> Table:
    """Per strategy, what it sent the Prefect API per 1,000 items (SERVER_LOAD_INTRO)."""
    per = server_load.per_thousand_items(runs)
    if per.empty:
        return Table(("strategy",), ())
    prefect, _ = advice.through_prefect(list(per.index))
    return Table.from_frame(pd.DataFrame({
        "strategy": per.index,
        "Prefect": ["yes" if s in prefect else "no" for s in per.index],
        "task runs": [_three_figures(v) for v in per["task_runs"]],
        "state changes": [_three_figures(v) for v in per["state_changes"]],
        "API requests": [_three_figures(v) for v in per["api_requests"]],
    }))


def _dask_reports(env: dict[str, Any], run_dir: Path | None) -> tuple[Link, ...]:
    """The performance reports env.json lists (and, when the folder is known, that exist)."""
    links = []
    for r in env.get("dask_reports") or ():
        if run_dir is None or (run_dir / r["file"]).is_file():
            variant = r.get("variant", "dynamic")
            links.append(Link(r["strategy"] + ("" if variant == "dynamic" else f" ({variant})"), r["file"]))
    return tuple(links)


def _comparison(against: str, strategy: str, ratio: stats.Ratio, in_words: str) -> Comparison:
    estimate = _fmt(ratio.estimate, stats.decimals((ratio.estimate,), 3))
    return Comparison(against, strategy, estimate, ratio.interval(3), ratio.label, in_words)


def _warm_start(rows: pd.DataFrame, table: pd.DataFrame) -> ComparisonSection:
    """adaptive_warm and adaptive each against the best static size, and warm against cold:
    the comparisons whose strategies ran and had an item succeed."""
    failed = set(stats.without_success(table))
    ran = [s for s in ("adaptive_warm", "adaptive") if s in table.index and s not in failed]
    if "adaptive_warm" not in ran:
        return ComparisonSection("Warm start against cold", WARM_INTRO, "ratio (wall)", ())
    samples = stats.samples_by_strategy(rows)
    best = stats.best_of(table, STATIC)
    pairs = [(s, best, f"{best}, the best static") for s in ran if best is not None and best not in failed]
    if "adaptive" in ran:
        pairs.append(("adaptive_warm", "adaptive", "adaptive (cold)"))
    comparisons = []
    for subject, reference, words in pairs:
        r = stats.ratio(subject, samples[subject], reference, samples[reference])
        comparisons.append(_comparison(f"{subject} / {'best static' if reference == best else 'cold'}", reference, r,
                                       f"{subject} was {r.phrase(words)}"))
    return ComparisonSection("Warm start against cold", WARM_INTRO, "ratio (wall)", tuple(comparisons))


def _findings(t: pd.DataFrame) -> tuple[str, ...]:
    lines = []
    if oracle := t.attrs["oracle"]:
        lines.append(f"Best static batch size in hindsight (the oracle): {oracle}, {_fmt(t.loc[oracle, 'wall_s'], 3)} s.")
    failed = stats.without_success(t)
    ran = t.drop(index=failed)
    if len(ran):
        best = ran["wall_s"].idxmin()
        lines.append(f"Fastest overall: {best}, {_fmt(t.loc[best, 'wall_s'], 3)} s (median).")
    if failed:
        lines.append(f"No item succeeded under {', '.join(failed)}: {'its' if len(failed) == 1 else 'their'} "
                     "wall time measured no work, so it is ranked against nothing.")
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


def _advice_section(t: pd.DataFrame) -> AdviceSection:
    prefect, bare = advice.through_prefect(list(t.index))
    lines = []
    warnings = []
    if (a := advice.batch_advice(t)) is not None:
        near = ", ".join(f"{n} ({_fmt(a.walls[n], 3)} s)" for n in a.band)
        lines.append(f"Near-optimal static batch sizes, median wall within {advice.NEAR_OPTIMAL_FRACTION:.0%} of the "
                     f"best (static:{a.best}, {_fmt(a.best_wall_s, 3)} s): {near}. Any of them will do; of those, "
                     "the largest makes the fewest tasks.")
        if a.edge:
            tried = ", ".join(str(n) for n in a.walls)
            way = "larger" if a.edge == "largest" else "smaller"
            warnings.append(f"Warning: the best static size, {a.best}, is the {a.edge} one tried ({tried}): a {way} "
                            f"size may be faster still. Add {way} sizes to [run] sweep to bracket the best.")
    if prefect:
        lines.append("Through Prefect (tasks of a flow on the Dask task runner): " + ", ".join(prefect) + ".")
    if bare:
        lines.append("Without Prefect (Dask alone, the references): " + ", ".join(bare) + ".")
    return AdviceSection(tuple(lines), tuple(warnings))


def _fit_lines(tasks: pd.DataFrame) -> tuple[str, ...]:
    lines = []
    for name, rows in tasks.groupby("runtime", sort=False):
        cost = overhead.fit(rows, str(name))
        if cost is None:
            continue
        if cost.identified:
            lines.append(f"{name}: o = {cost.fixed_s * 1000:,.2f} ms per task, t = {cost.transfer_s * 1e6:,.2f} µs per "
                         f"item, fitted over {cost.tasks:,} tasks of {cost.sizes} sizes (tasks.csv).")
        else:
            lines.append(f"{name}: busy − compute = {cost.fixed_s * 1000:,.2f} ms per task over {cost.tasks:,} tasks, "
                         "all of one size: o and t cannot be told apart (o includes t × that size).")
    return tuple(lines)


def _overhead_section(runs: pd.DataFrame, tasks: pd.DataFrame | None) -> OverheadSection:
    split = overhead.per_strategy(runs)
    if split.empty or split[list(overhead.SPLIT_COLUMNS)].isna().all().all():
        return OverheadSection()
    prefect, _ = advice.through_prefect(list(split.index))
    table = Table.from_frame(pd.DataFrame({
        "strategy": split.index,
        "Prefect": ["yes" if s in prefect else "no" for s in split.index],
        "batch": [_fmt(v, 0) for v in split["batch_size_median"]],
        "overhead ms/task (mixed)": [_fmt(v, 1) for v in split["overhead_per_task_ms"]],
        "fixed ms/task": [_fmt(v, 1) for v in split["fixed_ms_per_task"]],
        "transfer µs/item": [_fmt(v, 2) for v in split["transfer_us_per_item"]],
        "flow lag ms/task": [_fmt(v, 1) for v in split["flow_lag_ms_per_task"]],
        "idle ms/task": [_fmt(v, 1) for v in split["idle_ms_per_task"]],
        "tail idle s": [_fmt(v, 3) for v in split["tail_idle_s"]],
    }))
    fits = _fit_lines(tasks) if tasks is not None and len(tasks) else ()
    return OverheadSection(OVERHEAD_INTRO, fits, table)


def _read_tasks(run_dir: Path) -> pd.DataFrame | None:
    path = run_dir / "tasks.csv"
    try:
        return pd.read_csv(path) if path.is_file() else None
    except pd.errors.EmptyDataError:
        return None


def _settling(runs: pd.DataFrame, env: dict[str, Any]) -> Settling | None:
    block = env.get("settling")
    if not block:
        return None
    over = block["rounds_s"] - block["budget_s"]
    # The floor wins over the budget (harness.analysis.settle): say by how much it was exceeded.
    exceeded = f" (exceeded by {over:.0f} s)" if over >= 1 else ""
    summary = (f"repeats = \"auto\": {block['rounds']} rounds in {block['rounds_s']:.0f} s of a {block['budget_s']:.0f} s "
               f"budget{exceeded}; stopped: {block['stopped_because']}. A run stops no earlier than the "
               f"{block.get('floor', '?')} rounds its verdicts need; a ratio settles when its 95 % interval "
               f"reaches no further than ±{block['target_half_width']:.0%} from its estimate"
               + (f", or lies wholly beyond {block['decisive_factor']:g}× either way." if block.get("decisive_factor")
                  else "."))
    lines = tuple(f"adaptive / {s.strategy} ({s.role}): {s.why}" for s in settle.statuses_of(runs, block))
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
    near = advice.batch_advice(table)
    made = {
        "walls": plots.plot_walls(table, samples, folder / PLOT_FILES["walls"]),
        "sweep": plots.plot_sweep(table, folder / PLOT_FILES["sweep"], near.band if near else ()),
        "trace": plots.plot_trace(trace, table.attrs["items_total"], env.get("phases", []), folder / PLOT_FILES["trace"])
        if not trace.empty else None,
    }
    return tuple(Plot(key, path.name, PLOT_TITLES[key]) for key, path in made.items() if path is not None)


def build(runs: pd.DataFrame, env: dict[str, Any], trace: pd.DataFrame | None = None,
          plots_into: Path | None = None, tasks: pd.DataFrame | None = None) -> Report:
    """The report of one run; with `plots_into` (the run folder), its PNGs are drawn there (from
    `trace` too) and only the Dask performance reports found there are linked; `tasks`
    (tasks.csv) adds the overhead fits."""
    rows = stats.main_rows(runs)
    table = stats.summarize(rows)
    refs = stats.adaptive_references(rows, table)
    twins = stats.variant_ratios(runs)
    drawn = () if plots_into is None else _draw(
        table, stats.samples_by_strategy(rows), pd.DataFrame() if trace is None else trace, env, plots_into)
    threads = env.get("runtime", {}).get("worker_threads", "?")
    return Report(
        name=str(runs["workload"].iloc[0]),
        items_total=table.attrs["items_total"],
        threads=threads,
        headline=stats.run_headline(refs, table, env.get("strategy_notes")),
        findings=_findings(table),
        strategies=_strategy_table(table, own_memory_mb(rows)),
        sampled_note=_sampled_note(table),
        legend=LEGEND,
        references=ComparisonSection(
            "adaptive against the references", REFERENCES_INTRO, "adaptive / it (wall)",
            tuple(_comparison(r.role, r.strategy, r.ratio, r.ratio.phrase(r.strategy)) for r in refs)),
        twins=ComparisonSection(
            "Dynamic vs static twin", TWINS_INTRO, "dynamic / twin (wall)",
            tuple(_comparison("static twin", r.numerator.rsplit(" ", 1)[0], r,
                              f"dynamic was {r.phrase('its static twin')}") for r in twins)),
        dask_seen=_dask_seen(rows, threads),
        dask_reports=_dask_reports(env, plots_into),
        settling=_settling(runs, env),
        warnings=tuple(stats.instability_warnings(rows) + load_warnings(runs, env.get("cpu_count"))),
        notes=tuple(f"{s}: {note}" for s, said in (env.get("strategy_notes") or {}).items() for note in said),
        plots=drawn,
        environment=tuple(environment_lines(env)),
        batch_advice=_advice_section(table),
        overhead=_overhead_section(rows, None if tasks is None else stats.main_rows(tasks)),
        server_load=_server_load(rows),
        warm=_warm_start(rows, table),
    )


def read_report(run_dir: Path, draw_plots: bool = False) -> Report:
    """The report of the run in `run_dir`; with `draw_plots`, its PNGs are (re)drawn beside it."""
    run_dir = Path(run_dir)
    folder = read_run_folder(run_dir, writable=draw_plots, env_keys=REPORT_ENV_KEYS)  # SpecError naming a damaged file
    runs, env = folder.runs, folder.env
    tasks = _read_tasks(run_dir)
    if not draw_plots:
        return build(runs, env, tasks=tasks)
    return build(runs, env, _read_trace(run_dir), plots_into=run_dir, tasks=tasks)


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
    env.globals["dask_seen_intro"] = DASK_SEEN_INTRO
    env.globals["dask_reports_intro"] = DASK_REPORTS_INTRO
    env.globals["server_load_intro"] = SERVER_LOAD_INTRO
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
