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

How a Prefect strategy is measured: all rounds of one benchmark run inside ONE flow run, and
each round times the mapping stage alone (what runs.csv calls wall_s). A flow run costs a fixed
~0.1-0.3 s of set-up plus a join of Prefect's heartbeat thread, which sleeps in 1 s steps
(prefect/flow_engine.py `_send_heartbeats`): 0-1 s of uniform noise at every flow exit,
measured 0.75-0.84 s here, more than a whole small stage. Timing whole flow calls would bury a
15 % regression of the stage in that noise.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from harness.workload.spec import WorkloadSpec

from harness.workload.vocabulary import Strategy
from harness.policy.controller import BatchObservation, Controller
from harness.strategies import Stage, StageResult, execute
from harness.work.synthetic import Workload

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


@contextlib.contextmanager
def one_flow_run(runtime: Any, flow_name: str) -> Iterator[Callable[[Callable[[], Any]], Any]]:
    """`with one_flow_run(rt, name) as inside: inside(fn)` runs `fn` inside one real flow run.

    It reuses the harness's own map flow (harness.patterns.flat_map), whose function the Dask
    workers import by reference (a flow defined in a test module would not unpickle there), and
    hands it `fn` as the body of that one call (harness.patterns.stages.call_flow).
    """
    from harness.patterns import flat_map
    from harness.patterns.stages import call_flow

    def inside(fn: Callable[[], Any]) -> Any:
        with runtime.submitting():
            return call_flow(flat_map.mapped_stage, lambda _: fn(), None, runtime, flow_name)

    yield inside



# ----------------------------------------------------------------------------- measuring


@dataclass
class Measured:
    """Every round of one strategy: the StageResults, however pytest-benchmark was configured
    (with --benchmark-disable it runs the target once and keeps no stats; these remain)."""

    strategy: str
    results: list[StageResult] = field(default_factory=list)
    worker_threads: int = 1

    @property
    def wall_s(self) -> float:
        return statistics.median(r.wall_s for r in self.results)

    @property
    def tasks(self) -> int:
        return round(statistics.median(r.tasks for r in self.results))

    @property
    def items(self) -> int:
        return self.results[0].tally.items

    @property
    def overhead_per_task_s(self) -> float:
        """Median over rounds of (wall x threads - compute) / tasks, as runs.csv defines it."""
        return statistics.median(
            max(0.0, r.wall_s * self.worker_threads - r.tally.compute_s) / max(r.tasks, 1) for r in self.results
        )

    def extra_info(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "rounds": len(self.results),
            "items": self.items,
            "tasks": self.tasks,
            "stage_wall_s_median": round(self.wall_s, 4),
            "items_per_s": round(self.items / self.wall_s, 1),
            "overhead_per_task_ms": round(self.overhead_per_task_s * 1000, 2),
            "compute_s_median": round(statistics.median(r.tally.compute_s for r in self.results), 4),
        }


def measure_strategy(
    benchmark: Any | None,
    runtime: Any,
    spec: WorkloadSpec,
    strategy: Strategy,
    rounds: int,
) -> Measured:
    """Benchmark one strategy on `spec`: `rounds` rounds, each a fresh Stage over the same items;
    Prefect strategies inside one flow run (module docstring), reference ones bare. Without a
    `benchmark` (a guard measuring what no benchmark of the session did) the same rounds run
    in a plain loop and pytest-benchmark keeps no statistics of them."""
    record = Measured(str(strategy), worker_threads=runtime.worker_threads)

    def fresh_stage() -> tuple[tuple[Strategy, Stage], dict[str, Any]]:
        stage = Stage(Workload(spec), None, spec.cost.kind, spec.faults.retries, runtime.worker_threads, runtime.client)
        return (strategy, stage), {}

    def one_round(name: Strategy, stage: Stage) -> StageResult:
        result = execute(name, stage)
        record.results.append(result)
        return result

    def all_rounds() -> None:
        if benchmark is None:
            for _ in range(rounds):
                args, _ = fresh_stage()
                one_round(*args)
            return
        benchmark.pedantic(one_round, setup=fresh_stage, rounds=rounds, iterations=1, warmup_rounds=0)

    if strategy.needs_flow:
        with one_flow_run(runtime, f"bench-{strategy.kind}") as inside:
            inside(all_rounds)
    else:
        all_rounds()
    for result in record.results:
        assert result.tally.items == len(Workload(spec)), f"{strategy}: items lost"
    if benchmark is not None:
        benchmark.extra_info.update(record.extra_info())
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
