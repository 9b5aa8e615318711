"""What a run leaves behind: one RunRecord per strategy x repeat, the adaptive trace, the
environment, written as runs.csv / trace.csv / env.json into a run folder that appears only
when complete."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import gc
import json
import math
import os
import platform
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import psutil

from harness.measure.conditions import cpu_model
from harness.errors import RunError, SpecError

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
# Versions recorded in env.json: what a reader needs to reproduce a number.
PACKAGES = ("prefect", "prefect-dask", "dask", "distributed", "numpy", "pandas", "joblib", "harness")
# env.json names each package as above; the harness is installed as the distribution
# "prefect-dask-harness" (pyproject.toml: "harness" on PyPI is another project).
DISTRIBUTIONS = {"harness": "prefect-dask-harness"}
# The RSS sampler's period: fine enough to catch the flow process's peak during a batch
# submit burst, coarse enough to cost nothing measurable (one /proc read per period).
RSS_SAMPLE_PERIOD_S = 0.05


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
    # The machine around this run (harness.measure.conditions.LoadProbe): 1-minute load average before
    # and after it, and the share of CPU time idle and stolen by a hypervisor during it.
    load_before: float = math.nan
    load_after: float = math.nan
    cpu_idle_pct: float = math.nan
    cpu_steal_pct: float = math.nan
    # ... and the share of the machine's CPU time processes outside the harness used during it
    # (harness.measure.conditions.OTHER_CPU_PCT_WARNING). Last in runs.csv: it came after the others.
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


def read_run_folder(path: str | os.PathLike[str], *, writable: bool = False) -> RunFolder:
    """Read a run folder's runs.csv and env.json, checked: every row complete, the needed
    columns present, env.json an object, a row for each strategy x repeat it lists, and (with
    `writable`) write access to the folder and its report files. SpecError naming the file
    and the damage otherwise; nothing is written either way."""
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
    runs = _check_runs_csv(folder / "runs.csv")
    _check_rows_present(folder / "runs.csv", runs, env)
    if writable:
        for target in (folder, *(folder / name for name in ("report.md", "report.html") if (folder / name).exists())):
            if not os.access(target, os.W_OK):
                raise SpecError(f"{target}: not writable; the report is written into the run folder "
                                "(copy the folder somewhere writable and report on the copy)")
    return RunFolder(folder, runs, env)


def _git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def environment(extra: dict[str, Any]) -> dict[str, Any]:
    """Machine, Python, package versions and git commit, merged with the run's own facts."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(DISTRIBUTIONS.get(name, name))
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "packages": versions,
        "git_commit": _git_commit(),
        **extra,
    }


def release_free_memory() -> None:
    """Collect garbage and hand the allocator's free pages back to the OS (glibc's malloc_trim;
    elsewhere the collection alone): RSS then counts memory in use, not memory once used."""
    gc.collect()
    libc = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(libc).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # not glibc: nothing to trim
        pass


class RssSampler:
    """Resident memory of this process while the context is open (a daemon thread samples it).

    `peak_mb` is the process's high-water mark, RSS at entry included. `own_peak_mb` starts
    after `release_free_memory()`: with `own_start_mb`, the RSS just after it, it measures what
    the work inside the context took, even when an earlier run left freed heap it could reuse.
    The collection runs before the caller's clock starts, and spares the run a collection of
    the previous run's garbage.
    """

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self.start_mb = 0.0
        self.own_peak_mb = 0.0
        self.own_start_mb = 0.0
        self._stop = threading.Event()
        self._process = psutil.Process()

    def _sample(self) -> None:
        rss = self._process.memory_info().rss / 2**20
        self.peak_mb = max(self.peak_mb, rss)
        self.own_peak_mb = max(self.own_peak_mb, rss)

    def _loop(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_PERIOD_S):
            self._sample()

    def __enter__(self) -> RssSampler:
        self._sample()
        self.start_mb = self.peak_mb
        release_free_memory()
        self.own_peak_mb = 0.0
        self._sample()
        self.own_start_mb = self.own_peak_mb
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def growth_mb(self) -> float:
        return self.peak_mb - self.start_mb

    @property
    def own_growth_mb(self) -> float:
        """Peak above the start, both after freed memory went back to the OS."""
        return self.own_peak_mb - self.own_start_mb


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def fresh_run_id(out: Path, workload: str) -> str:
    """A run id no folder under out/<workload> has yet (nothing is created: run_folder does)."""
    parent = Path(out) / workload
    while True:
        run_id = new_run_id()
        if not (parent / run_id).exists() and not any(parent.glob(f".{run_id}.*partial")):
            return run_id


def _partial_name(run_id: str) -> str:
    """A run's temporary folder: hidden, and named after the process that writes it, so a later
    run can tell a live run's folder (leave it) from a killed one's (remove it)."""
    return f".{run_id}.{os.getpid()}.partial"


def _owner_gone(partial: Path) -> bool:
    """True if the process named in `partial`'s name is gone: not running, or its pid now
    belongs to a process started after the folder was made."""
    try:
        pid = int(partial.name.removesuffix(".partial").rsplit(".", 1)[1])
        made = partial.stat().st_mtime
    except (IndexError, ValueError, OSError):
        return False  # another naming (an older harness's): not ours to judge
    try:
        return psutil.Process(pid).create_time() > made
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def remove_stale_partials(out: Path, workload: str) -> list[Path]:
    """Remove the temporary run folders of `out/workload` whose run was killed; return them."""
    parent = Path(out) / workload
    if not parent.is_dir():
        return []
    stale = [p for p in sorted(parent.glob(".*.partial")) if p.is_dir() and _owner_gone(p)]
    for partial in stale:
        shutil.rmtree(partial, ignore_errors=True)
    return stale


@contextlib.contextmanager
def run_folder(out: Path, workload: str, run_id: str | None = None) -> Iterator[tuple[Path, Path]]:
    """Yield (a temporary folder to write into, the final path). On success the temporary
    folder is renamed into place and `latest` points at it; on any error or interrupt it is
    removed, and so are the folders made for it if they are left empty, so a half-written
    run folder never exists under its real name and a failed run leaves nothing.

    `run_id` is the id the run's flow runs were tagged with (run.py draws it with
    `fresh_run_id` before they start); without one a fresh id is drawn. A given id taken
    meanwhile is a RunError: two runs of one workload into one folder would have to start in
    the same second and draw the same four hex digits.
    """
    out = Path(out)
    parent = out / workload
    made_out = not out.exists()
    given = run_id
    while True:  # two runs started in the same second may draw the same id: the second redraws
        run_id = given or new_run_id()
        final = parent / run_id
        partial = parent / _partial_name(run_id)
        if given and (final.exists() or any(parent.glob(f".{run_id}.*partial"))):
            raise RunError(f"{final}: run id {run_id} is already taken by another run")
        if final.exists():
            continue
        parent.mkdir(parents=True, exist_ok=True)
        try:
            partial.mkdir()
            break
        except (FileExistsError, FileNotFoundError):  # not found: a failed run just removed parent
            continue
    try:
        yield partial, final
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        for folder in (parent, out) if made_out else (parent,):
            with contextlib.suppress(OSError):  # not empty: another run's, keep it
                folder.rmdir()
        raise
    partial.rename(final)
    latest = parent / "latest"
    tmp_link = parent / f".latest.{run_id}"
    tmp_link.symlink_to(run_id)
    tmp_link.replace(latest)


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
