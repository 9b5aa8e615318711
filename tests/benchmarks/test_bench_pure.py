"""Benchmarks of the pure parts: the controller's decision cost and the item generator.

No Prefect, no Dask: these run in milliseconds and measure the flow process's own share of
every task (a decision per submit) and of every item (generating it).
"""

from __future__ import annotations

import time
from typing import Any

from benchlib import bench_rounds

from harness.policy.controller import BatchObservation, Controller
from harness.work.synthetic import Workload

# observe+decide pairs per round: ~10-50 ms of controller work, long enough for the timer and
# short enough to repeat. The simulated run below never ends (remaining stays large).
DECISIONS = 2000
THREADS = 4
# A plausible steady state: 20 ms of overhead per task, 0.2 ms per item (README's large.toml),
# so the controller does all its work: growth, hysteresis, the queue replay, the drift check.
OVERHEAD_S = 0.020
ITEM_S = 0.0002

GENERATED_ITEMS = 50_000  # ~12 chunks of 4,096: generation, not the first chunk's set-up


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


def test_controller_decision_cost(benchmark, measured):
    spent: list[float] = []

    def one_round(controller: Controller) -> None:
        spent.append(drive_controller(controller, DECISIONS))

    def fresh() -> tuple[tuple[Controller], dict[str, Any]]:
        return (Controller(10**9, THREADS),), {}

    benchmark.pedantic(one_round, setup=fresh, rounds=bench_rounds(), iterations=1)
    per_decision_us = sorted(spent)[len(spent) // 2] / DECISIONS * 1e6
    benchmark.extra_info.update({"decisions_per_round": DECISIONS, "us_per_observe_decide": round(per_decision_us, 2)})
    measured["controller_s_per_decision"] = per_decision_us / 1e6


def test_generator_throughput(benchmark, make_spec, measured):
    spec = make_spec(name="bench-generator", count=GENERATED_ITEMS, payload_bytes=256, distribution="lognormal",
                     spread=1.0, transient_rate=0.05, permanent_rate=0.01)
    rates: list[float] = []

    def one_round(workload: Workload) -> None:
        t0 = time.perf_counter()
        n = sum(1 for _ in workload.items())
        rates.append(n / (time.perf_counter() - t0))
        assert n == GENERATED_ITEMS

    def fresh() -> tuple[tuple[Workload], dict[str, Any]]:
        return (Workload(spec),), {}  # a new Workload: its chunk cache starts empty

    benchmark.pedantic(one_round, setup=fresh, rounds=bench_rounds(), iterations=1)
    items_per_s = sorted(rates)[len(rates) // 2]
    benchmark.extra_info.update({"items": GENERATED_ITEMS, "payload_bytes": 256, "items_per_s": round(items_per_s)})
    measured["generator_items_per_s"] = items_per_s
