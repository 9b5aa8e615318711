"""Warm against cold: `adaptive` (started from nothing) and `adaptive_warm` (started from what the
same run's cold stage learned) against the best static size, over workload files.

Runs `harness run FILE --strategies adaptive,adaptive_warm --repeats N` for each file (the file's
sweep adds its static sizes), then reads each run's runs.csv: the median wall per strategy, the
best static size's median, and the ratios adaptive / best static and adaptive_warm / best static,
with their geometric means over the files. Not part of the test suite, not timed in tests: run it
by hand on an idle machine, one file at a time (it does so).

    .venv/bin/python tests/benchmarks/warm_cold.py workloads/bench/*.toml --repeats 5 --out results/warm-cold
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd

HARNESS = [sys.executable, "-m", "harness"]


def run_one(workload: Path, repeats: int, out: Path) -> Path:
    """The run folder of one `harness run` (its last line of output)."""
    done = subprocess.run([*HARNESS, "run", str(workload), "--strategies", "adaptive,adaptive_warm",
                           "--repeats", str(repeats), "--out", str(out)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{workload}: harness run exited {done.returncode}:\n{done.stderr[-2000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def ratios(folder: Path) -> dict[str, object]:
    """Medians and ratios of one run folder (the main variant's rows)."""
    runs = pd.read_csv(folder / "runs.csv")
    if "variant" in runs and (runs["variant"] == "dynamic").any():
        runs = runs[runs["variant"] == "dynamic"]
    medians = runs.groupby("strategy")["wall_s"].median()
    statics = medians[[s for s in medians.index if s.startswith("static:")]]
    best = statics.idxmin()
    return {"workload": runs["workload"].iloc[0], "best static": best, "best_s": statics[best],
            "cold_s": medians["adaptive"], "warm_s": medians["adaptive_warm"],
            "cold / best": medians["adaptive"] / statics[best],
            "warm / best": medians["adaptive_warm"] / statics[best]}


def geomean(values: pd.Series) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workloads", nargs="+", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("results/warm-cold"))
    args = parser.parse_args()
    rows = []
    for workload in args.workloads:
        folder = run_one(workload, args.repeats, args.out)
        rows.append(ratios(folder))
        row = rows[-1]
        print(f"{row['workload']}: cold {row['cold / best']:.3f}, warm {row['warm / best']:.3f} "
              f"x best static ({row['best static']}, {row['best_s']:.3f} s)  [{folder}]", flush=True)
    table = pd.DataFrame(rows)
    print()
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    cold, warm = geomean(table["cold / best"]), geomean(table["warm / best"])
    print(f"\ngeometric mean over {len(table)} workloads: cold {cold:.3f}, warm {warm:.3f} "
          f"x best static; warm / cold {warm / cold:.3f}")


if __name__ == "__main__":
    main()
