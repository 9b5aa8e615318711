"""Monte-Carlo calibration of harness.analysis.stats' ratio interval at the repeats the product uses,
and of the interval where `repeats = "auto"` stops (harness.analysis.settle).

No-change pairs (both sides the same lognormal noise) give the false-positive rate: how often
the interval excludes 1. Known-change pairs (B = A's distribution x true ratio) give the
coverage (how often the interval holds the true ratio) and the power (how often the change is
caught). The noise is lognormal with an IQR of 5 % and 20 % of the median, the range this
machine's repeats show. Vectorised through stats.interval_batch, the code path `ratio` uses.

A run that stops when its intervals are narrow enough looks at its data before it stops, which
can cost a fixed-n interval its coverage (stopping when the noise happens to look small). The
second table runs settle's own rule on simulated rounds (settle.status on each ratio, then
settle.decide_on with the round floor and the budget) and measures the coverage of the
intervals the run stops with.

`python tests/calibration.py` prints both tables (README, "How sure is a ratio" and "Repeats");
tests/test_stats_calibration.py asserts on the same figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.analysis import settle, stats
from harness.workload.spec import DEFAULT_BUDGET_S

# An IQR of q of the median is a lognormal sigma of log((1 + q/2) / (1 - q/2)) / (2 x 0.6745).
IQR_FRACTIONS = (0.05, 0.20)
REPEATS = (3, 4, 5, 10)  # 3: the old default; 4: the fewest a verdict needs; 5, 10: auto runs
TRUE_CHANGE = 1.30  # the planted slow-down the issue asks to catch
TRIALS = 4_000
SEED = 20261201


def sigma_for_iqr(q: float) -> float:
    return math.log((1 + q / 2) / (1 - q / 2)) / (2 * 0.6745)


@dataclass(frozen=True)
class Cell:
    n: int
    iqr: float
    verdicts: bool  # False: n is too few, the ratio says so and claims nothing
    false_positive_rate: float
    coverage: float
    power: float  # at TRUE_CHANGE

    def mc_slack(self, p: float = stats.ALPHA) -> float:
        """Three Monte-Carlo standard errors of a rate near p over TRIALS trials."""
        return 3 * math.sqrt(p * (1 - p) / TRIALS)


def calibrate(n: int, iqr: float, trials: int = TRIALS, seed: int = SEED) -> Cell:
    rng = np.random.default_rng([seed, n, int(iqr * 1000)])
    sigma = sigma_for_iqr(iqr)
    a, b = rng.normal(0, sigma, (2, trials, n))
    low, high = stats.interval_batch(a, b)
    if np.isnan(low).all():
        return Cell(n, iqr, False, 0.0, math.nan, 0.0)
    fpr = float(np.mean((low > 1) | (high < 1)))
    changed_low, changed_high = stats.interval_batch(b + math.log(TRUE_CHANGE), rng.normal(0, sigma, (trials, n)))
    coverage = float(np.mean((changed_low <= TRUE_CHANGE) & (TRUE_CHANGE <= changed_high)))
    power = float(np.mean(changed_low > 1))
    return Cell(n, iqr, True, fpr, coverage, power)


def table() -> list[Cell]:
    return [calibrate(n, q) for n in REPEATS for q in IQR_FRACTIONS]


def render(cells: list[Cell]) -> str:
    lines = [f"nominal: false positives <= {stats.ALPHA:.0%}, coverage >= {stats.CONFIDENCE:.0%}; "
             f"{TRIALS:,} trials per cell, lognormal noise; power at a {TRUE_CHANGE - 1:.0%} change",
             "| repeats per side | IQR | false-positive rate | coverage | power |",
             "|---:|---:|---:|---:|---:|"]
    for c in cells:
        if not c.verdicts:
            lines.append(f"| {c.n} | {c.iqr:.0%} | 0 (too few repeats for a verdict) | no interval claimed | 0 |")
        else:
            lines.append(f"| {c.n} | {c.iqr:.0%} | {c.false_positive_rate:.2%} | {c.coverage:.2%} | {c.power:.0%} |")
    return "\n".join(lines)


# --- repeats = "auto": the intervals a run stops with --------------------------------------

# Log standard deviations of one strategy's repeats seen on this machine: quiet (0.04), typical
# (0.08: docs/examples) and a noisy run (0.15).
AUTO_SIGMAS = (0.04, 0.08, 0.15)
# The simulated run's strategies and their true median walls: adaptive as fast as the best
# static, a second static 15 % slower (so "the best static" is picked from the samples, as the
# report picks it) and per_item 4x slower (decisive, as per_item usually is). Equal walls for
# adaptive and its best static are the hardest case: the decisive exit never helps.
AUTO_TRUE_WALL = {"per_item": 4.0, "static:16": 1.15, "static:64": 1.0, "adaptive": 1.0}
AUTO_STATICS = ("static:16", "static:64")
# Rounds of 20 s in the default budget: at most 29 rounds fit (the next round is estimated at
# the slowest + 10 %), so at 0.15 the budget, not the target, ends many runs.
AUTO_ROUND_S = 20.0
AUTO_TRIALS = 4_000


@dataclass(frozen=True)
class AutoCell:
    sigma: float
    trials: int
    rounds_median: float
    rounds_max: int
    by_budget: float  # share of runs the budget stopped before every ratio settled
    coverage_best_static: float  # adaptive / the best static's interval holds the true ratio
    coverage_per_item: float

    def mc_slack(self, p: float = stats.ALPHA) -> float:
        """Three Monte-Carlo standard errors of a rate near p over this cell's trials."""
        return 3 * math.sqrt(p * (1 - p) / self.trials)


def simulate_auto(sigma: float, trials: int = AUTO_TRIALS, seed: int = SEED) -> AutoCell:
    """Runs `trials` simulated auto runs through settle's rule; each stops where decide_on says."""
    rng = np.random.default_rng([seed, int(sigma * 1000)])
    walls = {s: w * np.exp(rng.normal(0, sigma, (trials, settle.MAX_ROUNDS))) for s, w in AUTO_TRUE_WALL.items()}
    statics = np.stack([walls[s] for s in AUTO_STATICS])  # (statics, trials, rounds)
    stopped_at = np.zeros(trials, dtype=int)
    covered = {"best static": np.zeros(trials, dtype=bool), "per_item": np.zeros(trials, dtype=bool)}
    by_budget = np.zeros(trials, dtype=bool)
    active = np.arange(trials)
    for n in range(1, settle.MAX_ROUNDS + 1):
        a = walls["adaptive"][active, :n]
        best = np.argmin(np.median(statics[:, active, :n], axis=2), axis=0)  # per trial, by median
        references = {"best static": (statics[best, active, :n], AUTO_TRUE_WALL["adaptive"] / np.array(
                          [AUTO_TRUE_WALL[AUTO_STATICS[i]] for i in best])),
                      "per_item": (walls["per_item"][active, :n],
                                   np.full(len(active), AUTO_TRUE_WALL["adaptive"] / AUTO_TRUE_WALL["per_item"]))}
        bounds = {role: stats.interval_batch(np.log(a), np.log(b)) for role, (b, _) in references.items()}
        estimates = {role: np.median(a, axis=1) / np.median(b, axis=1) for role, (b, _) in references.items()}
        going = []
        for j, trial in enumerate(active):
            statuses = tuple(
                settle.status(role, role, stats.Ratio("adaptive", role, float(estimates[role][j]),
                                                      float(bounds[role][0][j]), float(bounds[role][1][j])), n)
                for role in references)
            decision = settle.decide_on(statuses, len(AUTO_TRUE_WALL), [AUTO_ROUND_S] * n, n * AUTO_ROUND_S,
                                        DEFAULT_BUDGET_S)
            if decision.go_on:
                going.append(j)
                continue
            stopped_at[trial] = n
            by_budget[trial] = not all(st.settled for st in statuses)
            for role, (_, true) in references.items():
                covered[role][trial] = bounds[role][0][j] <= true[j] <= bounds[role][1][j]
        active = active[going]
        if not len(active):
            break
    return AutoCell(sigma, trials, float(np.median(stopped_at)), int(stopped_at.max()), float(by_budget.mean()),
                    float(covered["best static"].mean()), float(covered["per_item"].mean()))


def auto_table() -> list[AutoCell]:
    return [simulate_auto(sigma) for sigma in AUTO_SIGMAS]


def render_auto(cells: list[AutoCell]) -> str:
    lines = [f"repeats = \"auto\": coverage of the intervals a run stops with (nominal {stats.CONFIDENCE:.0%}); "
             f"{AUTO_TRIALS:,} runs per row: adaptive, static:64 as fast, static:16 15% slower, per_item 4x "
             f"slower; rounds of {AUTO_ROUND_S:.0f} s in a {DEFAULT_BUDGET_S:.0f} s budget",
             "| log-sd of repeats | rounds at the stop (median, max) | stopped by the budget | "
             "coverage, adaptive / best static | coverage, adaptive / per_item |",
             "|---:|---:|---:|---:|---:|"]
    for c in cells:
        lines.append(f"| {c.sigma:.2f} | {c.rounds_median:.0f}, {c.rounds_max} | {c.by_budget:.1%} | "
                     f"{c.coverage_best_static:.2%} | {c.coverage_per_item:.2%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(table()))
    print()
    print(render_auto(auto_table()))
