"""Compare two run folders strategy by strategy: did B get slower than A, and are we sure?

A strategy regressed when B's median wall is more than `threshold` above A's and the 95 %
bootstrap interval of the ratio lies wholly above 1 (the same test the report uses). Pure
apart from reading the two folders; cli.py prints the result and turns it into an exit code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness import stats
from harness.errors import SpecError
from harness.records import read_run_folder

# asv's default regression factor is 10 %; below that, run-to-run drift on a shared machine
# (RUNTIME.md: up to ~1.7x over an hour) makes a "regression" mostly noise.
DEFAULT_THRESHOLD = 0.10


@dataclass(frozen=True)
class Change:
    strategy: str
    a_wall_s: float
    b_wall_s: float
    ratio: stats.Ratio  # B / A: above 1 means B is slower
    regressed: bool

    @property
    def verdict(self) -> str:
        if self.regressed:
            return "REGRESSION"
        if self.ratio.significant:
            return "faster" if self.ratio.estimate < 1 else "slower (within threshold)"
        return self.ratio.label


@dataclass(frozen=True)
class Comparison:
    a: Path
    b: Path
    threshold: float
    changes: tuple[Change, ...]
    only_in_a: tuple[str, ...]
    only_in_b: tuple[str, ...]

    @property
    def regressed(self) -> bool:
        return any(c.regressed for c in self.changes)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({
            "strategy": [c.strategy for c in self.changes],
            "A wall s": [f"{c.a_wall_s:.3f}" for c in self.changes],
            "B wall s": [f"{c.b_wall_s:.3f}" for c in self.changes],
            "B / A": [f"{c.ratio.estimate:.3f}" for c in self.changes],
            "95 % CI": [c.ratio.interval(3) for c in self.changes],
            "change": [f"{c.ratio.estimate - 1:+.1%}" for c in self.changes],
            "verdict": [c.verdict for c in self.changes],
        })


def read_run(folder: Path) -> pd.DataFrame:
    """runs.csv of a run folder (the dynamic rows when it has variants), or a SpecError saying what is missing."""
    runs = read_run_folder(folder).runs  # SpecError naming a damaged or missing file
    return stats.main_rows(runs)


def compare_runs(a: Path, b: Path, threshold: float = DEFAULT_THRESHOLD) -> Comparison:
    if not threshold >= 0:
        raise SpecError(f"--threshold: found {threshold}, expected a fraction >= 0 (0.10 = 10 %)")
    sa, sb = stats.samples_by_strategy(read_run(a)), stats.samples_by_strategy(read_run(b))
    changes = []
    for strategy in (s for s in sa if s in sb):
        r = stats.ratio(f"B {strategy}", sb[strategy], f"A {strategy}", sa[strategy])
        regressed = r.estimate > 1 + threshold and r.significant
        changes.append(Change(strategy, float(pd.Series(sa[strategy]).median()), float(pd.Series(sb[strategy]).median()),
                              r, regressed))
    return Comparison(Path(a), Path(b), threshold, tuple(changes),
                      tuple(s for s in sa if s not in sb), tuple(s for s in sb if s not in sa))
