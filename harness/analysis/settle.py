"""When a `repeats = "auto"` run has measured enough: pure policy over the rows measured so far.

A run settles when each of adaptive's ratios that the headline quotes (to the best static, the
oracle, and to per_item) has a verdict whose interval reaches no further than TARGET_HALF_WIDTH
from its estimate, or lies wholly beyond DECISIVE_FACTOR from 1. Rounds (every strategy once,
order rotated) are added until then, or until the next round would not fit in the budget: its
duration is estimated from the rounds so far, so the budget is never knowingly overrun once the
run has its floor, the rounds its verdicts and `harness compare` need. Before the floor the floor
wins: a run stopped by its budget at 4 rounds would give no verdict, and two of them could never
be compared (on a slow or busy machine that was every default run). The decision then says by how
much the budget is being exceeded. harness.measure.run measures; this module only decides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness.analysis import stats

# ±10 %: what this machine's noise lets a run reach. Repeats of one strategy spread with a log
# standard deviation of 0.04-0.10 here (docs/examples: large.toml 0.04-0.09, branching 0.04-0.10),
# and at 0.08 the exact interval's median half-width is ±16 % at 5 rounds, ±10 % at 8, ±9 % at
# 10 and ±5 % only at 30 (simulated with harness.analysis.stats.interval_batch; README, "Repeats"). ±5 %
# would run nearly every workload to its budget; ±10 % settles a short workload in ~10 rounds
# and still resolves the 10 % step that compare flags (DEFAULT_THRESHOLD in harness.report.compare).
TARGET_HALF_WIDTH = 0.10
# A ratio whose whole interval lies beyond this factor either side of 1 is settled whatever its
# width: "244× [205, 286] faster than per_item" will not change its verdict with more rounds, and
# how much more than twice as fast is not what more rounds are for.
DECISIVE_FACTOR = 2.0
# Never more rounds than an integer `repeats` may ask for ([run] repeats <= 100).
MAX_ROUNDS = 100
# The next round is estimated as the slowest round so far plus this margin: rounds of the same
# work differ by the machine's noise (IQR up to ~20 % here), and the slowest already carries most.
ROUND_ESTIMATE_MARGIN = 0.10
# The ratios a run settles on: roles of harness.analysis.stats.adaptive_references.
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
    # While the floor keeps a run going past its budget: "past the 60 s budget by ~14 s ...", else "".
    over_budget: str = ""


def ratio_statuses(runs: pd.DataFrame, target: float = TARGET_HALF_WIDTH,
                   decisive_factor: float | None = DECISIVE_FACTOR) -> tuple[RatioStatus, ...]:
    """adaptive's settling ratios on the rows so far, each settled or not and why. A run folder
    is judged by the target and factor it ran with (env.json's settling block; None: no factor)."""
    rows = stats.main_rows(runs)
    table = stats.summarize(rows)
    rounds = int(rows["repeat"].nunique())
    return tuple(status(ref.role, ref.strategy, ref.ratio, rounds, target, decisive_factor)
                 for ref in stats.adaptive_references(rows, table) if ref.role in SETTLING_ROLES)


def status(role: str, strategy: str, r: stats.Ratio, rounds: int, target: float = TARGET_HALF_WIDTH,
           decisive_factor: float | None = DECISIVE_FACTOR) -> RatioStatus:
    """One ratio after `rounds` rounds: settled or not, and why (the rule, ratio by ratio; the
    calibration in tests/calibration.py runs it on simulated ratios)."""
    if not r.has_interval:
        why, settled = r.too_few, False
    elif r.half_width <= target:
        why, settled = f"settled: interval ±{r.half_width:.1%} within ±{target:.0%}", True
    elif decisive_factor and decisive(r, decisive_factor):
        why, settled = (f"settled: the whole interval {r.interval()} lies beyond {decisive_factor:g}× "
                        f"(±{r.half_width:.1%})"), True
    else:
        why, settled = (f"interval ±{r.half_width:.1%}, wider than ±{target:.0%} "
                        f"(~{rounds_to_target(r.half_width, rounds, target)} rounds would reach it)"), False
    return RatioStatus(role, strategy, r, settled, why)


def decisive(r: stats.Ratio, factor: float = DECISIVE_FACTOR) -> bool:
    """The interval lies wholly beyond `factor` either way: the verdict cannot turn."""
    return r.has_interval and (r.low > factor or r.high < 1 / factor)


def rounds_to_target(half_width: float, rounds: int, target: float = TARGET_HALF_WIDTH) -> int:
    """A rough count of rounds that would bring `half_width` (after `rounds`) to `target`: the
    interval narrows about as 1 / sqrt(rounds), a little faster below ~10 rounds, where the exact
    interval's ranks are coarse (README, "Repeats"), so this errs long."""
    return max(rounds + 1, math.ceil(rounds * (half_width / target) ** 2))


def statuses_of(runs: pd.DataFrame, settling: dict[str, Any]) -> tuple[RatioStatus, ...]:
    """The ratio statuses of a finished run, judged as it ran (env.json's settling block; a run
    written before DECISIVE_FACTOR existed had none)."""
    return ratio_statuses(runs, float(settling.get("target_half_width", TARGET_HALF_WIDTH)),
                          settling.get("decisive_factor"))


def floor_rounds(strategies: int) -> int:
    """The fewest rounds before a run may stop as settled: enough for the report's verdicts and
    for `harness compare` to be able to flag a regression over this many strategies (Holm)."""
    return max(stats.repeats_needed(), stats.repeats_for_family(strategies))


def decide(runs: pd.DataFrame, round_s: list[float], elapsed_s: float, budget_s: float) -> Decision:
    """After the rounds in `runs` (durations `round_s`, `elapsed_s` spent in all): another round?"""
    statuses = ratio_statuses(runs) if len(runs) else ()
    return decide_on(statuses, runs["strategy"].nunique() if len(runs) else 1, round_s, elapsed_s, budget_s)


def decide_on(statuses: tuple[RatioStatus, ...], strategies: int, round_s: list[float], elapsed_s: float,
              budget_s: float) -> Decision:
    """`decide` on the ratios' statuses after len(round_s) rounds of `strategies` strategies."""
    estimate = max(round_s) * (1 + ROUND_ESTIMATE_MARGIN) if round_s else math.nan
    left = budget_s - elapsed_s
    fits = int(left // estimate) if estimate > 0 else 0
    done = len(round_s)
    floor = floor_rounds(strategies)
    if done >= floor and all(s.settled for s in statuses):
        reason = ("every ratio settled" if statuses
                  else f"no adaptive ratio to settle: stopped at the {floor} rounds the verdicts need")
        return Decision(False, reason, statuses, estimate, fits)
    if done >= MAX_ROUNDS:
        return Decision(False, f"reached {MAX_ROUNDS} rounds", statuses, estimate, fits)
    if done and fits < 1:
        if done >= floor:
            if left < 0:
                return Decision(False, f"budget: {budget_s:.0f} s spent ({elapsed_s:.0f} s: the {floor} rounds the "
                                       f"verdicts need came first)", statuses, estimate, 0)
            return Decision(False, f"budget: the next round (~{estimate:.0f} s) would not fit in the "
                                   f"{left:.0f} s left of {budget_s:.0f} s", statuses, estimate, fits)
        over = elapsed_s + estimate - budget_s
        return Decision(True, "", statuses, estimate, 0,
                        over_budget=f"past the {budget_s:.0f} s budget by ~{over:.0f} s at the end of this round: "
                                    f"round {done + 1} of the {floor} the verdicts need")
    return Decision(True, "", statuses, estimate, max(fits - 1, 0))
