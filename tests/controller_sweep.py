"""The simulator table the controller's constants cite: adaptive / best static batch size.

    PYTHONPATH=. .venv/bin/python tests/controller_sweep.py            # the table
    PYTHONPATH=. .venv/bin/python tests/controller_sweep.py --vary GROWTH_MAX=1.5,2,4
    PYTHONPATH=. .venv/bin/python tests/controller_sweep.py --seeds 8   # over 8 redraws each
    PYTHONPATH=. .venv/bin/python tests/controller_sweep.py --warm 4    # cold against warm

Every workload runs in tests/controller_sim.py's world (W threads, per-task overhead, serial
dispatch in the flow, noise, drift), under the adaptive controller and under every static
size of `oracle_sweep` (powers of 4 and the 1-4 whole-wave sizes); the ratio is adaptive
makespan / best static makespan, for one global FIFO queue and for Dask's two slots per
worker. The constants were chosen on TUNED only; HELD_OUT was never looked at while tuning
and is printed apart, as the honest figure. `--vary NAME=v1,v2,...` sets a module constant of
harness.policy.controller to each value in turn and prints the geometric means (how every "sim"
figure in docs/controller.md was made). `--warm K` runs each workload's day twice: the cold
controller on one draw, then on K later draws (the same work, tomorrow's noise) both the cold
controller and one started from what the first day learned (`learned=`), each against that
draw's best static size.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from controller_sim import (  # noqa: E402
    CPU_GIL_STALL,
    Draws,
    SimWorkload,
    best_static,
    constant_cost,
    draw,
    oracle_sweep,
    phased_cost,
    ratio_to_best_static,
    simulate,
    standard_workloads,
    warm_up_item_cost,
)

from harness.policy import controller as ctl  # noqa: E402
from harness.policy.controller import Controller  # noqa: E402

C, O = 0.0002, 0.020


def tuned() -> list[SimWorkload]:
    """The workloads the constants were tuned on."""
    u = dict(distribution="uniform", spread=0.5, noise=0.1)
    cpu = CPU_GIL_STALL  # the CPU-bound ones; the many-thread ones stand for sleeping threads
    return standard_workloads() + [
        SimWorkload("one_thread", 50_000, 1, constant_cost(C), O, 0.002, seed=11, gil_stall=cpu, **u),
        SimWorkload("w16_dispatch", 100_000, 16, constant_cost(C), O, 0.011, seed=12, **u),
        SimWorkload("w32_dispatch", 200_000, 32, constant_cost(C), O, 0.011, seed=13, **u),
        SimWorkload("two_million", 2_000_000, 2, constant_cost(0.00002), O, 0.002, seed=14, gil_stall=cpu, **u),
        SimWorkload("overhead_65ms", 50_000, 2, constant_cost(C), 0.065, 0.002, seed=15, gil_stall=cpu, **u),
        SimWorkload("items_5ms", 5_000, 2, constant_cost(0.005), O, 0.002, seed=16, gil_stall=cpu, **u),
        SimWorkload("small_fast", 2_000, 2, constant_cost(C), O, 0.002, seed=17, gil_stall=cpu, **u),
        SimWorkload("tiny_30x2ms", 30, 2, constant_cost(0.002), 0.035, 0.002, "lognormal", 0.5,
                    noise=0.1, seed=18, gil_stall=cpu),
        SimWorkload("transfer_fine", 200_000, 2, constant_cost(0.0001), 0.030, 0.002, "lognormal", 1.0,
                    noise=0.1, seed=19, transfer_s=0.00003, gil_stall=cpu),
    ]


def held_out() -> list[SimWorkload]:
    """Never used to choose a constant: the judge."""
    cpu = CPU_GIL_STALL
    return [
        SimWorkload("heavy_tail", 40_000, 2, constant_cost(C), 0.030, 0.002, "pareto", 1.2, noise=0.1, seed=21,
                    gil_stall=cpu),
        SimWorkload("sleep_16t", 4_000, 16, constant_cost(0.005), 0.030, 0.015, "lognormal", 0.5,
                    noise=0.1, seed=22),
        SimWorkload("tiny_60x0.1ms", 60, 2, constant_cost(0.0001), 0.040, 0.002, noise=0.1, seed=23, gil_stall=cpu),
        SimWorkload("sleep_32t_4ms", 30_000, 32, constant_cost(0.004), 0.030, 0.020, "lognormal", 0.3,
                    noise=0.1, seed=24),
        SimWorkload("transfer_large", 200_000, 2, constant_cost(0.0001), 0.040, 0.003, "lognormal", 1.0,
                    noise=0.1, seed=25, transfer_s=0.00008, gil_stall=cpu),
        SimWorkload("sleep_64t_coarse", 2_000, 64, constant_cost(0.2), 0.030, 0.011, "uniform", 0.3,
                    noise=0.1, seed=26),
        # workloads/bench/drift.toml: short enough that one wave is planned on the cheap first
        # third, then the middle third costs 20x (added after the real run found it hard).
        SimWorkload("drift_short", 12_000, 2, phased_cost(0.00005, [(1 / 3, 0.001), (2 / 3, 0.00005)], 12_000),
                    0.040, 0.002, "lognormal", 0.3, noise=0.1, seed=27, gil_stall=cpu),
    ]


def geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def table(workloads: list[SimWorkload], title: str, *, verbose: bool = True) -> dict[int, float]:
    """Print one row per workload (both queue models); return the geometric mean per model."""
    ratios: dict[int, list[float]] = {1: [], 2: []}
    if verbose:
        print(f"{title}\n  {'workload':17s} {'fifo':>6s} {'dask':>6s}   adaptive (tasks)   best static")
    for w in workloads:
        row = {}
        for slots in (1, 2):
            ratio, adaptive, oracle = ratio_to_best_static(w, worker_slots=slots)
            ratios[slots].append(ratio)
            row[slots] = (ratio, adaptive, oracle)
        if verbose:
            r1, a, o = row[1]
            print(f"  {w.name:17s} {r1:6.3f} {row[2][0]:6.3f}   {a.makespan_s:8.3f} s ({a.tasks:4d})"
                  f"   static:{o.batch_size} {o.makespan_s:.3f} s")
    means = {slots: geomean(rs) for slots, rs in ratios.items()}
    if verbose:
        floor = {slots: geomean([max(1.0, r) for r in rs]) for slots, rs in ratios.items()}
        print(f"  {'geometric mean':17s} {means[1]:6.3f} {means[2]:6.3f}   "
              f"worst {max(ratios[1] + ratios[2]):.3f}")
        print(f"  {'  ratios >= 1':17s} {floor[1]:6.3f} {floor[2]:6.3f}   "
              "(wins below the best static size counted as ties)\n")
    return means


def seeds_table(workloads: list[SimWorkload], title: str, seeds: int) -> None:
    """Per workload, the geometric mean and the worst of adaptive / best static over `seeds`
    redraws of its world (both queue models): one draw's luck shows as a row far from its mean."""
    print(f"{title}, {seeds} draws each\n  {'workload':17s} {'geomean':>8s} {'worst':>6s}")
    means = []
    for w in workloads:
        rs = [ratio_to_best_static(dataclasses.replace(w, seed=1000 + k), worker_slots=slots)[0]
              for k in range(seeds) for slots in (1, 2)]
        means.append(geomean(rs))
        print(f"  {w.name:17s} {means[-1]:8.3f} {max(rs):6.3f}")
    print(f"  {'geometric mean':17s} {geomean(means):8.3f}\n")


def warm_table(workloads: list[SimWorkload], title: str, days: int) -> None:
    """Per workload, the geometric means over `days` later draws and both queue models of cold /
    best static and warm / best static, the warm controller started from the first draw's memory."""
    print(f"{title}, {days} later draws each\n  {'workload':17s} {'cold':>6s} {'warm':>6s}  first warm size")
    colds, warms = [], []
    for w in workloads:
        cs, ws = [], []
        for slots in (1, 2):
            first = draw(w)
            learning = cold_controller(w, first)
            simulate(w, learning, first, worker_slots=slots)
            memory = learning.learned()
            for k in range(days):
                day = dataclasses.replace(w, seed=2000 + 97 * w.seed + k)
                d = draw(day)
                best = best_static(day, oracle_sweep(day), d, worker_slots=slots).makespan_s
                cs.append(simulate(day, cold_controller(day, d), d, worker_slots=slots).makespan_s / best)
                warm = Controller(day.items, day.workers, learned=memory) if memory else cold_controller(day, d)
                run = simulate(day, warm, d, worker_slots=slots)
                ws.append(run.makespan_s / best)
        colds.append(geomean(cs))
        warms.append(geomean(ws))
        first_size = run.decisions[0].decision.batch_size
        print(f"  {w.name:17s} {colds[-1]:6.3f} {warms[-1]:6.3f}  {first_size}"
              f"{'' if memory else ' (nothing learned: cold)'}")
    print(f"  {'geometric mean':17s} {geomean(colds):6.3f} {geomean(warms):6.3f}\n")


def cold_controller(w: SimWorkload, d: Draws) -> Controller:
    """What the `adaptive` strategy builds: the warm-up's priors, no memory."""
    return Controller(w.items, w.workers, prior_overhead_s=w.prior_overhead, prior_item_s=warm_up_item_cost(w, d),
                      prior_probe_s=w.prior_probe, prior_probe_filling_s=w.prior_probe_filling)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vary", metavar="NAME=V1,V2", help="a harness.policy.controller constant and values to try")
    parser.add_argument("--set", metavar="NAME=V", action="append", default=[],
                        help="set a harness.policy.controller constant for the whole table (repeatable)")
    parser.add_argument("--seeds", type=int, metavar="K",
                        help="redraw each workload K times; print each one's geometric mean and worst")
    parser.add_argument("--warm", type=int, metavar="K",
                        help="cold against warm (started from the first draw's memory) over K later draws")
    args = parser.parse_args(argv)
    for assignment in args.set:
        name, _, text = assignment.partition("=")
        setattr(ctl, name, type(getattr(ctl, name))(float(text)))
    if args.vary:
        name, _, values = args.vary.partition("=")
        original = getattr(ctl, name)
        for text in values.split(","):
            setattr(ctl, name, type(original)(float(text)) if isinstance(original, (int, float)) else text)
            t = table(tuned(), "", verbose=False)
            h = table(held_out(), "", verbose=False)
            print(f"{name}={text}: tuned {t[1]:.3f}/{t[2]:.3f}  held-out {h[1]:.3f}/{h[2]:.3f}  (fifo/dask)")
        setattr(ctl, name, original)
        return
    if args.warm:
        warm_table(tuned(), "TUNED", args.warm)
        warm_table(held_out(), "HELD OUT", args.warm)
        return
    if args.seeds:
        seeds_table(tuned(), "TUNED", args.seeds)
        seeds_table(held_out(), "HELD OUT", args.seeds)
        return
    table(tuned(), "TUNED (the constants were chosen on these)")
    table(held_out(), "HELD OUT (never used for tuning)")


if __name__ == "__main__":
    main()
