"""`harness history RESULTS_DIR`: every run folder under RESULTS_DIR, across commits.

A run folder is `RESULTS_DIR/<workload>/<run id>/` holding runs.csv and env.json (`latest` and
half-written `.partial` folders are skipped; so is a damaged one, listed in `History.skipped`
with why). Each run becomes one row: when it started, its git
commit, its workload, and adaptive's ratios to the oracle and to per_item with their intervals,
computed by harness.analysis.stats exactly as the run's report computes them. Consecutive runs of a
workload are put through harness.report.compare's `compare_runs`, so a step change is marked where
`harness compare PREVIOUS THIS` would call one. `write_index` draws one trend plot per workload
(every strategy's median wall, run by run; harness.report.plots) and writes RESULTS_DIR/index.html.

Pure apart from reading the folders and writing index.html and its PNGs; cli.py prints.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import pandas as pd

from harness.report import plots

from harness.analysis import stats
from harness.report.compare import DEFAULT_THRESHOLD, compare_runs
from harness.errors import HarnessError, SpecError
from harness.measure.records import read_run_folder

INDEX = "index.html"
COLUMNS = ("date", "commit", "workload", "run", "adaptive / oracle", "95 % CI (oracle)", "adaptive / per_item",
           "95 % CI (per_item)", "step changes (compare with the previous run)")
# compare's verdicts that mark a step change on the trend plot (its others: no change, or a
# slow-down within the threshold).
STEP_VERDICTS = ("REGRESSION", "faster")
# A commit is shown by its first characters, as git's short form.
SHORT_COMMIT = 10


@dataclass(frozen=True)
class Step:
    """A change `compare` would report between a run and the previous run of its workload."""

    strategy: str
    change: float  # B / A - 1 of the median walls
    verdict: str  # compare's: "REGRESSION" or "faster"

    def __str__(self) -> str:
        return f"{self.strategy} {self.change:+.1%} {self.verdict}"


@dataclass(frozen=True)
class RunEntry:
    folder: Path
    workload: str
    started: str  # env.json started_at, as written
    commit: str
    medians: dict[str, float]  # strategy -> median wall (projected), the report's figure
    oracle: stats.Reference | None  # adaptive against the best static
    per_item: stats.Reference | None
    steps: tuple[Step, ...] = ()
    not_compared: str = ""  # why compare refused this run against the previous one

    @property
    def label(self) -> str:
        """How the trend plot's axis names the run: its commit, else its run id."""
        return self.commit[:SHORT_COMMIT] if self.commit else self.folder.name


@dataclass(frozen=True)
class History:
    results_dir: Path
    runs: tuple[RunEntry, ...]  # by workload, then start time
    plots: dict[str, Path] = field(default_factory=dict)  # workload -> trend PNG (after write_index)
    skipped: tuple[tuple[Path, str], ...] = ()  # damaged run folders left out, and why (the SpecError's text)

    @property
    def workloads(self) -> list[str]:
        return list(dict.fromkeys(r.workload for r in self.runs))


def find_runs(results_dir: Path) -> list[Path]:
    """Run folders under `results_dir`: <workload>/<run id>/ with runs.csv and env.json."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise SpecError(f"{results_dir}: no such results folder")
    found = []
    for workload in sorted(p for p in results_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for run in sorted(workload.iterdir()):
            if run.name.startswith(".") or run.is_symlink() or not run.is_dir():
                continue  # `latest` points at a run listed under its own name; .partial is unfinished
            if (run / "runs.csv").is_file() and (run / "env.json").is_file():
                found.append(run)
    return found


def _entry(folder: Path) -> RunEntry:
    checked = read_run_folder(folder)  # SpecError naming the damaged file and the damage
    runs, env = stats.main_rows(checked.runs), checked.env
    if runs.empty or not {"strategy", "workload", "wall_s"} <= set(runs.columns):
        raise SpecError(f"{folder / 'runs.csv'}: found no rows or no strategy/workload/wall_s columns, "
                        "expected runs.csv as `harness run` writes it")
    table = stats.summarize(runs)
    refs = {r.role: r for r in stats.adaptive_references(runs, table)}
    return RunEntry(folder, str(runs["workload"].iloc[0]), str(env.get("started_at") or ""),
                    str(env.get("git_commit") or ""), {str(s): float(w) for s, w in table["wall_s"].items()},
                    refs.get("best static"), refs.get("per_item"))


def steps(previous: Path, current: Path, threshold: float = DEFAULT_THRESHOLD) -> tuple[tuple[Step, ...], str]:
    """The step changes from `previous` to `current` as compare judges them, or ((), why not)."""
    try:
        result = compare_runs(previous, current, threshold)
    except HarnessError as exc:  # compare refuses unlike runs or too few repeats: say so, go on
        return (), str(exc)
    return tuple(Step(c.strategy, c.ratio.estimate - 1, c.verdict) for c in result.changes
                 if c.verdict in STEP_VERDICTS), ""


def history(results_dir: Path, threshold: float = DEFAULT_THRESHOLD) -> History:
    """Every run under `results_dir`, by workload then start time, each compared with the one before."""
    read, skipped = [], []
    for folder in find_runs(results_dir):
        try:
            read.append(_entry(folder))
        except SpecError as exc:  # one damaged run does not hide the others: left out, and said so
            skipped.append((folder, str(exc)))
    entries = sorted(read, key=lambda e: (e.workload, e.started, e.folder.name))
    if not entries:
        damaged = f" ({len(skipped)} damaged, the first: {skipped[0][1]})" if skipped else ""
        raise SpecError(f"{results_dir}: found no readable run folders{damaged}, expected <workload>/<run id>/ "
                        "with runs.csv and env.json")
    out = []
    for i, entry in enumerate(entries):
        previous = entries[i - 1] if i and entries[i - 1].workload == entry.workload else None
        if previous is not None:
            found, why = steps(previous.folder, entry.folder, threshold)
            entry = dataclasses.replace(entry, steps=found, not_compared=why)
        out.append(entry)
    return History(Path(results_dir), tuple(out), skipped=tuple(skipped))


def _cells(ref: stats.Reference | None) -> tuple[str, str]:
    if ref is None:
        return "—", "—"
    estimate = ref.ratio.estimate
    return f"{estimate:.{stats.decimals((estimate,), 3)}f}", ref.ratio.interval(3)


def _date(started: str) -> str:
    """'2026-11-27T02:00:00+0000' -> '2026-11-27 02:00'."""
    return started[:16].replace("T", " ") if started else "?"


def frame(h: History) -> pd.DataFrame:
    """The history table as display strings, one row per run."""
    rows = []
    for e in h.runs:
        if e.not_compared:
            change = f"not compared: {e.not_compared}"
        else:
            change = "; ".join(str(s) for s in e.steps) or ("—" if e is _first_of(h, e.workload) else "none")
        rows.append((_date(e.started), e.commit[:SHORT_COMMIT] or "?", e.workload, e.folder.name,
                     *_cells(e.oracle), *_cells(e.per_item), change))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _first_of(h: History, workload: str) -> RunEntry:
    return next(e for e in h.runs if e.workload == workload)


def trend_frame(h: History, workload: str) -> pd.DataFrame:
    """Median wall per strategy (columns) and run (rows, in order, indexed by label)."""
    entries = [e for e in h.runs if e.workload == workload]
    walls = pd.DataFrame([e.medians for e in entries])
    walls.index = [f"{i + 1}: {e.label}" for i, e in enumerate(entries)]
    return walls


def write_index(h: History) -> Path:
    """One trend PNG per workload and index.html in the results folder; returns index.html's path."""
    made = {}
    for workload in h.workloads:
        entries = [e for e in h.runs if e.workload == workload]
        marks = {(i, s.strategy): s.verdict for i, e in enumerate(entries) for s in e.steps}
        made[workload] = plots.plot_history(trend_frame(h, workload), marks, workload,
                                            h.results_dir / f"history_{workload}.png")
    h.plots.update(made)
    env = jinja2.Environment(loader=jinja2.PackageLoader("harness", "templates"), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    page = env.get_template("history.html.j2").render(
        results_dir=str(h.results_dir), table=frame(h), plots={w: p.name for w, p in made.items()},
        threshold=f"{DEFAULT_THRESHOLD:.0%}")
    path = h.results_dir / INDEX
    path.write_text(page)
    return path
