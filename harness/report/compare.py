"""Compare two run folders strategy by strategy: did B get slower than A, and are we sure?

Only like with like: runs of different work (workload digest), profile, cluster layout,
machine (CPU count and model), package versions or Dask performance reports (--dask-report)
are refused (`CompareRefused`, exit 2) unless forced, and then the differences are part of the result. A strategy regressed when B's
median wall is more than `threshold` above A's and the one-sided exact Mann-Whitney test of
"B slower" rejects at 5 % after Holm's correction over every strategy compared. When the
repeats are too few for that test to reject at all, the comparison refuses to give a verdict
(`TooFewRepeats`, exit 2) rather than say "no regression". The interval shown is the two-sided
95 % interval of harness.analysis.stats. Pure apart from reading the two folders; cli.py prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.measure import environment, machine_load

from harness.analysis import stats
from harness.errors import SpecError
from harness.measure.records import read_run_folder

# asv's default regression factor is 10 %; below that, run-to-run drift on a shared machine
# (docs/runtime-notes.md) makes a "regression" mostly noise.
DEFAULT_THRESHOLD = 0.10


class CompareRefused(SpecError):
    """The two runs are not like for like (exit 2): each difference is named."""

    def __init__(self, a: Path, b: Path, differences: list[str]) -> None:
        self.differences = differences
        super().__init__(f"{a} and {b} are not like for like, so their times do not compare:\n  "
                         + "\n  ".join(differences) + "\n(--force compares them anyway and lists these above the table)")


class TooFewRepeats(SpecError):
    """Neither a regression nor its absence can be shown with these repeats (exit 2)."""


@dataclass(frozen=True)
class Change:
    strategy: str
    a_wall_s: float
    b_wall_s: float
    ratio: stats.Ratio  # B / A: above 1 means B is slower
    p_slower: float  # one-sided exact Mann-Whitney p of "B slower than A"
    slower: bool  # Holm rejects "no slow-down" at 5 % over the family
    regressed: bool

    @property
    def verdict(self) -> str:
        if self.regressed:
            return "REGRESSION"
        if self.slower:
            return "slower (within threshold)"
        if self.ratio.significant and self.ratio.estimate < 1:
            return "faster"
        return "no significant change"

    def as_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "a_wall_s": self.a_wall_s, "b_wall_s": self.b_wall_s,
                "ratio": self.ratio.as_dict(), "p_slower": self.p_slower, "slower": self.slower,
                "regressed": self.regressed, "verdict": self.verdict}


@dataclass(frozen=True)
class Comparison:
    a: Path
    b: Path
    threshold: float
    changes: tuple[Change, ...]
    only_in_a: tuple[str, ...]
    only_in_b: tuple[str, ...]
    differences: tuple[str, ...] = ()  # what makes A and B unlike (only when forced)
    load_warnings: tuple[str, ...] = ()  # "A: ...", "B: ..."

    @property
    def regressed(self) -> bool:
        return any(c.regressed for c in self.changes)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({
            "strategy": [c.strategy for c in self.changes],
            "A wall s": [f"{c.a_wall_s:.3f}" for c in self.changes],
            "B wall s": [f"{c.b_wall_s:.3f}" for c in self.changes],
            "B / A": [f"{c.ratio.estimate:.{stats.decimals((c.ratio.estimate,), 3)}f}" for c in self.changes],
            "95 % CI": [c.ratio.interval(3) for c in self.changes],
            "change": [f"{c.ratio.estimate - 1:+.1%}" for c in self.changes],
            "p (B slower)": [f"{c.p_slower:.4f}" for c in self.changes],
            "verdict": [c.verdict for c in self.changes],
        })

    def as_dict(self) -> dict[str, Any]:
        return {"schema": "harness.compare/1", "a": str(self.a), "b": str(self.b), "threshold": self.threshold,
                "alpha": stats.ALPHA, "correction": "holm", "regressed": self.regressed,
                "changes": [c.as_dict() for c in self.changes], "only_in_a": list(self.only_in_a),
                "only_in_b": list(self.only_in_b), "differences": list(self.differences),
                "load_warnings": list(self.load_warnings)}


def _too_few(sa: dict, sb: dict, common: list[str]) -> str:
    need = stats.repeats_for_family(len(common))
    short = [f"{s} (A {len(sa[s])}, B {len(sb[s])})" for s in common
             if stats.smallest_p(len(sa[s]), len(sb[s]), "greater") > stats.ALPHA / len(common)]
    if not short:
        return ""
    return (f"too few repeats for a verdict: {', '.join(short)}; over {len(common)} strategies a regression "
            f"needs ≥ {need} repeats on each side (one-sided Mann-Whitney at {stats.ALPHA:.0%}, Holm-corrected), "
            f"so neither a regression nor its absence can be shown. Re-run with --repeats auto or --repeats {need}.")


def judge(sa: dict[str, Any], sb: dict[str, Any], threshold: float = DEFAULT_THRESHOLD) -> list[Change]:
    """Each strategy in both sample sets ({strategy: walls}): B against A, Holm over all of them."""
    common = [s for s in sa if s in sb]
    p_slower = [stats.mann_whitney_p(sb[s], sa[s], "greater") for s in common]
    changes = []
    for strategy, p, is_slower in zip(common, p_slower, stats.holm(p_slower)):
        r = stats.ratio(f"B {strategy}", sb[strategy], f"A {strategy}", sa[strategy])
        changes.append(Change(strategy, float(pd.Series(sa[strategy]).median()), float(pd.Series(sb[strategy]).median()),
                              r, p, is_slower, is_slower and r.estimate > 1 + threshold))
    return changes


def compare_runs(a: Path, b: Path, threshold: float = DEFAULT_THRESHOLD, *, force: bool = False) -> Comparison:
    if not threshold >= 0:
        raise SpecError(f"--threshold: found {threshold}, expected a fraction >= 0 (0.10 = 10 %)")
    folder_a, folder_b = read_run_folder(a), read_run_folder(b)  # each checked whole (records.read_run_folder)
    runs_a, runs_b, env_a, env_b = folder_a.runs, folder_b.runs, folder_a.env, folder_b.env
    differences = environment.differences(env_a, env_b)
    if differences and not force:
        raise CompareRefused(Path(a), Path(b), differences)
    sa = stats.samples_by_strategy(stats.main_rows(runs_a))
    sb = stats.samples_by_strategy(stats.main_rows(runs_b))
    common = [s for s in sa if s in sb]
    if common and (why := _too_few(sa, sb, common)):
        raise TooFewRepeats(f"{a} against {b}: {why}")
    changes = judge(sa, sb, threshold)
    warnings = [f"{side}: {w}" for side, runs, env in (("A", runs_a, env_a), ("B", runs_b, env_b))
                for w in machine_load.load_warnings(runs, env.get("cpu_count"))]
    return Comparison(Path(a), Path(b), threshold, tuple(changes),
                      tuple(s for s in sa if s not in sb), tuple(s for s in sb if s not in sa),
                      tuple(differences), tuple(warnings))
