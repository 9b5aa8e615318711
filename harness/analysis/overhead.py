"""Where the per-task overhead goes: Prefect's fixed cost per task, the per-item transfer and
serialisation cost, tasks waiting on the flow process, and worker threads idle, from the
per-task timings of tasks.csv.

runs.csv's `overhead_per_task_ms`, (wall x threads - compute) / tasks, mixes them all: it grows
with the batch size although no single task got dearer, because a few big tasks leave threads
idle at the tail. Here each task is placed on the worker threads by replaying them as a
first-come-first-served queue (W threads: the i-th task submitted starts when it was submitted
or when the (i - W + 1)-th completion was seen, whichever is later), which gives

- busy time = seen finished - replayed start; idle_s = threads x wall - the thread-seconds with
  a task in progress (sum of busy, at most `threads` tasks at any moment); tail_idle_s = the part
  of idle_s after the last task started (threads with nothing left to run);
- per task, busy - compute = o + t·b (b items): o the fixed cost of a task, t the transfer and
  serialisation cost of one item, fitted per runtime (Prefect, or Dask alone for raw_dask)
  across tasks of different sizes with a Theil-Sen line through the median of each size
  (sizes seen in at least MIN_TASKS_PER_SIZE tasks, spanning at least MIN_SIZE_RATIO).
  Tasks the flow saw late (already done when it looked, or done before a `map` call returned:
  their finish time is unknown), and tasks whose replayed start is such a completion, stay out
  of the fit (tasks.csv `seen_late`); a strategy with fewer than MIN_TASKS_PER_SIZE tasks left
  gets its runtime's o;
- flow lag = what is left of the mixed overhead: busy time beyond the typical task's o + t·b.
  o is a median, so the few tasks that absorb long waits do not move it; their busy time is
  mostly the wait between finishing on a worker and the flow process looking at the result,
  while it was busy submitting or folding other tasks. per_item on fine work is all flow lag:
  its tasks take a few ms, the flow process spends ~15 ms submitting each one.

So, per task and exactly: mixed = fixed + t x items per task + flow lag + idle.

Pure: pandas and numpy in, numbers out (README, "Where the overhead goes").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

# tasks.csv keeps at most this many tasks per strategy x repeat, evenly spread over submit
# order: enough for a robust fit (the fit takes each size's median), small enough that a run
# with a dozen strategies x repeats writes a few MB at most. idle_s and tail_idle_s are
# computed on every task before the file is thinned.
TASKS_CSV_MAX_PER_RUN = 2_000
# runs.csv gets these columns from this module, at the end (README, "The run folder").
SPLIT_COLUMNS = ("fixed_ms_per_task", "transfer_us_per_item", "idle_s", "tail_idle_s")
PREFECT, DASK = "Prefect", "Dask alone"
# A batch size counts towards the slope t only when this many tasks had it, and the sizes that
# count must span at least this ratio (the controller's fit asks the same, FIT_MIN_SIZE_RATIO):
# static:N's smaller remainder batch is one task per repeat, a few per cent off N, and a line
# through it and the full batches is noise. On large.toml raw_dask:4096 (48 batches of 4,096 and
# one of 3,392 per repeat) it gave t = 23 µs per item and a fixed cost of -77 ms per task.
MIN_TASKS_PER_SIZE = 3
MIN_SIZE_RATIO = 1.5


def replayed_starts(submit_s: np.ndarray, finish_s: np.ndarray, threads: int) -> np.ndarray:
    """When each task (in submit order) started on one of `threads` threads, first come first served."""
    submit_s, finish_s = np.asarray(submit_s, dtype=float), np.asarray(finish_s, dtype=float)
    starts = submit_s.copy()
    if threads >= 1 and len(submit_s) > threads:
        freed = np.sort(finish_s)[: len(submit_s) - threads]  # the i-th completion frees task i + W
        starts[threads:] = np.maximum(submit_s[threads:], freed)
    return np.minimum(starts, finish_s)


def freed_by_late(submit_s: np.ndarray, finish_s: np.ndarray, late: np.ndarray, threads: int) -> np.ndarray:
    """Per task (submit order): whether its replayed start is a completion the flow saw late,
    so that the start, and with it the task's busy time, is unknown."""
    submit_s, finish_s = np.asarray(submit_s, dtype=float), np.asarray(finish_s, dtype=float)
    out = np.zeros(len(submit_s), dtype=bool)
    if threads >= 1 and len(submit_s) > threads:
        order = np.argsort(finish_s, kind="stable")
        freed = finish_s[order][: len(submit_s) - threads]
        freed_late = np.asarray(late, dtype=bool)[order][: len(submit_s) - threads]
        out[threads:] = freed_late & (freed > submit_s[threads:])  # it waited for that completion
    return out


def with_starts(tasks: pd.DataFrame, threads: int) -> pd.DataFrame:
    """One stage's tasks (submit order) with `start_s` replayed from their submit and finish
    times; a task whose replayed start is a completion seen late is `seen_late` too (its busy
    time is as unknown as that of a task seen late itself)."""
    tasks = tasks.sort_values("task")
    submit, finish = tasks["submit_s"].to_numpy(float), tasks["finish_s"].to_numpy(float)
    late = tasks["seen_late"].to_numpy(bool) if "seen_late" in tasks else np.zeros(len(tasks), dtype=bool)
    return tasks.assign(start_s=replayed_starts(submit, finish, threads),
                        seen_late=late | freed_by_late(submit, finish, late, threads))


def _busy_threads(start: np.ndarray, finish: np.ndarray, threads: int, since: float) -> float:
    """Thread-seconds after `since` with a task on the thread: the time integral of the number of
    tasks in progress, capped at `threads` (tasks completing out of submit order can make the
    replay overlap more than `threads` of them; no thread runs two)."""
    start, finish = np.maximum(start, since), np.maximum(finish, since)
    times = np.concatenate([start, finish])
    steps = np.concatenate([np.ones(len(start)), -np.ones(len(finish))])
    order = np.lexsort((steps, times))  # at a tie, a finish before a start
    times, running = times[order], np.cumsum(steps[order])
    return float(np.sum(np.minimum(running[:-1], threads) * np.diff(times)))


def idle(tasks: pd.DataFrame, wall_s: float, threads: int) -> tuple[float, float]:
    """(idle_s, tail_idle_s) of one stage from its tasks with `start_s` (see the module docstring)."""
    if tasks.empty or not threads:
        return math.nan, math.nan
    start, finish = tasks["start_s"].to_numpy(float), tasks["finish_s"].to_numpy(float)
    total = threads * wall_s - _busy_threads(start, finish, threads, 0.0)
    last = float(start.max())
    tail = threads * max(0.0, wall_s - last) - _busy_threads(start, finish, threads, last)
    return max(0.0, total), max(0.0, tail)


@dataclass(frozen=True)
class TaskCost:
    """busy - compute = fixed_s + transfer_s x items, fitted over one runtime's tasks."""

    runtime: str  # PREFECT or DASK
    fixed_s: float
    transfer_s: float  # NaN when every task had the same size: o and t cannot be told apart
    tasks: int
    sizes: int  # distinct batch sizes the fit saw

    @property
    def identified(self) -> bool:
        return not math.isnan(self.transfer_s)


def _timed(tasks: pd.DataFrame) -> pd.DataFrame:
    """The tasks whose busy time means something: a compute time (the task did not fail as a
    whole) and seen finishing when it did (not `seen_late`, see harness.strategies.timings)."""
    tasks = tasks.dropna(subset=["compute_s"])
    if "seen_late" in tasks:
        tasks = tasks[~tasks["seen_late"].astype(bool)]
    return tasks


def _residual(tasks: pd.DataFrame) -> pd.Series:
    return tasks["finish_s"] - tasks["start_s"] - tasks["compute_s"]


def fit(tasks: pd.DataFrame, runtime: str) -> TaskCost | None:
    """o and t over `tasks` (rows with start_s, finish_s, compute_s, items); None without tasks.
    Tasks the flow saw late (already done when it looked) are left out."""
    tasks = _timed(tasks)
    if tasks.empty:
        return None
    y = _residual(tasks)
    counts = tasks.groupby("items").size()
    by_size = y.groupby(tasks["items"]).median()[counts >= MIN_TASKS_PER_SIZE]
    if len(by_size) < 2 or by_size.index.max() < MIN_SIZE_RATIO * by_size.index.min():
        return TaskCost(runtime, float(y.median()), math.nan, len(tasks), 1)
    slope = sps.theilslopes(by_size.to_numpy(float), by_size.index.to_numpy(float)).slope
    t = max(0.0, float(slope))  # a negative slope is noise: items cost nothing measurable to move
    return TaskCost(runtime, float((y - t * tasks["items"]).median()), t, len(tasks), len(by_size))


def runtime_of(needs_flow: bool) -> str:
    return PREFECT if needs_flow else DASK


def fixed_per_task(tasks: pd.DataFrame, cost: TaskCost) -> float:
    """One run's own fixed cost per task: median of busy - compute - t x items over its tasks;
    the runtime's o when the flow saw fewer than MIN_TASKS_PER_SIZE of them finish (the rest
    seen late: per_item on fine work, whose flow process is busy submitting the next task when
    one finishes; the one it waited for is often the first, whose latency is a cold start's)."""
    tasks = _timed(tasks)
    if len(tasks) < MIN_TASKS_PER_SIZE:  # one or two: the first task of a flow run is slow
        return cost.fixed_s
    t = cost.transfer_s if cost.identified else 0.0
    return float((_residual(tasks) - t * tasks["items"]).median())


def thinned(tasks: pd.DataFrame, limit: int = TASKS_CSV_MAX_PER_RUN) -> pd.DataFrame:
    """At most `limit` of one run's tasks, evenly spread over submit order."""
    if len(tasks) <= limit:
        return tasks
    return tasks.iloc[np.unique(np.linspace(0, len(tasks) - 1, limit).round().astype(int))]


def flow_lag_ms_per_task(runs: pd.DataFrame) -> pd.Series:
    """Per runs.csv row, the rest of the mixed overhead once the fixed cost, the items' transfer
    and idle threads are taken out (module docstring): mixed - fixed - t x items per task - idle
    per task. Without an identified t, `fixed` already holds t x the one size seen."""
    tasks = runs["tasks"].where(runs["tasks"] > 0)
    transfer_ms = runs["transfer_us_per_item"].fillna(0.0) / 1000 * runs["items"] / tasks
    idle_ms = runs["idle_s"] / tasks * 1000
    return runs["overhead_per_task_ms"] - runs["fixed_ms_per_task"] - transfer_ms - idle_ms


def per_strategy(runs: pd.DataFrame) -> pd.DataFrame:
    """Per strategy (first-seen order), medians over repeats: the mixed overhead per task, the
    split's columns, idle per task (idle_s / tasks) and flow lag per task; in each row
    fixed + t x items per task + flow lag + idle = mixed (medians of the four add up nearly)."""
    if not set(SPLIT_COLUMNS) <= set(runs.columns):
        return pd.DataFrame()
    runs = runs.assign(idle_ms_per_task=runs["idle_s"] / runs["tasks"].where(runs["tasks"] > 0) * 1000,
                       flow_lag_ms_per_task=flow_lag_ms_per_task(runs))
    columns = ["overhead_per_task_ms", *SPLIT_COLUMNS, "flow_lag_ms_per_task", "idle_ms_per_task", "tasks",
               "batch_size_median"]
    return runs.groupby("strategy", sort=False)[columns].median()
