"""The warm-up's measure of the adaptive probe: how long one task takes to come back into a
flow that waits for it, and into one that runs items meanwhile.

The adaptive strategy opens with one task (the probe) and, while a thread idles, may run items
in the flow itself (`Controller.fill`). With a LocalCluster the Dask scheduler lives in the
flow process, and Prefect's and Dask's client threads do too: while the flow runs CPU-bound
items it holds the GIL they need, and every step of the probe's round trip waits for it.
Measured on workloads/bench/tiny.toml: 24 ms into a waiting flow, ~70 ms into a filling one;
sleeping items release the GIL and leave it as it is. The controller weighs the two figures
before its first task: whether filling pays, and whether the rest of a small workload is
cheaper run in the flow than sent out (docs/controller.md, "Windows, the start and tiny work").
"""

from __future__ import annotations

import queue
import statistics
import time
from typing import Any

from harness.policy.controller import BatchObservation, Controller
from harness.strategies.base import Stage
from harness.strategies.tasks import Opaque, process_batch
from harness.work.kernels import run_batch_folded
from harness.work.synthetic import ItemCursor


def probe_latencies(stage: Stage, rounds: int) -> tuple[float | None, float | None]:
    """(waiting, filling): the median round trip, submit to seen minus compute, of `rounds`
    single-item tasks into a flow that waits and of `rounds` into one that fills (inside a
    flow; alternated, so that drift in the machine's state hits both alike). None for a
    figure none of whose probes succeeded. The flow fills with the stage's items, over again
    when they run out, in the slices the controller's `fill` hands out."""
    ctl = Controller(stage.items, stage.worker_threads)
    items = _Cycle(stage)
    seen: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for filling in (False, True):
            latency = _probe(stage, items, ctl if filling else None)
            if latency is not None:
                seen[filling].append(latency)
    waiting, filling = (statistics.median(seen[f]) if seen[f] else None for f in (False, True))
    return waiting, filling


def _probe(stage: Stage, items: _Cycle, ctl: Controller | None) -> float | None:
    done: queue.SimpleQueue[Any] = queue.SimpleQueue()
    started = time.perf_counter()
    future = process_batch.submit(Opaque(list(items.take(1))), stage.cost_kind, stage.retries)
    future.add_done_callback(done.put)
    while ctl is not None and done.empty():
        fill = ctl.fill(stage.items, 1)
        if fill is None:  # items too costly to fill with, or one thread: the flow waits
            break
        t0 = time.perf_counter()
        result = run_batch_folded(items.take(fill.batch_size), stage.cost_kind, stage.retries)
        ok, failed = result.tally.items - result.tally.items_failed, result.tally.items_failed
        ctl.observe(BatchObservation(fill.batch_size, result.tally.items, t0, time.perf_counter(),
                                     result.compute_s, ok, failed, "inline"))
    done.get()
    seen = time.perf_counter()
    try:
        compute = future.result().value.compute_s
    except Exception:  # noqa: BLE001 - a failed probe measures nothing; the warm-up goes on
        return None
    return max(0.0, seen - started - compute)


class _Cycle:
    """The stage's items, from the start again once they run out."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.cursor: ItemCursor = stage.cursor()

    def take(self, n: int) -> list[Any]:
        out: list[Any] = []
        while len(out) < n:
            if not self.cursor.remaining:
                self.cursor = self.stage.cursor()
            out.extend(self.cursor.take(n - len(out)))
        return out
