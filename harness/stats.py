"""Numbers a reader can trust from a run's raw per-repeat samples: per-strategy medians with
their spread, ratios of medians with 95 % bootstrap intervals, and warnings when a strategy's
samples are too noisy to lean on.

Pure: pandas in, pandas and frozen dataclasses out; no files, no printing. Every wall time is
the projection to the whole workload (`projected_wall_s`), so a strategy measured on a sample
is compared on the same footing as one that ran every item (run.py's sampling budgets).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from harness.strategies import RAW_DASK, STATIC, StrategyKind

CONFIDENCE = 0.95
# Resamples per interval: percentile intervals settle to ~1 % of their width by a few
# thousand resamples; 4,000 keeps a report with ~10 ratios well under a second.
BOOTSTRAP_RESAMPLES = 4_000
# Fixed, so re-rendering a report (or comparing two runs) gives the same intervals every time.
BOOTSTRAP_SEED = 20261127
# pyperf and asv call a benchmark unstable near 10 % relative spread; the issue asks the same.
UNSTABLE_IQR_FRACTION = 0.10
# The first repeat counts as "much slower" beyond this factor over the median of the others:
# a warm-up that missed something (imports, JIT-like caches, a cold API server) shows up as
# +50 % and more here, while ordinary noise on this machine stays within ~30 %.
FIRST_RUN_SLOW_FACTOR = 1.5


def wall_samples(runs: pd.DataFrame) -> pd.Series:
    """Each row's wall time for the whole workload (projected when measured on a sample)."""
    if "projected_wall_s" in runs:
        return runs["projected_wall_s"].fillna(runs["wall_s"])
    return runs["wall_s"]


def samples_by_strategy(runs: pd.DataFrame) -> dict[str, np.ndarray]:
    walls = wall_samples(runs)
    return {str(s): walls[idx].to_numpy(dtype=float) for s, idx in runs.groupby("strategy", sort=False).groups.items()}


@dataclass(frozen=True)
class Ratio:
    """median(numerator) / median(denominator) of wall times, with a 95 % bootstrap interval.

    Below 1: the numerator is faster. `low`/`high` are NaN when either side has fewer than two
    samples (one repeat cannot say how sure we are)."""

    numerator: str
    denominator: str
    estimate: float
    low: float
    high: float

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    @property
    def significant(self) -> bool:
        """The interval lies wholly on one side of 1 (no interval: not significant)."""
        return self.has_interval and (self.high < 1 or self.low > 1)

    @property
    def label(self) -> str:
        if not self.has_interval:
            return "no interval (one repeat)"
        return "significant" if self.significant else "not significant"

    def inverted(self) -> Ratio:
        return Ratio(self.denominator, self.numerator, 1 / self.estimate, 1 / self.high, 1 / self.low)

    def interval(self, digits: int = 2) -> str:
        if not self.has_interval:
            return "[no interval]"
        return f"[{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def phrase(self, reference: str) -> str:
        """'41× [38, 44] faster than per_item' or '1.03× [0.98, 1.08] the wall time of static:50'."""
        if not self.has_interval:
            return f"{_times(self.estimate)} the wall time of {reference} (one repeat: no interval)"
        if self.estimate < 1 and self.significant:
            fast = self.inverted()
            return f"{_times(fast.estimate)} {fast.interval(_digits(fast.estimate))} faster than {reference}"
        # Says what is not significant: after "static:50, the best static" a bare "(not
        # significant)" would read as if it qualified the best static.
        tail = "" if self.significant else " (difference not significant)"
        return f"{_times(self.estimate)} {self.interval(_digits(self.estimate))} the wall time of {reference}{tail}"


def _digits(x: float) -> int:
    return 0 if x >= 10 else 2


def _times(x: float) -> str:
    return f"{x:,.{_digits(x)}f}×"


def _ratio_of_medians(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(a, axis=axis) / np.median(b, axis=axis)


def ratio(numerator: str, a: np.ndarray, denominator: str, b: np.ndarray) -> Ratio:
    """median(a) / median(b) with a percentile bootstrap interval, a and b resampled apart
    (repeats of different strategies are independent samples). Percentile, not BCa: with the
    three to five repeats a run has, BCa's jackknife is degenerate."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    estimate = float(np.median(a) / np.median(b))
    if len(a) < 2 or len(b) < 2:
        return Ratio(numerator, denominator, estimate, math.nan, math.nan)
    if np.ptp(a) == 0 and np.ptp(b) == 0:  # no spread at all: the interval is the point
        return Ratio(numerator, denominator, estimate, estimate, estimate)
    result = sps.bootstrap((a, b), _ratio_of_medians, n_resamples=BOOTSTRAP_RESAMPLES, vectorized=True,
                           paired=False, confidence_level=CONFIDENCE, method="percentile",
                           random_state=np.random.default_rng(BOOTSTRAP_SEED))
    ci = result.confidence_interval
    return Ratio(numerator, denominator, estimate, float(ci.low), float(ci.high))


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per strategy (in first-seen order): medians over repeats and ratios of the
    medians against per_item, the oracle (best static:N in hindsight) and the ideal."""
    runs = runs.assign(_wall=wall_samples(runs))
    grouped = runs.groupby("strategy", sort=False)
    wall = grouped["_wall"]
    items_total = runs["items_total"].max() if "items_total" in runs else runs["items"].max()
    table = pd.DataFrame({
        "repeats": grouped.size(),
        "items": grouped["items"].max(),
        "sampled": grouped["sampled"].any() if "sampled" in runs else False,
        "wall_s": wall.median(),
        "q1_s": wall.quantile(0.25),
        "q3_s": wall.quantile(0.75),
        "throughput_items_s": items_total / wall.median(),
        "tasks": grouped["tasks"].median(),
        "batch_size": grouped["batch_size_median"].median(),
        # ideal_s is per run on its (maybe sampled) items: scale to the whole workload.
        "ideal_s": grouped["ideal_s"].median() * items_total / grouped["items"].max(),
        "failed": grouped["items_failed"].max(),
        "retries": grouped["retries"].median(),
        "peak_rss_mb": grouped["peak_rss_mb"].max(),
    })
    table["iqr_s"] = table["q3_s"] - table["q1_s"]
    if "overhead_per_task_ms" in runs:
        table["overhead_ms_per_task"] = grouped["overhead_per_task_ms"].median()
    else:  # (wall x threads - compute) / tasks needs the thread count, which old runs.csv lacks
        table["overhead_ms_per_task"] = math.nan
    table["efficiency"] = table["ideal_s"] / table["wall_s"]
    oracle = best_of(table, STATIC)
    per_item_wall = table["wall_s"].get("per_item", math.nan)
    table["vs_per_item"] = per_item_wall / table["wall_s"]
    table["vs_oracle"] = table["wall_s"] / (table.loc[oracle, "wall_s"] if oracle else math.nan)
    table["vs_ideal"] = table["wall_s"] / table["ideal_s"]
    table.attrs["oracle"] = oracle
    table.attrs["items_total"] = int(items_total)
    return table


def best_of(table: pd.DataFrame, kind: StrategyKind) -> str | None:
    """The strategy of `kind` (e.g. STATIC: static:N for every N run) with the smallest median wall."""
    chosen = table[[kind.read(name) is not None for name in table.index]]
    return str(chosen["wall_s"].idxmin()) if len(chosen) else None


@dataclass(frozen=True)
class Reference:
    """A strategy the adaptive one is judged against, and why it is in the report."""

    role: str  # "best static", "per_item", "best raw_dask", "joblib_auto"
    strategy: str
    ratio: Ratio  # adaptive / reference


def adaptive_references(runs: pd.DataFrame, table: pd.DataFrame, subject: str = "adaptive") -> list[Reference]:
    """adaptive against the oracle, per_item, the best raw_dask:N and joblib_auto: the ones present."""
    if subject not in table.index:
        return []
    samples = samples_by_strategy(runs)
    wanted = [("best static", best_of(table, STATIC)), ("per_item", "per_item" if "per_item" in table.index else None),
              ("best raw_dask", best_of(table, RAW_DASK)),
              ("joblib_auto", "joblib_auto" if "joblib_auto" in table.index else None)]
    return [Reference(role, ref, ratio(subject, samples[subject], ref, samples[ref]))
            for role, ref in wanted if ref is not None]


def headline(refs: list[Reference], subject: str = "adaptive") -> str:
    """One sentence: how the subject did against the best static and per_item (the rest are in the table)."""
    by_role = {r.role: r for r in refs}
    parts = []
    if "best static" in by_role:
        r = by_role["best static"]
        parts.append(r.ratio.phrase(f"{r.strategy}, the best static"))
    if "per_item" in by_role:
        parts.append(by_role["per_item"].ratio.phrase("per_item"))
    if not parts:
        return ""
    return f"{subject} was " + " and ".join(parts) + "."


def instability_warnings(runs: pd.DataFrame) -> list[str]:
    """Strategies whose samples are too spread to trust a single figure, and first repeats that
    were much slower than the rest (a warm-up that did not warm everything)."""
    runs = runs.assign(_wall=wall_samples(runs))
    warnings = []
    for strategy, rows in runs.groupby("strategy", sort=False):
        walls = rows.sort_values("repeat")["_wall"].to_numpy(dtype=float)
        median = float(np.median(walls))
        if len(walls) >= 2 and median > 0:
            q1, q3 = np.quantile(walls, [0.25, 0.75])
            spread = (q3 - q1) / median
            if spread > UNSTABLE_IQR_FRACTION:
                warnings.append(f"{strategy}: unstable, IQR is {spread:.1%} of the median, over the "
                                f"{UNSTABLE_IQR_FRACTION:.0%} limit; more repeats or a quieter machine would help")
        if len(walls) >= 3:
            rest = float(np.median(walls[1:]))
            if rest > 0 and walls[0] > FIRST_RUN_SLOW_FACTOR * rest:
                warnings.append(f"{strategy}: the first repeat (repeat 1) took {walls[0] / rest:.1f}× the median "
                                "of the others; the warm-up may not have warmed everything")
    return warnings


def variant_ratios(runs: pd.DataFrame, numerator: str = "dynamic", denominator: str = "twin") -> list[Ratio]:
    """Per strategy: median wall of the `numerator` variant over the `denominator` variant's."""
    if "variant" not in runs:
        return []
    walls = runs.assign(_wall=wall_samples(runs))
    out = []
    for strategy, rows in walls.groupby("strategy", sort=False):
        a = rows.loc[rows["variant"] == numerator, "_wall"].to_numpy(dtype=float)
        b = rows.loc[rows["variant"] == denominator, "_wall"].to_numpy(dtype=float)
        if len(a) and len(b):
            out.append(ratio(f"{strategy} {numerator}", a, f"{strategy} {denominator}", b))
    return out


def main_rows(runs: pd.DataFrame, variant: str = "dynamic") -> pd.DataFrame:
    """The rows the main table is built from: the dynamic variant when runs carry variants."""
    if "variant" not in runs or not (runs["variant"] == variant).any():
        return runs
    return runs[runs["variant"] == variant]
