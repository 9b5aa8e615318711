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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.errors import SpecError
from harness.workload.spec import WorkloadSpec, strategies_to_run
from harness.workload.vocabulary import ADAPTIVE_KINDS, Strategy

# Tasks in flight: per_item, static:N and raw_dask:N keep the window
# harness.strategies.base.submit_window gives (tasks per worker thread, fewer for large payloads,
# never fewer than threads + 1), plus the finished task whose result the flow is reading (the
# scheduler keeps a task's input until its future is released, and the Prefect strategies submit
# the next one first); adaptive, the controller's full window (controller.full_window) of
# batches capped by ADAPTIVE_MAX_BATCH_BYTES; joblib_auto, every item of the stage: joblib gives
# no byte bound (batch_size="auto" has no upper bound and it reads batch_size x threads items
# ahead; pre_dispatch counts batches, not items), so the preflight refuses where that cannot fit.
#
# Copies of that payload alive at once, per batch held. Measured as peak RSS above the same run
# with 64 B items (2 workers x 1 thread, sleep items, sampled every 20 ms; tracemalloc for where
# the flow's copies live), with H batches held (window + 1):
#   static:64 of 256 KiB items (16 MiB batches), H = 17: flow 1.8, whole tree 2.9; H = 9: 2.2, 3.4
#   static:64 of 64 KiB items (4 MiB batches), H = 17: flow 1.0, tree 1.9
#   static:256 of 256 KiB items (64 MiB), H = 4 (the least window): flow 2.2, workers 2.5, tree 3.1
#   per_item of 1 MiB items, H = 17: flow 2.2
#   static:1024 of 64 KiB items over 100,000 (issue 24, idle machine), H = 17: flow 2.75, tree 4.7
# In the flow process: the in-process scheduler's deserialized copy of every task a future is
# held for (finished ones too, until released), the batch being made and pickled, and frames on
# their way to the scheduler and on to a worker. In the workers: the batch received, unpickled,
# and its outcomes' payloads (the input reversed), up to two tasks per worker thread (Dask's
# worker-saturation), and what the allocator keeps of earlier ones. Hence 3 + 2: above every
# whole-tree figure, by 6 % for issue 24's.
FLOW_PAYLOAD_COPIES = 3
WORKER_PAYLOAD_COPIES = 2
PAYLOAD_COPIES_IN_FLIGHT = FLOW_PAYLOAD_COPIES + WORKER_PAYLOAD_COPIES
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


def _runtime_bytes(spec: WorkloadSpec) -> int:
    return RUNTIME_BASE_BYTES + WORKER_PROCESS_BYTES * spec.cluster.workers


def _strategy_need(spec: WorkloadSpec, strategy: Strategy, payload: int) -> tuple[int, int, str]:
    """(peak bytes, items in flight, how) for one strategy with items of `payload` bytes: the
    items its window may hold (the window the strategy itself asks for) x (payload copies +
    per-item objects), plus the runtime's own processes."""
    from harness.policy.controller import full_window
    from harness.strategies.base import ADAPTIVE_MAX_BATCH_BYTES, submit_window

    threads = spec.cluster.workers * spec.cluster.threads_per_worker
    items_total = spec.items.count
    # A user's items ([task] with [items] source or path) are counted only once loaded: then
    # the window alone bounds what is in flight (and they carry no payload_bytes).
    measured = strategy.sample_size(items_total) if items_total else None
    if strategy.kind in ADAPTIVE_KINDS:
        tasks = full_window(threads)
        batch = max(1, ADAPTIVE_MAX_BATCH_BYTES // payload) if payload else (measured or 1)
        how = f"up to {tasks} tasks of at most {ADAPTIVE_MAX_BATCH_BYTES // 2**20} MiB of payload"
    elif strategy.kind == "joblib_auto" and measured is not None:
        tasks, batch = 1, measured
        how = "every item of the stage (joblib bounds no bytes in flight: batch_size=\"auto\" has no upper bound)"
    else:
        batch = strategy.batch_size or 1
        window = submit_window(threads, batch, payload)
        tasks = window.tasks + 1
        how = f"{window.describe()}, and 1 more being read ({tasks} tasks of {batch:,} item{'s' * (batch != 1)})"
    in_flight = tasks * batch if measured is None else min(measured, tasks * batch)
    return in_flight * (payload * PAYLOAD_COPIES_IN_FLIGHT + ITEM_OVERHEAD_BYTES) + _runtime_bytes(spec), in_flight, how


def memory_need(spec: WorkloadSpec) -> MemoryNeed:
    """The peak memory the run will need on this machine, from its largest in-flight set.

    Strategies run one after another, so the peak is the largest of theirs: items in flight ×
    (payload copies + per-item objects), plus the runtime's own processes.
    """
    payload = spec.items.payload_bytes
    needs = {strategy: _strategy_need(spec, strategy, payload) for strategy in strategies_to_run(spec)}
    strategy = max(needs, key=lambda s: needs[s][0])  # the first of the largest
    total, in_flight, how = needs[strategy]
    runtime = _runtime_bytes(spec)
    detail = (f"{strategy}: {how}; {in_flight:,} items of {payload:,} payload bytes in flight "
              f"(x{PAYLOAD_COPIES_IN_FLIGHT} copies: {FLOW_PAYLOAD_COPIES} in the flow process, "
              f"{WORKER_PAYLOAD_COPIES} in the workers) = {_gib(total - runtime)}, plus {_gib(runtime)} "
              f"for the API server, the flow and {spec.cluster.workers} worker processes")
    return MemoryNeed(total, str(strategy), in_flight, detail)


def _largest(fits: Callable[[int], bool], lo: int, hi: int) -> int | None:
    """An n in lo..hi that fits, by bisection (None when not even lo does). The need grows with
    batch size and payload but for the byte-bound window's saw teeth (a window of floor(budget /
    batch) + 1 tasks holds up to one batch more than the budget), so the answer always fits and
    is the largest that does but for at most one tooth."""
    if hi < lo or not fits(lo):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def _what_fits(spec: WorkloadSpec, strategy: Strategy, available: int) -> str:
    """The settings under which `strategy` would fit `available`: a smaller batch size, a
    smaller payload_bytes (each the largest that fits, `_largest`), or leaving it out."""
    payload = spec.items.payload_bytes
    options = []
    if strategy.batch_size is not None:
        size = _largest(lambda n: _strategy_need(spec, Strategy(strategy.kind, n), payload)[0] <= available,
                        1, strategy.batch_size - 1)
        if size is not None:
            options.append(str(Strategy(strategy.kind, size)))
    smaller = _largest(lambda b: _strategy_need(spec, strategy, b)[0] <= available, 0, payload - 1)
    if smaller is not None:
        options.append(f"[items] payload_bytes = {smaller:,}" + (f" with {strategy}" if strategy.batch_size else ""))
    options.append(f"leave {strategy} out of [run] strategies")
    return "would fit: " + ", or ".join(options)


def check_memory(spec: WorkloadSpec, available: int | None = None) -> MemoryNeed:
    """Refuse (SpecError) a workload whose estimated peak exceeds the memory available now,
    naming the figure and a setting that fits."""
    import psutil

    need = memory_need(spec)
    available = psutil.virtual_memory().available if available is None else available
    if need.bytes > available:
        payload = spec.items.payload_bytes
        over = [s for s in strategies_to_run(spec) if _strategy_need(spec, s, payload)[0] > available]
        worst = next(s for s in over if str(s) == need.strategy)
        others = [str(s) for s in over if s != worst]
        also = f"; {', '.join(others)} also need more than that" if others else ""
        raise SpecError(f"{spec.source or spec.name}: this workload needs about {_gib(need.bytes)} of memory "
                        f"but the machine has {_gib(available)} available ({need.detail}); "
                        f"{_what_fits(spec, worst, available)}{also}")
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
        if strategy.kind in ADAPTIVE_KINDS or not items:  # sizes itself, or items counted once loaded
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
