"""What `harness run` checks before it starts anything: the results folder, and the memory and
the disk the workload will need. Pure and fast (no Prefect, no Dask, no pandas): a refusal here comes in
well under a second, exit 2, with nothing written.

The workload file itself (its size, its keys, every number against its bounds and the
platform's limits) is checked by harness.workload.spec; this module checks what the file alone cannot
say: where the run folder goes, whether the machine can hold what will be in flight, and
whether the results folder's disk can hold the rounds the run is sure to measure.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from harness.errors import SpecError
from harness.workload.spec import WorkloadSpec, strategies_to_run
from harness.workload.vocabulary import Strategy

# Tasks in flight: a window of harness.strategies.base.SUBMIT_WINDOW_PER_THREAD per worker
# thread for per_item, static:N and raw_dask:N; the adaptive controller's widest window
# (controller.MAX_WINDOW) of batches capped by ADAPTIVE_MAX_BATCH_BYTES.
# Copies of an in-flight item's payload alive on this machine at once: the item in the flow
# process, its pickled form on the way, the worker's unpickled copy, and the result's payload
# (the input reversed, harness.work.kernels) until the flow has read it.
PAYLOAD_COPIES_IN_FLIGHT = 4
# Python objects of one item and its outcome besides the payload (an Item and an Outcome tuple,
# their floats and ints): ~0.3 KiB measured with tracemalloc, rounded up.
ITEM_OVERHEAD_BYTES = 512
# What a run holds whatever the workload: the Prefect API server (~220 MB RSS measured, issue
# 16), the flow process with Prefect, Dask and the in-process scheduler (~250 MB), and each
# worker process with Prefect imported (~150 MB).
RUNTIME_BASE_BYTES = 500 * 2**20
WORKER_PROCESS_BYTES = 150 * 2**20


@dataclass(frozen=True)
class MemoryNeed:
    """The estimate for the strategy that needs the most: what `harness run` will hold at peak."""

    bytes: int
    strategy: str
    in_flight_items: int
    detail: str


def _gib(n: float) -> str:
    return f"{n / 2**30:,.2f} GiB"


def memory_need(spec: WorkloadSpec) -> MemoryNeed:
    """The peak memory the run will need on this machine, from its largest in-flight set.

    Strategies run one after another, so the peak is the largest of theirs: tasks in flight ×
    items per task × (payload copies + per-item objects), plus the runtime's own processes.
    """
    from harness.policy.controller import MAX_WINDOW
    from harness.strategies.base import ADAPTIVE_MAX_BATCH_BYTES, SUBMIT_WINDOW_PER_THREAD

    threads = spec.cluster.workers * spec.cluster.threads_per_worker
    payload = spec.items.payload_bytes
    per_item = payload * PAYLOAD_COPIES_IN_FLIGHT + ITEM_OVERHEAD_BYTES
    items_total = spec.items.count
    worst: tuple[int, Strategy, str] | None = None
    for strategy in strategies_to_run(spec):
        # A user's items ([task] with [items] source or path) are counted only once loaded: then
        # the window alone bounds what is in flight.
        measured = strategy.sample_size(items_total) if items_total else None
        if strategy.kind == "adaptive":
            tasks = MAX_WINDOW
            batch = max(1, ADAPTIVE_MAX_BATCH_BYTES // payload) if payload else (measured or 1)
            how = f"up to {tasks} tasks of at most {ADAPTIVE_MAX_BATCH_BYTES // 2**20} MiB of payload"
        else:
            tasks = SUBMIT_WINDOW_PER_THREAD * threads
            batch = strategy.batch_size or 1
            how = f"{tasks} tasks in flight ({SUBMIT_WINDOW_PER_THREAD} per worker thread) x {batch:,} items"
        in_flight = tasks * batch if measured is None else min(measured, tasks * batch)
        if worst is None or in_flight > worst[0]:
            worst = (in_flight, strategy, how)
    assert worst is not None  # a spec has at least one strategy
    in_flight, strategy, how = worst
    runtime = RUNTIME_BASE_BYTES + WORKER_PROCESS_BYTES * spec.cluster.workers
    total = in_flight * per_item + runtime
    detail = (f"{strategy}: {how}, {in_flight:,} items of {payload:,} payload bytes in flight "
              f"(x{PAYLOAD_COPIES_IN_FLIGHT} copies) = {_gib(in_flight * per_item)}, plus {_gib(runtime)} "
              f"for the API server, the flow and {spec.cluster.workers} worker processes")
    return MemoryNeed(total, str(strategy), in_flight, detail)


def check_memory(spec: WorkloadSpec, available: int | None = None) -> MemoryNeed:
    """Refuse (SpecError) a workload whose estimated peak exceeds the memory available now."""
    import psutil

    need = memory_need(spec)
    available = psutil.virtual_memory().available if available is None else available
    if need.bytes > available:
        raise SpecError(f"{spec.source or spec.name}: this workload needs about {_gib(need.bytes)} of memory "
                        f"but the machine has {_gib(available)} available ({need.detail}); lower [items] "
                        f"payload_bytes or the batch size, or leave {need.strategy} out of [run] strategies")
    return need


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255  # POSIX's usual NAME_MAX


def check_out(out: Path, workload: str) -> None:
    """Refuse (SpecError) a results folder the run could not write `<out>/<workload>/<run id>/` into:
    a file where a folder must be, a folder without write access, a name the file system refuses.
    Creates nothing."""
    out = Path(out)
    target = out / workload
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise SpecError(f"--out {out}: {existing} is a file, expected a folder (or a path that can be created)")
    limit = _name_max(existing)
    for part in target.relative_to(existing).parts if target != existing else ():
        if len(os.fsencode(part)) > limit:
            what = "the workload name" if part == workload else "--out"
            raise SpecError(f"--out {out}: {what} {part[:40]!r}... is {len(os.fsencode(part))} bytes, expected a name "
                            f"of at most {limit} bytes (this file system's limit), a shorter [top level] name or --out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SpecError(f"--out {out}: {existing} is not writable ({os.strerror(errno.EACCES)}); "
                        "choose another --out")


# Disk a run needs besides its Prefect database: the database's template copy (~1.3 MB), the
# run folder's CSVs, plots and reports (under 1 MB at the bundled workloads' sizes), Dask
# performance reports (~1-10 MB each with --dask-report), with room to spare.
DISK_BASE_BYTES = 64 * 2**20
# The Prefect database per task run: 1,290 task runs of small.toml grew it (and its write-ahead
# log) by ~10 MB, ~7.8 KiB each with their three state rows; twice that for the indexes and a
# write-ahead log not yet checkpointed.
DISK_PER_TASK_RUN_BYTES = 16 * 2**10
# Rounds an "auto" run is sure to measure: its floor for 5-12 strategies
# (harness.analysis.settle.floor_rounds). Past the floor a run is bounded by its budget, and a
# disk that fills then keeps the records measured (harness.measure.run_folder).
AUTO_ROUNDS_FOR_DISK = 5


@dataclass(frozen=True)
class DiskNeed:
    bytes: int
    task_runs: int
    detail: str


def disk_need(spec: WorkloadSpec) -> DiskNeed:
    """The disk the run will fill at least: Prefect task runs of every round it is sure to run."""
    from harness.workload.vocabulary import PREFECT_TASK_BUDGET

    items = spec.items.count
    per_round = 0
    for strategy in strategies_to_run(spec):
        if not strategy.needs_flow:
            continue
        if strategy.kind == "adaptive" or not items:  # sizes itself, or items counted once loaded
            per_round += PREFECT_TASK_BUDGET
        else:
            batch = strategy.batch_size or 1
            per_round += -(-strategy.sample_size(items) // batch)
    if spec.pattern.kind != "map":
        per_round *= 2  # every strategy also runs as the pattern's static twin
    rounds = spec.run.repeats if isinstance(spec.run.repeats, int) else AUTO_ROUNDS_FOR_DISK
    task_runs = per_round * rounds
    need = DISK_BASE_BYTES + task_runs * DISK_PER_TASK_RUN_BYTES
    detail = (f"~{task_runs:,} Prefect task runs ({rounds} rounds of ~{per_round:,}) x "
              f"{DISK_PER_TASK_RUN_BYTES // 2**10} KiB in the run's Prefect database, plus "
              f"{DISK_BASE_BYTES // 2**20} MiB for the database and the run folder")
    return DiskNeed(need, task_runs, detail)


def check_disk(spec: WorkloadSpec, out: Path, free: int | None = None) -> DiskNeed:
    """Refuse (SpecError) a run whose results folder's file system has less free space than the
    run will surely fill: a full disk mid-run fails Prefect's database and loses the run."""
    import shutil

    need = disk_need(spec)
    if free is None:
        existing = Path(out)
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        free = shutil.disk_usage(existing).free
    if need.bytes > free:
        raise SpecError(f"--out {out}: this run needs about {need.bytes / 2**20:,.0f} MiB of disk there but its "
                        f"file system has {free / 2**20:,.0f} MiB free ({need.detail}); free space, choose "
                        f"another --out, or run fewer repeats or strategies")
    return need
