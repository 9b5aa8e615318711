"""The issue-11 figure: `adaptive_map` inside a user's flow on `local_runtime()` against the same
flow's per-item `.map` over the same items. Prints both times, the ratio, and whether the
results are identical and in the same order. A benchmark: run it on an idle machine.

    .venv/bin/python examples/adaptive_flow/compare.py [--items 5000] [--workers 2]

Exit 0 when the results are identical and adaptive_map is at least 10x faster, else 1.
Each time is the mapping inside the flow (perf_counter around it), without the flow run's own
start and end, which are the same for both. Per-item `.map` costs one Prefect task per item
(tens of ms here), so the default item count keeps that side to a few minutes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NONE

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flow import score  # noqa: E402  (the example's function: the same work on both sides)

from harness import adaptive_map, local_runtime  # noqa: E402

# The threshold (issue 11, "Benchmarks, not timed tests").
MIN_SPEEDUP = 10.0

score_task = task(score, name="score", cache_policy=NONE)


@flow(name="compare-adaptive-map")
def with_adaptive_map(items: list[int]) -> tuple[list[int], float]:
    started = time.perf_counter()
    results = adaptive_map(score, items)
    return results, time.perf_counter() - started


@flow(name="compare-per-item-map")
def with_per_item_map(items: list[int]) -> tuple[list[int], float]:
    started = time.perf_counter()
    results = score_task.map(items).result()
    return results, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=5_000, help="items mapped (default 5000)")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes (default 2)")
    args = parser.parse_args(argv)
    items = list(range(args.items))
    expected = [score(n) for n in items]
    with local_runtime(workers=args.workers) as rt:
        adaptive, adaptive_s = with_adaptive_map.with_options(task_runner=rt.task_runner)(items)
        per_item, per_item_s = with_per_item_map.with_options(task_runner=rt.task_runner)(items)
    identical = adaptive == per_item == expected
    ratio = per_item_s / adaptive_s if adaptive_s > 0 else float("inf")
    print(f"items: {len(items)} on {rt.worker_threads} worker threads")
    print(f"adaptive_map:   {adaptive_s:8.2f} s")
    print(f"per-item .map:  {per_item_s:8.2f} s")
    print(f"speed-up:       {ratio:8.1f}x (needs >= {MIN_SPEEDUP:g}x)")
    print(f"results identical and in order: {identical}")
    return 0 if identical and ratio >= MIN_SPEEDUP else 1


if __name__ == "__main__":
    sys.exit(main())
