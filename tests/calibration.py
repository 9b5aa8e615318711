"""Monte-Carlo calibration of harness.analysis.stats' ratio interval at the repeats the product uses.

No-change pairs (both sides the same lognormal noise) give the false-positive rate: how often
the interval excludes 1. Known-change pairs (B = A's distribution x true ratio) give the
coverage (how often the interval holds the true ratio) and the power (how often the change is
caught). The noise is lognormal with an IQR of 5 % and 20 % of the median, the range this
machine's repeats show. Vectorised through stats.interval_batch, the code path `ratio` uses.

`python tests/calibration.py` prints the table the README quotes; tests/test_stats_calibration.py
asserts on the same figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.analysis import stats

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


if __name__ == "__main__":
    print(render(table()))
