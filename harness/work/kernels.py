"""The cost kernels: what a task does to its items, timed, with their retries.

Everything here runs on Dask workers (and in the flow process, for items the adaptive strategy
runs inline); batch functions travel by pickling, so this module imports neither Prefect nor
Dask, prints nothing and keeps no per-item state.

Kernels
    cpu    a pure-Python integer LCG loop (holds the GIL); iterations = cost_ms * calibrate_cpu().
    sleep  time.sleep (GIL released), shortened by the calibrated mean overshoot of time.sleep
           on this process (calibrate_sleep()) so the mean stays honest for costs above ~0.2 ms.
    compute_s is measured with time.perf_counter around the work only.
An item's injected fault (harness.work.faults) is raised before its work; `run_batch` retries
transient faults up to the workload's retries and never retries permanent ones.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from harness.errors import SpecError
from harness.work.faults import PermanentFault, TransientFault
from harness.work.outcomes import BatchResult, FoldedBatch, ItemOutcome, Tally
from harness.workload.vocabulary import COST_KINDS

if TYPE_CHECKING:
    from harness.work.synthetic import Item

# CPU calibration: rounds of a fixed loop (~1-3 ms at 50-130 ns per iteration) until the budget is
# spent, each timed in the thread's CPU time, and the median round taken. Wall time counted the
# time the process waited for a core: under load (2 cores, load average 7) all the rounds of a
# calibration could be preempted, and the rate came out 2-4x too low for the process's life.
# CPU time leaves only the speed the loop really runs at, whose typical value is the median.
# The budget (~40 ms of wall time, at least 5 rounds) is paid once per process.
_CPU_CALIBRATION_ITERATIONS = 20_000
_CPU_CALIBRATION_MIN_ROUNDS = 5
_CPU_CALIBRATION_MAX_ROUNDS = 60
_CPU_CALIBRATION_BUDGET_S = 0.04

# Sleep calibration: time.sleep overshoots by a roughly constant wake-up latency (measured 80-150
# µs by this calibration on 2-core machines: 50 µs timer slack plus scheduling). The median
# overshoot of short sleeps is subtracted from every sleep. Clamped so a disturbed calibration
# cannot turn sleeps into no-ops.
_SLEEP_CALIBRATION_S = 0.0001
_SLEEP_CALIBRATION_ROUNDS = 15
_SLEEP_OVERSHOOT_MAX_S = 0.0005

# The LCG of the cpu kernel (glibc's constants): integer multiply-add-mask, no allocation beyond
# small ints, so the cost per iteration is steady.
_LCG_MULTIPLIER = 1103515245
_LCG_INCREMENT = 12345
_LCG_MASK = 0x7FFFFFFF


class Kernel(Protocol):
    """What a task runs on its items when it is not a synthetic cost kind: a picklable object
    (by reference: it travels to every worker) that never raises for an item, it returns a
    failed outcome instead (harness.work.user_task.UserFunction is the one there is)."""

    def run_item(self, item: Any, attempt: int = 1) -> ItemOutcome: ...

    def run_batch(self, items: Sequence[Any], retries: int) -> BatchResult: ...


_cpu_rate: float | None = None  # LCG iterations per millisecond on this process
_sleep_overshoot_s: float | None = None  # median extra time time.sleep takes on this process
_calibration_lock = threading.Lock()


def _spin(iterations: int) -> int:
    x = 1
    for _ in range(iterations):
        x = (x * _LCG_MULTIPLIER + _LCG_INCREMENT) & _LCG_MASK
    return x


def calibrate_cpu(force: bool = False) -> float:
    """LCG loop iterations per millisecond in this process (measured once, then cached)."""
    global _cpu_rate
    with _calibration_lock:
        if _cpu_rate is None or force:
            _spin(_CPU_CALIBRATION_ITERATIONS // 10)  # warm up the interpreter's specialisation
            round_s = []
            began = time.perf_counter()
            for rounds in range(1, _CPU_CALIBRATION_MAX_ROUNDS + 1):
                t0 = time.thread_time()
                _spin(_CPU_CALIBRATION_ITERATIONS)
                round_s.append(time.thread_time() - t0)
                spent = time.perf_counter() - began
                if rounds >= _CPU_CALIBRATION_MIN_ROUNDS and spent >= _CPU_CALIBRATION_BUDGET_S:
                    break
            _cpu_rate = _CPU_CALIBRATION_ITERATIONS / (max(statistics.median(round_s), 1e-9) * 1000.0)
        return _cpu_rate


def calibrate_sleep(force: bool = False) -> float:
    """Median overshoot of time.sleep in seconds in this process (measured once, then cached)."""
    global _sleep_overshoot_s
    with _calibration_lock:
        if _sleep_overshoot_s is None or force:
            overshoots = []
            for _ in range(_SLEEP_CALIBRATION_ROUNDS):
                t0 = time.perf_counter()
                time.sleep(_SLEEP_CALIBRATION_S)
                overshoots.append(time.perf_counter() - t0 - _SLEEP_CALIBRATION_S)
            _sleep_overshoot_s = min(max(statistics.median(overshoots), 0.0), _SLEEP_OVERSHOOT_MAX_S)
        return _sleep_overshoot_s


def run_item(item: Item, cost_kind: str | Kernel, attempt: int = 1) -> ItemOutcome:
    """Run one attempt on an item: raise its injected fault, or do its work and time it.

    `cost_kind` is what the task runs on its items: a synthetic cost kind ("cpu", "sleep"), or
    a `Kernel` such as a user's function (harness.work.user_task), which handles its own retries."""
    if not isinstance(cost_kind, str):
        return cost_kind.run_item(item, attempt)
    if item.permanent:
        raise PermanentFault(item.index, attempt)
    if attempt <= item.transient_failures:
        raise TransientFault(item.index, attempt)
    if cost_kind == "cpu":
        iterations = round(item.cost_ms * (_cpu_rate or calibrate_cpu()))
        t0 = time.perf_counter()
        _spin(iterations)
        compute_s = time.perf_counter() - t0
    elif cost_kind == "sleep":
        overshoot_s = calibrate_sleep() if _sleep_overshoot_s is None else _sleep_overshoot_s
        seconds = max(item.cost_ms / 1000.0 - overshoot_s, 0.0)
        t0 = time.perf_counter()
        if item.cost_ms > 0:
            time.sleep(seconds)
        compute_s = time.perf_counter() - t0
    else:
        raise SpecError(f"cost kind must be one of {', '.join(COST_KINDS)}, got {cost_kind!r}")
    return ItemOutcome(item.index, True, compute_s, attempt, item.payload[::-1], "")


def run_batch(items: Sequence[Item], cost_kind: str | Kernel, retries: int) -> BatchResult:
    """Run every item, retrying transient faults up to `retries` times each (attempts
    1..retries+1) and never retrying permanent ones. Item faults become ok=False outcomes.

    Every strategy calls this (or run_item) with the stage's `cost_kind`: a synthetic cost
    kind, or a `Kernel` (a user's function), which then runs the batch."""
    if not isinstance(cost_kind, str):
        return cost_kind.run_batch(items, retries)
    started = time.time()
    outcomes = []
    compute_s = 0.0
    max_attempts = max(retries, 0) + 1
    for item in items:
        attempt = 1
        while True:
            try:
                outcome = run_item(item, cost_kind, attempt)
            except TransientFault:
                if attempt < max_attempts:
                    attempt += 1
                    continue
                outcome = ItemOutcome(item.index, False, 0.0, attempt, b"", "TransientFault")
            except PermanentFault:
                outcome = ItemOutcome(item.index, False, 0.0, attempt, b"", "PermanentFault")
            break
        compute_s += outcome.compute_s
        outcomes.append(outcome)
    return BatchResult(tuple(outcomes), compute_s, started, time.time())


def run_batch_folded(items: Sequence[Item], cost_kind: str | Kernel, retries: int) -> FoldedBatch:
    """`run_batch`, folded into a Tally where it ran (what batched tasks return)."""
    result = run_batch(items, cost_kind, retries)
    tally = Tally()
    tally.add_batch(result)
    return FoldedBatch(tally, result.compute_s, result.started, result.finished, result.concurrency, result.latency_s)
