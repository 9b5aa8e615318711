"""When a `repeats = "auto"` run has measured enough: pure policy over the rows measured so far.

A run settles when each of adaptive's ratios that the headline quotes (to the best static, the
oracle, and to per_item) has a verdict whose interval reaches no further than TARGET_HALF_WIDTH
from its estimate. Rounds (every strategy once, order rotated) are added until then, or until
the next round would not fit in the budget: its duration is estimated from the rounds so far,
so the budget is never knowingly overrun. run.py measures; this module only decides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from harness import stats

# ±5 %: finer than the 10 % compare threshold (DEFAULT_THRESHOLD in harness.compare), so a
# settled run can tell a 10 % regression from noise, and coarse enough that a quiet machine
# gets there in the 4-6 rounds a 10-minute budget holds on large.toml.
TARGET_HALF_WIDTH = 0.05
# Never more rounds than an integer `repeats` may ask for ([run] repeats <= 100).
MAX_ROUNDS = 100
# The next round is estimated as the slowest round so far plus this margin: rounds of the same
# work differ by the machine's noise (IQR up to ~20 % here), and the slowest already carries most.
ROUND_ESTIMATE_MARGIN = 0.10
# The ratios a run settles on: roles of harness.stats.adaptive_references.
SETTLING_ROLES = ("best static", "per_item")


@dataclass(frozen=True)
class RatioStatus:
    role: str
    strategy: str
    ratio: stats.Ratio
    settled: bool
    why: str

    def as_dict(self) -> dict[str, object]:
        return {"role": self.role, "strategy": self.strategy, "settled": self.settled, "why": self.why,
                "half_width": None if math.isnan(self.ratio.half_width) else round(self.ratio.half_width, 6)}


@dataclass(frozen=True)
class Decision:
    go_on: bool
    reason: str  # why the run stops (or "" while it goes on)
    statuses: tuple[RatioStatus, ...]
    next_round_s: float  # estimated duration of the next round (NaN before the first)
    more_within_budget: int  # rounds that would still fit after this one


def ratio_statuses(runs: pd.DataFrame) -> tuple[RatioStatus, ...]:
    """adaptive's settling ratios on the rows so far, each settled or not and why."""
    rows = stats.main_rows(runs)
    table = stats.summarize(rows)
    out = []
    for ref in stats.adaptive_references(rows, table):
        if ref.role not in SETTLING_ROLES:
            continue
        r = ref.ratio
        if not r.has_interval:
            why, settled = r.too_few, False
        elif r.half_width <= TARGET_HALF_WIDTH:
            why, settled = f"settled: interval ±{r.half_width:.1%} within ±{TARGET_HALF_WIDTH:.0%}", True
        else:
            why, settled = f"interval ±{r.half_width:.1%}, wider than ±{TARGET_HALF_WIDTH:.0%}", False
        out.append(RatioStatus(ref.role, ref.strategy, r, settled, why))
    return tuple(out)


def floor_rounds(strategies: int) -> int:
    """The fewest rounds before a run may stop as settled: enough for the report's verdicts and
    for `harness compare` to be able to flag a regression over this many strategies (Holm)."""
    return max(stats.repeats_needed(), stats.repeats_for_family(strategies))


def decide(runs: pd.DataFrame, round_s: list[float], elapsed_s: float, budget_s: float) -> Decision:
    """After the rounds in `runs` (durations `round_s`, `elapsed_s` spent in all): another round?"""
    statuses = ratio_statuses(runs) if len(runs) else ()
    estimate = max(round_s) * (1 + ROUND_ESTIMATE_MARGIN) if round_s else math.nan
    left = budget_s - elapsed_s
    fits = int(left // estimate) if estimate > 0 else 0
    done = len(round_s)
    floor = floor_rounds(runs["strategy"].nunique() if len(runs) else 1)
    if done >= floor and all(s.settled for s in statuses):
        reason = ("every ratio settled" if statuses
                  else f"no adaptive ratio to settle: stopped at the {floor} rounds the verdicts need")
        return Decision(False, reason, statuses, estimate, fits)
    if done >= MAX_ROUNDS:
        return Decision(False, f"reached {MAX_ROUNDS} rounds", statuses, estimate, fits)
    if done and fits < 1:
        return Decision(False, f"budget: the next round (~{estimate:.0f} s) would not fit in the "
                               f"{max(left, 0):.0f} s left of {budget_s:.0f} s", statuses, estimate, fits)
    return Decision(True, "", statuses, estimate, max(fits - 1, 0))
