"""Fixtures and knobs of the benchmark suite (pytest-benchmark).

Knobs are environment variables, not pytest options: the plain `python -m pytest -q` from the
repository root does not load this file early enough to register options, and the suite must
run there too (once, quickly).

    HARNESS_BENCH_ROUNDS       measured rounds per benchmark (default 3: the quick pass that the
                               normal test command runs; the measuring run uses more, README)
    HARNESS_BENCH_SLOWDOWN_MS  the planted regression: this many ms of sleep in the flow process
                               on every Prefect task submit (test_planted_slowdown.py sets it)
    HARNESS_BENCH_DASK_ADDRESS run on this existing Dask scheduler (with the PREFECT_API_URL of
                               the environment) instead of the session's own runtime: how the
                               planted-slowdown test's child pytest reuses its parent's cluster

How a strategy is measured (all rounds of a Prefect strategy inside one flow run, each round
timing the mapping stage alone) is harness.api.benchmarking's, the same as the pytest plugin's
`harness_benchmark` (harness.api.pytest_plugin): this file only builds the synthetic stages.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from harness.api.benchmarking import Measured, one_flow_run
from harness.api.benchmarking import measure_strategy as _measure
from harness.policy.controller import BatchObservation, Controller
from harness.strategies import Stage
from harness.work.synthetic import Workload
from harness.workload.spec import WorkloadSpec
from harness.workload.vocabulary import Strategy

__all__ = ["Measured", "bench_rounds", "controller_s_per_decision", "measure_strategy", "one_flow_run"]

ROUNDS_ENV = "HARNESS_BENCH_ROUNDS"
SLOWDOWN_ENV = "HARNESS_BENCH_SLOWDOWN_MS"
DASK_ADDRESS_ENV = "HARNESS_BENCH_DASK_ADDRESS"

# Quick pass: 3 rounds give a median that one disturbed round cannot move, at ~15 s for the
# whole suite here; the measuring run raises it (README).
DEFAULT_ROUNDS = 3


def bench_rounds(share: float = 1.0) -> int:
    """Rounds for one benchmark: HARNESS_BENCH_ROUNDS (default 3) times `share`, at least 1.

    `share` < 1 is for the expensive benchmarks (per_item), whose ratios are far from their
    thresholds and need fewer rounds to be told apart.
    """
    raw = os.environ.get(ROUNDS_ENV, "")
    try:
        rounds = int(raw) if raw else DEFAULT_ROUNDS
    except ValueError:
        raise pytest.UsageError(f"{ROUNDS_ENV}: found {raw!r}, expected a whole number of rounds >= 1") from None
    if rounds < 1:
        raise pytest.UsageError(f"{ROUNDS_ENV}: found {rounds}, expected a whole number of rounds >= 1")
    return max(1, round(rounds * share))


def measure_strategy(
    benchmark: Any | None,
    runtime: Any,
    spec: WorkloadSpec,
    strategy: Strategy,
    rounds: int,
) -> Measured:
    """Benchmark one strategy on `spec`: `rounds` rounds, each a fresh Stage over the same items;
    Prefect strategies inside one flow run, reference ones bare (harness.api.benchmarking).
    Without a `benchmark` (a guard measuring what no benchmark of the session did) the same
    rounds run in a plain loop and pytest-benchmark keeps no statistics of them."""
    def fresh_stage() -> Stage:
        return Stage(Workload(spec), None, spec.cost.kind, spec.faults.retries, runtime.worker_threads, runtime.client)

    record = _measure(benchmark, runtime, fresh_stage, strategy, rounds)
    for result in record.results:
        assert result.tally.items == len(Workload(spec)), f"{strategy}: items lost"
    return record


# ----------------------------------------------------------------------------- the controller

# observe+decide pairs per round: ~10-50 ms of controller work, long enough for the timer and
# short enough to repeat. The simulated run below never ends (remaining stays large).
DECISIONS = 2000
THREADS = 4
# A plausible steady state: 20 ms of overhead per task, 0.2 ms per item (README's large.toml),
# so the controller does all its work: growth, hysteresis, the queue replay, the drift check.
OVERHEAD_S = 0.020
ITEM_S = 0.0002


def drive_controller(controller: Controller, decisions: int) -> float:
    """`decisions` observe+decide pairs against a simulated cluster; returns seconds spent in
    the controller alone (the simulation's own arithmetic is not timed)."""
    spent = 0.0
    clock = 0.0
    in_flight: list[tuple[float, int]] = []  # (submitted, batch size)
    remaining = 10**9
    for _ in range(decisions):
        t0 = time.perf_counter()
        decision = controller.decide(remaining, len(in_flight))
        controller.submitted(decision)  # the contract: every decide is answered
        spent += time.perf_counter() - t0
        in_flight.append((clock, decision.batch_size))
        remaining -= decision.batch_size
        if len(in_flight) < decision.window:
            continue
        started, size = in_flight.pop(0)
        compute = size * ITEM_S
        clock = max(clock, started) + (OVERHEAD_S + compute) / THREADS
        obs = BatchObservation(size, size, started, clock, compute, size, 0)
        t0 = time.perf_counter()
        controller.observe(obs)
        spent += time.perf_counter() - t0
    return spent


def controller_s_per_decision(rounds: int) -> float:
    """Seconds per observe+decide: the median round of `rounds` rounds of DECISIONS, each on a
    fresh controller (as test_bench_pure.py's benchmark takes it)."""
    spent = sorted(drive_controller(Controller(10**9, THREADS), DECISIONS) for _ in range(rounds))
    return spent[len(spent) // 2] / DECISIONS
