"""The records of a run folder: one RunRecord per strategy x repeat (a row of runs.csv), the
columns of runs.csv, tasks.csv and trace.csv, and the run folder read back and checked whole
(`read_run_folder`: a damaged or truncated file is a SpecError naming it)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import SpecError

# runs.csv columns in order: the original minimum first (README, "The run folder"; scripts rely on them), then the rest, appended.
RUN_COLUMNS = (
    "workload", "strategy", "repeat", "wall_s", "items", "items_ok", "items_failed", "tasks",
    "retries", "batch_size_median", "ideal_s", "peak_rss_mb",
    "items_total", "sampled", "projected_wall_s", "compute_s", "throughput_items_s",
    "overhead_per_task_ms", "flow_s", "checksum", "order", "profile", "rss_growth_mb",
    "pattern", "variant", "flow_runs", "routes", "mode_changes",
    "load_before", "load_after", "cpu_idle_pct", "cpu_steal_pct",
    "fixed_ms_per_task", "transfer_us_per_item", "idle_s", "tail_idle_s", "peak_rss_above_start_mb",
    "dask_tasks", "dask_compute_s", "dask_transfer_s", "dask_deserialize_s", "other_cpu_pct",
    "prefect_task_runs", "prefect_state_changes", "prefect_api_requests",
)
# tasks.csv: one row per task of per_item, static:N, adaptive and raw_dask:N (thinned to
# harness.analysis.overhead.TASKS_CSV_MAX_PER_RUN per strategy x repeat); times in seconds from the
# stage's start as the flow saw them, start_s replayed (harness.analysis.overhead).
TASKS_COLUMNS = (
    "strategy", "repeat", "variant", "runtime", "task", "items", "submit_s", "start_s", "finish_s", "compute_s",
    "seen_late",
)
TRACE_COLUMNS = (
    "strategy", "repeat", "t_s", "batch_size", "items", "duration_s", "compute_s",
    "throughput_items_s", "reason",
)


@dataclass(frozen=True)
class RunRecord:
    """One measured run of one strategy: a row of runs.csv."""

    workload: str
    strategy: str
    repeat: int
    wall_s: float  # the mapping stage, submit of the first task to the last result read
    items: int  # items this run processed (a sample when `sampled`)
    items_ok: int
    items_failed: int
    tasks: int
    retries: int
    batch_size_median: float
    ideal_s: float  # measured compute of those items / worker threads
    peak_rss_mb: float  # the flow process's RSS high-water during this run (it includes the
    # in-process Dask scheduler, and Python seldom returns memory: later runs inherit peaks)
    items_total: int  # items in the workload
    sampled: bool  # True: measured on an evenly spread sample of `items` of `items_total`
    projected_wall_s: float  # wall_s * items_total / items: stated as a projection, never mixed up
    compute_s: float
    throughput_items_s: float
    overhead_per_task_ms: float  # (wall x threads - compute) / tasks: fixed cost, transfer and idle threads
    # mixed (the split is in fixed_ms_per_task, transfer_us_per_item, idle_s, tail_idle_s below)
    flow_s: float  # the whole flow call, including flow-run creation and the Dask client
    checksum: str
    order: int  # position in its repeat (the order rotates each repeat)
    profile: str
    rss_growth_mb: float  # peak during the run minus RSS at its start, freed heap not returned first:
    # understates a run that reuses memory an earlier one freed (peak_rss_above_start_mb does not)
    # The dynamic-workflow pattern (harness.patterns): its [pattern] kind; "dynamic" (the pattern
    # as written, structure decided at run time) or "twin" (its static twin: same work, structure
    # fixed up front); the flow runs it created; what it built at run time ("name=count;...");
    # and how often the adaptive trace switched execution mode within a stage.
    pattern: str = "map"
    variant: str = "dynamic"
    flow_runs: int = 0
    routes: str = ""
    mode_changes: int = 0
    # The machine around this run (harness.measure.machine_load.LoadProbe): 1-minute load average before
    # and after it, and the share of CPU time idle and stolen by a hypervisor during it.
    load_before: float = math.nan
    load_after: float = math.nan
    cpu_idle_pct: float = math.nan
    cpu_steal_pct: float = math.nan
    # ... and the share of the machine's CPU time processes outside the harness used during it
    # (harness.measure.machine_load.OTHER_CPU_PCT_WARNING). Last in runs.csv: it came after the others.
    other_cpu_pct: float = math.nan
    # The per-task overhead split (harness.analysis.overhead; README, "Where the overhead goes"): this run's
    # fixed cost per task (busy - compute - t x items, median over its tasks), its runtime's
    # per-item transfer cost t, thread time idle (threads x wall - sum of task busy time) and the
    # part of it after the last task started. NaN where there are no per-task timings.
    fixed_ms_per_task: float = math.nan
    transfer_us_per_item: float = math.nan
    idle_s: float = math.nan
    tail_idle_s: float = math.nan
    # This run's own memory: its peak RSS above the RSS at its start, measured after freed memory
    # was collected and returned to the OS (RssSampler), so a strategy reusing heap that an earlier
    # one freed still shows what it took. peak_rss_mb stays the process's high-water mark.
    peak_rss_above_start_mb: float = math.nan
    # What the Dask scheduler's task stream saw of this stage (harness.runtime.diagnostics):
    # its Dask tasks and their worker-thread seconds computing (for a Prefect task: Prefect's
    # task engine as well as the items), fetching inputs and deserializing. Items the adaptive
    # strategy runs inline in the flow process are no Dask task.
    dask_tasks: float = math.nan
    dask_compute_s: float = math.nan
    dask_transfer_s: float = math.nan
    dask_deserialize_s: float = math.nan
    # What the stage sent the Prefect API, counted in the flow process and every worker
    # (harness.runtime.api_calls): task runs created, task-run states written, HTTP requests.
    # 0 for the references (no Prefect); NaN where unknown (a process did not answer) or not
    # recorded (run folders from before these columns).
    prefect_task_runs: float = math.nan
    prefect_state_changes: float = math.nan
    prefect_api_requests: float = math.nan

    def as_row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def records_frame(records: list[RunRecord]) -> pd.DataFrame:
    return pd.DataFrame([r.as_row() for r in records], columns=list(RUN_COLUMNS))


def read_runs(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "runs.csv", dtype={"checksum": str})


# The runs.csv columns every reader (report, compare, table) needs; older folders may lack
# the later ones, which the readers treat as absent.
NEEDED_RUN_COLUMNS = ("workload", "strategy", "repeat", "wall_s")


@dataclass(frozen=True)
class RunFolder:
    """A run folder read and checked whole: runs.csv and env.json as the readers need them."""

    path: Path
    runs: pd.DataFrame
    env: dict[str, Any]


def _damaged(path: Path, damage: str, what: str = "as `harness run` writes it") -> SpecError:
    return SpecError(f"{path}: {damage}; expected {path.name} {what} (rerun the workload, "
                     "or restore the file from a copy)")


def _check_runs_csv(path: Path) -> pd.DataFrame:
    import csv

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise _damaged(path, f"not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise _damaged(path, f"cannot be read ({exc.strerror or exc})") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise _damaged(path, "found an empty file")
    header = rows[0]
    missing = [c for c in NEEDED_RUN_COLUMNS if c not in header]
    if missing:
        raise _damaged(path, f"found no column {', '.join(missing)}")
    if len(rows) < 2:
        raise _damaged(path, "found a header and no rows")
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise _damaged(path, f"line {number} has {len(row)} fields, the header {len(header)} (truncated?)")
    if not text.endswith("\n"):
        raise _damaged(path, "the last line ends without a newline (truncated?)")
    try:
        runs = pd.read_csv(path, dtype={"checksum": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise _damaged(path, f"cannot be read as CSV ({exc})") from None
    empty = runs[list(NEEDED_RUN_COLUMNS)].isna().any(axis=1)
    if empty.any():
        raise _damaged(path, f"line {int(empty.to_numpy().argmax()) + 2} has no value for "
                       f"{', '.join(c for c in NEEDED_RUN_COLUMNS if pd.isna(runs.loc[empty.idxmax(), c]))}")
    numeric = [f.name for f in dataclasses.fields(RunRecord) if f.type in ("int", "float") and f.name in runs]
    for column in numeric:
        if not pd.api.types.is_numeric_dtype(runs[column]) and runs[column].notna().any():
            raise _damaged(path, f"column {column} holds values that are not numbers")
    return runs


def _check_no_duplicates(path: Path, runs: pd.DataFrame) -> None:
    """One row per strategy x repeat (x variant, for a pattern's dynamic run and its twin): a row
    written twice (a copy-paste, two files concatenated) would count its run twice."""
    key = ["strategy", "repeat"] + (["variant"] if "variant" in runs else [])
    keys = runs[key].astype(str).fillna("")  # an older file's empty variant (NaN) compares equal as ""
    twice = keys.duplicated(keep="first")
    if twice.any():
        again = int(twice.to_numpy().argmax())
        first = int((keys == keys.iloc[again]).all(axis=1).to_numpy().argmax())
        row = runs.iloc[again]
        variant = f" ({row['variant']})" if "variant" in runs and row["variant"] not in ("dynamic", None) \
            and pd.notna(row["variant"]) else ""
        raise _damaged(path, f"line {again + 2} duplicates line {first + 2}: {row['strategy']}{variant} repeat "
                       f"{int(row['repeat'])} twice", "with one row per strategy and repeat")


def _check_rows_present(path: Path, runs: pd.DataFrame, env: dict[str, Any]) -> None:
    """Every strategy x repeat env.json lists has its rows (a truncated runs.csv drops whole rows)."""
    strategies, repeats = env.get("strategies"), env.get("repeats")
    if not isinstance(strategies, list) or not isinstance(repeats, int) or isinstance(repeats, bool):
        return  # an older env.json: nothing to check against
    counts = runs.groupby([runs["strategy"].astype(str), runs["repeat"]]).size()
    per_run = int(counts.max())  # a pattern's run has a dynamic and a twin row per strategy x repeat
    short = [f"{s} repeat {r}" for s in map(str, strategies) for r in range(repeats)
             if int(counts.get((s, r), 0)) < per_run]
    if short:
        shown = ", ".join(short[:4]) + (f" and {len(short) - 4} more" if len(short) > 4 else "")
        raise _damaged(path, f"found no rows for {shown}, which env.json lists ({len(strategies)} strategies x "
                       f"{repeats} repeats)", "with a row for every strategy and repeat")


def read_run_folder(path: str | os.PathLike[str], *, writable: bool = False,
                    env_keys: tuple[str, ...] = ()) -> RunFolder:
    """Read a run folder's runs.csv and env.json, checked: every row complete, the needed
    columns present, env.json an object holding `env_keys` (what the caller reads of it), a
    row for each strategy x repeat it lists, and (with `writable`) write access to the folder
    and its report files. SpecError naming the file and the damage otherwise; nothing is
    written either way."""
    folder = Path(path)
    if not folder.is_dir():
        raise SpecError(f"{folder}: not a run folder (no such folder)")
    for needed in ("runs.csv", "env.json"):
        if not (folder / needed).is_file():
            raise SpecError(f"{folder}: not a run folder (no {needed})")
    env_path = folder / "env.json"
    try:
        env = json.loads(env_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _damaged(env_path, f"not valid JSON ({exc})") from None
    except OSError as exc:
        raise _damaged(env_path, f"cannot be read ({exc.strerror or exc})") from None
    if not isinstance(env, dict):
        raise _damaged(env_path, f"found a JSON {type(env).__name__}, not an object")
    missing = [key for key in env_keys if env.get(key) is None]
    if missing:
        raise _damaged(env_path, f"found no {', '.join(missing)}", "with the keys `harness run` writes")
    runs = _check_runs_csv(folder / "runs.csv")
    _check_no_duplicates(folder / "runs.csv", runs)
    _check_rows_present(folder / "runs.csv", runs, env)
    if writable:
        for target in (folder, *(folder / name for name in ("report.md", "report.html") if (folder / name).exists())):
            if not os.access(target, os.W_OK):
                raise SpecError(f"{target}: not writable; the report is written into the run folder "
                                "(copy the folder somewhere writable and report on the copy)")
    return RunFolder(folder, runs, env)
