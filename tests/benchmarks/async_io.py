"""The async benchmark: an `async def` that awaits 20 ms (simulated I/O, no network) over 10,000
items on 2 Dask workers, three ways in the same kind of Prefect flow:

- `adaptive_map(fetch, items)`: batches sized by the controller, each batch's items concurrent
  inside its task at the limit harness.policy.concurrency chooses; cold (`memory=None`: the
  probe and the ramp every call) and warm (a memory folder of the benchmark's own, filled by
  one unmeasured call first: what a daily flow's second run does);
- the per-item `.map` of an async Prefect task (one task run per item), on a sample of the items
  (`--per-item-sample`), its time projected to all of them (per-item cost is flat);
- a hand-written `asyncio.gather` under an `asyncio.Semaphore` inside one Prefect task, at each
  of a few fixed limits (`--limits`); the best of them is the reference.

Prints the median time of each over `--repeats` rounds (the three interleaved in each round)
and the ratios the issue asks for: per-item / adaptive_map (target: at least 50x) and
adaptive_map / the best gather (target: at most 1.5x). Not part of the test suite, not timed
in tests: run it by hand on an idle machine.

    python tests/benchmarks/async_io.py                          # the issue's figure
    python tests/benchmarks/async_io.py --items 200 --per-item-sample 40 --repeats 1 --limits 50,200  # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NONE

from harness import adaptive_map, local_runtime

WAIT_S = 0.020  # each item's simulated I/O (--wait-ms sets it before anything is pickled)


async def fetch(x: int) -> int:
    """One simulated HTTP call: wait, then answer."""
    await asyncio.sleep(WAIT_S)
    return x


@task(name="fetch", cache_policy=NONE)
async def fetch_task(x: int) -> int:
    return await fetch(x)


@task(name="gathered", cache_policy=NONE)
def gathered(items: list[int], limit: int) -> list[int]:
    """What a user writes by hand: every item under one semaphore, gathered on one loop."""

    async def main() -> list[int]:
        slots = asyncio.Semaphore(limit)

        async def one(x: int) -> int:
            async with slots:
                return await fetch(x)

        return await asyncio.gather(*(one(x) for x in items))

    return asyncio.run(main())


@flow(name="async-io-adaptive-map")
def via_adaptive_map(items: list[int], memory: str | None) -> tuple[float, bool, int]:
    trace: list[dict[str, Any]] = []
    started = time.perf_counter()
    results = adaptive_map(fetch, items, trace=trace, memory=None if memory is None else Path(memory))
    wall = time.perf_counter() - started
    return wall, results == items, max(row["concurrency"] for row in trace)


@flow(name="async-io-per-item-map")
def via_per_item_map(items: list[int]) -> tuple[float, bool]:
    started = time.perf_counter()
    results = [future.result() for future in fetch_task.map(items)]
    return time.perf_counter() - started, results == items


@flow(name="async-io-gather")
def via_gather(items: list[int], limit: int) -> tuple[float, bool]:
    started = time.perf_counter()
    results = gathered.submit(items, limit).result()
    return time.perf_counter() - started, results == items


def main() -> None:
    global WAIT_S
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--wait-ms", type=float, default=20.0)
    parser.add_argument("--per-item-sample", type=int, default=500, help="items the per-item .map runs (projected)")
    parser.add_argument("--limits", default="100,1000,10000", help="the gather's fixed limits, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    WAIT_S = args.wait_ms / 1000
    items = list(range(args.items))
    sample = items[: min(args.per_item_sample, args.items)]
    limits = [int(n) for n in args.limits.split(",")]

    times: dict[str, list[float]] = {"adaptive_map (cold)": [], "adaptive_map (warm)": [],
                                     "per_item .map (projected)": []}
    times.update({f"gather, limit {n}": [] for n in limits})
    peak_limits = []
    memory = tempfile.mkdtemp(prefix="async-io-memory-")
    with local_runtime(workers=args.workers, threads_per_worker=1) as rt:
        runner = rt.task_runner
        via_adaptive_map.with_options(task_runner=runner)(items, memory)  # fills the warm runs' memory
        for round_ in range(1, args.repeats + 1):
            for name, folder in (("adaptive_map (cold)", None), ("adaptive_map (warm)", memory)):
                wall, same, peak = via_adaptive_map.with_options(task_runner=runner)(items, folder)
                assert same, "adaptive_map's results differ from the items"
                times[name].append(wall)
                peak_limits.append(peak)
            wall, same = via_per_item_map.with_options(task_runner=runner)(sample)
            assert same, "the per-item .map's results differ from the items"
            times["per_item .map (projected)"].append(wall * len(items) / len(sample))
            for n in limits:
                wall, same = via_gather.with_options(task_runner=runner)(items, n)
                assert same, f"the gather's results (limit {n}) differ from the items"
                times[f"gather, limit {n}"].append(wall)
            print(f"round {round_}: " + ", ".join(f"{name} {t[-1]:.3f} s" for name, t in times.items()), flush=True)

    medians = {name: statistics.median(t) for name, t in times.items()}
    best_gather = min((name for name in medians if name.startswith("gather")), key=medians.__getitem__)
    print(f"\n{args.items:,} items awaiting {args.wait_ms:g} ms, {args.workers} workers, "
          f"{args.repeats} rounds (medians; per-item .map ran {len(sample)} items, projected):")
    for name, median in medians.items():
        print(f"  {name:28} {median:10.3f} s")
    print(f"  adaptive_map's largest concurrency limit: {max(peak_limits)}")
    for name in ("adaptive_map (cold)", "adaptive_map (warm)"):
        adaptive = medians[name]
        print(f"{name}: per-item .map / it {medians['per_item .map (projected)'] / adaptive:.1f}x (target >= 50x); "
              f"it / best gather ({best_gather}) {adaptive / medians[best_gather]:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
