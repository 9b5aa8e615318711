"""A memory that is wrong: `adaptive_warm` started from what a run learned on items 10x cheaper
(or costlier) than the ones it now runs, against the best static size of the same run.

The function's cost per item is read from an environment variable at call time, so the
function's code, its items and so the workload's digest (the memory's key) stay the same while
the work changes: what a daily flow meets when the day's items cost more than yesterday's.
Run 1 (`adaptive`, one repeat) learns at `--learn-ms` per item and keeps it in the harness
cache; run 2 measures `adaptive_warm` (started from that memory, as there is no cold stage in
the run to start from) and the static sizes of `--sweep` at `--run-ms` per item. Prints the
median walls and adaptive_warm / best static (target: within 1.25x). Not part of the test
suite: run it by hand on an idle machine.

    .venv/bin/python tests/benchmarks/warm_off.py                     # 10x costlier than learned
    .venv/bin/python tests/benchmarks/warm_off.py --learn-ms 1 --run-ms 0.1   # 10x cheaper
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from harness import benchmark

COST_ENV = "HARNESS_WARM_OFF_ITEM_MS"  # read by the workers' processes, started after it is set


def work(x: int) -> int:
    """Busy CPU for the item cost the environment says (ms), then the item back."""
    end = time.perf_counter() + float(os.environ.get(COST_ENV, "0.1")) / 1000
    while time.perf_counter() < end:
        pass
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--learn-ms", type=float, default=0.1, help="item cost while the memory is learned")
    parser.add_argument("--run-ms", type=float, default=1.0, help="item cost in the measured run")
    parser.add_argument("--sweep", default="256,1024,4096", help="the static sizes, comma-separated")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="warm-off-")))
    args = parser.parse_args()
    items = list(range(args.items))

    os.environ[COST_ENV] = str(args.learn_ms)
    benchmark(work, items, strategies=["adaptive"], repeats=1, out=args.out, name="warm-off")
    os.environ[COST_ENV] = str(args.run_ms)
    result = benchmark(work, items, strategies=["adaptive_warm"], sweep=[int(n) for n in args.sweep.split(",")],
                       repeats=args.repeats, out=args.out, name="warm-off")

    medians = result.runs.groupby("strategy")["wall_s"].median()
    statics = medians[[s for s in medians.index if s.startswith("static:")]]
    best = statics.idxmin()
    print(f"{args.items:,} items at {args.run_ms:g} ms, memory learned at {args.learn_ms:g} ms, "
          f"{args.repeats} repeats (median walls):")
    for name, wall in medians.items():
        print(f"  {name:16} {wall:8.3f} s")
    print(f"adaptive_warm / best static ({best}): {medians['adaptive_warm'] / statics[best]:.3f} (target <= 1.25)")
    print(f"run folder: {result.folder}")


if __name__ == "__main__":
    main()
