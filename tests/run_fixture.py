"""A synthetic run folder (runs.csv, trace.csv, env.json) with known answers, for the report,
compare and browser tests: no server, no cluster, milliseconds to build.

Each strategy's true wall is TRUE_WALL_S; its repeats scatter around it by a fixed, small,
symmetric pattern (SPREAD), so every median is exactly the true wall.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from harness.measure.records import RUN_COLUMNS, TRACE_COLUMNS

ITEMS = 10_000
THREADS = 2
# Whole-workload walls in seconds; per_item and static:5 are measured on a sample of
# SAMPLE_ITEMS and projected, as run.py does past its task budget.
TRUE_WALL_S = {
    "per_item": 120.0, "static:5": 30.0, "static:50": 4.0, "static:500": 5.0,
    "raw_dask:50": 2.5, "joblib_auto": 3.2, "adaptive": 4.2,
}
SAMPLE_ITEMS = {"per_item": 500, "static:5": 2_500}
# Relative offsets of the repeats: median 0, IQR 2 % of the median (well inside 10 %).
SPREAD = (-0.02, -0.01, 0.0, 0.01, 0.02)
COMPUTE_S = 3.0  # all items' compute: ideal = 1.5 s on 2 threads
PHASES = [{"at": 0.5, "mean_ms": 0.6}]


def batch_size(strategy: str) -> int:
    return 1 if strategy == "per_item" else int(strategy.split(":")[1]) if ":" in strategy else 64


def make_runs(walls: dict[str, float] = TRUE_WALL_S, spread: tuple[float, ...] = SPREAD,
              variant: str | None = None, workload: str = "fixture") -> pd.DataFrame:
    rows = []
    for repeat, offset in enumerate(spread):
        for order, (strategy, true_wall) in enumerate(walls.items()):
            items = SAMPLE_ITEMS.get(strategy, ITEMS)
            projected = true_wall * (1 + offset)
            wall = projected * items / ITEMS
            size = batch_size(strategy)
            tasks = -(-items // size)
            compute = COMPUTE_S * items / ITEMS
            rows.append({
                "workload": workload, "strategy": strategy, "repeat": repeat, "wall_s": wall, "items": items,
                "items_ok": items, "items_failed": 0, "tasks": tasks, "retries": 0,
                "batch_size_median": float(size), "ideal_s": compute / THREADS, "peak_rss_mb": 200.0 + order,
                "items_total": ITEMS, "sampled": items < ITEMS, "projected_wall_s": projected,
                "compute_s": compute, "throughput_items_s": items / wall,
                "overhead_per_task_ms": (wall * THREADS - compute) / tasks * 1000, "flow_s": wall + 0.5,
                "checksum": "00000000deadbeef", "order": order, "profile": "lean", "rss_growth_mb": 1.0,
                **overhead_split(strategy, wall, compute, tasks, items), "peak_rss_above_start_mb": 10.0 * (order + 1),
            })
    runs = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
    if variant is not None:
        runs["variant"] = variant
    return runs


# The per-task overhead split of the fixture (harness.analysis.overhead): o per task and t per item for
# Prefect strategies and for raw Dask; joblib_auto has no per-task timings.
FIXED_S = {"Prefect": 0.020, "Dask alone": 0.002}
TRANSFER_S = {"Prefect": 5e-6, "Dask alone": 1e-6}
FLOW_LAG_S = {"Prefect": 0.003, "Dask alone": 0.0}  # per task: results waiting for the flow process


def overhead_split(strategy: str, wall: float, compute: float, tasks: int, items: int) -> dict:
    """The split columns of one runs.csv row: the thread time beyond the items' compute is the
    fixed cost, the transfer and the flow lag of each task, the rest idle."""
    if strategy == "joblib_auto":
        return {}
    runtime = "Dask alone" if strategy.startswith("raw_dask") else "Prefect"
    busy_beyond_compute = tasks * (FIXED_S[runtime] + FLOW_LAG_S[runtime]) + items * TRANSFER_S[runtime]
    idle = max(0.0, wall * THREADS - compute - busy_beyond_compute)  # walls some tests set leave no room
    return {"fixed_ms_per_task": FIXED_S[runtime] * 1000, "transfer_us_per_item": TRANSFER_S[runtime] * 1e6,
            "idle_s": idle, "tail_idle_s": idle / 2}


def make_tasks(fixed_s: float, transfer_s: float, sizes: tuple[int, ...] = (1, 5, 50, 500), per_size: int = 40,
               noise: float = 0.2, seed: int = 5, runtime: str = "Prefect") -> pd.DataFrame:
    """Synthetic tasks.csv rows whose busy - compute is fixed_s + transfer_s x items, times a
    lognormal noise of sigma `noise`, with a few wild outliers (a robust fit must shrug them off)."""
    rng = np.random.default_rng(seed)
    rows = []
    for size in sizes:
        t = 0.0
        for task in range(per_size):
            compute = size * 0.0005
            extra = (fixed_s + transfer_s * size) * rng.lognormal(0.0, noise)
            if task % 13 == 0:
                extra *= 20  # an outlier: a task that waited on something else
            rows.append({"strategy": "per_item" if size == 1 else f"static:{size}", "repeat": 0, "variant": "dynamic",
                         "runtime": runtime, "task": task, "items": size, "submit_s": t, "start_s": t,
                         "finish_s": t + compute + extra, "compute_s": compute, "seen_late": False})
            t += compute + extra
    return pd.DataFrame(rows)


def make_trace(repeats: int = len(SPREAD)) -> pd.DataFrame:
    rows = []
    for repeat in range(repeats):
        t, done, size = 0.0, 0, 8
        while done < ITEMS:
            n = min(size, ITEMS - done)
            cost = 0.0003 if done < PHASES[0]["at"] * ITEMS else 0.0006
            t += n * cost / THREADS + 0.01
            done += n
            rows.append({"strategy": "adaptive", "repeat": repeat, "t_s": round(t, 6), "batch_size": size, "items": n,
                         "duration_s": n * cost + 0.02, "compute_s": n * cost, "throughput_items_s": done / t,
                         "reason": "grow" if size < 512 else "hold"})
            size = min(512, size * 2)
    return pd.DataFrame(rows, columns=list(TRACE_COLUMNS))


def make_env() -> dict:
    return {
        "python": "3.11.7", "platform": "Linux-test", "cpu_count": 2, "memory_gb": 8.0,
        "packages": {"prefect": "3.9.1", "distributed": "2026.8.0"}, "git_commit": "abc123",
        "repeats": len(SPREAD), "warm_up_s": 1.5,
        "runtime": {"worker_threads": THREADS, "profile": "lean", "scheduler_address": "tcp://127.0.0.1:1",
                    "workers": [{"nthreads": 1}, {"nthreads": 1}], "startup": {"prefect_server_s": 5.0}},
        "strategy_notes": {"joblib_auto": ["joblib reports batch counts, not sizes"]},
        "phases": PHASES,
        "started_at": "2026-11-27T02:00:00+0000", "finished_at": "2026-11-27T02:05:00+0000",
    }


def write_run(folder: Path, runs: pd.DataFrame | None = None, trace: pd.DataFrame | None = None,
              env: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (make_runs() if runs is None else runs).to_csv(folder / "runs.csv", index=False)
    (make_trace() if trace is None else trace).to_csv(folder / "trace.csv", index=False)
    (folder / "env.json").write_text(json.dumps(make_env() if env is None else env))
    return folder


def scaled(runs: pd.DataFrame, factor: float) -> pd.DataFrame:
    """The same run with every wall time multiplied by `factor` (a planted slow-down)."""
    out = runs.copy()
    out[["wall_s", "projected_wall_s"]] *= factor
    out["throughput_items_s"] /= factor
    return out


def median_wall(runs: pd.DataFrame, strategy: str) -> float:
    return float(np.median(runs.loc[runs["strategy"] == strategy, "projected_wall_s"]))
