"""Benchmarks of the pure parts: the controller's decision cost and the item generator.

No Prefect, no Dask: these run in milliseconds and measure the flow process's own share of
every task (a decision per submit) and of every item (generating it).
"""

from __future__ import annotations

import time
from typing import Any

from benchlib import DECISIONS, THREADS, bench_rounds, drive_controller

from harness.policy.controller import Controller
from harness.work.synthetic import Workload

GENERATED_ITEMS = 50_000  # ~12 chunks of 4,096: generation, not the first chunk's set-up


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
