"""Numbers a reader can trust from a run's raw per-repeat samples: per-strategy medians with
their spread, ratios of medians with exact distribution-free 95 % intervals (or "too few
repeats for a verdict"), and warnings when a strategy's samples are too noisy to lean on.

Pure: pandas in, pandas and frozen dataclasses out; no files, no printing. Every wall time is
the projection to the whole workload (`projected_wall_s`), so a strategy measured on a sample
is compared on the same footing as one that ran every item (run.py's sampling budgets).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import stats as sps

from harness.work.outcomes import FAILED_AFTER_RETRIES
from harness.workload.vocabulary import RAW_DASK, STATIC, StrategyKind

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
# Above this many pairs (n x m) the exact null distribution of Mann-Whitney's U gives way to its
# normal approximation (with continuity correction): at 20 x 20 repeats the two agree to the
# third decimal of the tail probability, and the exact count grows as n x m x min(n, m).
EXACT_PAIRS_MAX = 400
# pyperf and asv call a benchmark unstable near 10 % relative spread; the issue asks the same.
UNSTABLE_IQR_FRACTION = 0.10
# Significant digits every printed ratio and interval end keeps, however small it is; and how many
# more an interval's ends may take to print apart (4 significant in all: ends closer than that
# are alike for every purpose here).
SIGNIFICANT_DIGITS = 2
APART_DIGITS = 2
# The first repeat counts as "much slower" beyond this factor over the median of the others:
# a warm-up that missed something (imports, JIT-like caches, a cold API server) shows up as
# +50 % and more here, while ordinary noise on this machine stays within ~30 %.
FIRST_RUN_SLOW_FACTOR = 1.5


# --- the exact, distribution-free interval ---------------------------------------------------
#
# A ratio of wall times is a shift of log wall times. With n and m independent repeats, the
# Mann-Whitney (Wilcoxon rank-sum) test of "no shift" is exact whatever the noise's shape, and
# its inversion (Hodges-Lehmann / Moses) gives an interval for the shift: the k-th smallest and
# k-th largest of the n x m pairwise differences log a_i - log b_j, where k is the largest count
# with 2 P(U <= k - 1) <= alpha under the null. Its coverage is at least the nominal level at
# every n (docs/reading-a-report.md, "How sure is a ratio"). Its verdict (the interval excludes 1) is the exact
# two-sided test asv uses. With too few repeats no k exists (3 against 3: the smallest possible
# two-sided p is 2 / C(6, 3) = 0.1), and the ratio says so instead of pretending.


@lru_cache(maxsize=256)
def _u_null_cdf(n: int, m: int) -> tuple[float, ...]:
    """P(U <= u) for u = 0 .. n*m under no shift: the coefficients of the Gaussian binomial
    [n + m choose n]_q, counted exactly in integers, over C(n + m, n)."""
    poly = [1]
    for i in range(1, min(n, m) + 1):  # [m' + i choose i]_q from [m' + i - 1 choose i - 1]_q
        big = max(n, m)
        grown = poly + [0] * big
        for k in range(len(grown) - 1, big + i - 1, -1):  # x (1 - q^(big + i))
            grown[k] -= grown[k - big - i]
        for k in range(i, len(grown)):  # / (1 - q^i): exact, the quotient is a polynomial
            grown[k] += grown[k - i]
        while len(grown) > 1 and grown[-1] == 0:
            grown.pop()
        poly = grown
    total = math.comb(n + m, n)
    out, seen = [], 0
    for count in poly:
        seen += count
        out.append(seen / total)
    return tuple(out)


def _u_lower_tail(n: int, m: int, u: float) -> float:
    """P(U <= u) under no shift: exact up to EXACT_PAIRS_MAX pairs, else the normal approximation."""
    if u < 0:
        return 0.0
    if n * m <= EXACT_PAIRS_MAX:
        cdf = _u_null_cdf(n, m)
        return cdf[min(int(math.floor(u)), len(cdf) - 1)]
    mean, sd = n * m / 2, math.sqrt(n * m * (n + m + 1) / 12)
    return float(sps.norm.cdf((u + 0.5 - mean) / sd))


@lru_cache(maxsize=256)
def critical_rank(n: int, m: int, alpha: float = ALPHA) -> int:
    """The interval's rank k (k-th smallest and k-th largest pairwise difference); 0 when n and m
    are too few for any interval at level 1 - alpha."""
    k = 0
    while k < n * m // 2 and 2 * _u_lower_tail(n, m, k) <= alpha:
        k += 1  # 2 P(U <= k - 1) <= alpha holds for rank k
    return k


def enough_repeats(n: int, m: int, alpha: float = ALPHA) -> bool:
    return n >= 1 and m >= 1 and critical_rank(n, m, alpha) >= 1


def repeats_needed(alpha: float = ALPHA, *, other: int | None = None) -> int:
    """The fewest repeats per side (against `other` repeats on the other side, else as many)
    for which a verdict at level 1 - alpha is possible at all."""
    n = 1
    while not enough_repeats(n, other or n, alpha):
        n += 1
    return n


def interval_batch(log_a: np.ndarray, log_b: np.ndarray, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """The interval of exp(shift) for many trials at once: log_a (trials, n), log_b (trials, m).
    NaN rows when n and m are too few. Used by `ratio` and, vectorised, by the calibration test."""
    log_a, log_b = np.atleast_2d(log_a), np.atleast_2d(log_b)
    n, m = log_a.shape[1], log_b.shape[1]
    k = critical_rank(n, m, alpha)
    if k == 0:
        nan = np.full(log_a.shape[0], math.nan)
        return nan, nan
    diffs = np.sort((log_a[:, :, None] - log_b[:, None, :]).reshape(log_a.shape[0], n * m), axis=1)
    return np.exp(diffs[:, k - 1]), np.exp(diffs[:, n * m - k])


def mann_whitney_p(a: np.ndarray, b: np.ndarray, alternative: str = "two-sided") -> float:
    """p-value of "a and b come from the same distribution" against a and b differing
    ("two-sided") or a tending larger ("greater"); ties count half, rounded the cautious way."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n, m = len(a), len(b)
    if not n or not m:
        return math.nan
    u = float((a[:, None] > b[None, :]).sum() + 0.5 * (a[:, None] == b[None, :]).sum())
    upper = _u_lower_tail(n, m, math.ceil(n * m - u))  # P(U >= u): U's null law is symmetric
    if alternative == "greater":
        return upper
    return min(1.0, 2 * min(_u_lower_tail(n, m, math.ceil(u)), upper))


def smallest_p(n: int, m: int, alternative: str = "two-sided") -> float:
    """The smallest p-value n against m repeats can give at all (all of one side beyond the other)."""
    return (1 if alternative == "greater" else 2) / math.comb(n + m, n)


def repeats_for_family(tests: int, alpha: float = ALPHA, alternative: str = "greater") -> int:
    """The fewest repeats per side with which Holm over `tests` tests can reject at all: the
    smallest p must reach alpha / tests (Holm's first step)."""
    n = 1
    while smallest_p(n, n, alternative) > alpha / max(tests, 1):
        n += 1
    return n


def holm(p_values: list[float], alpha: float = ALPHA) -> list[bool]:
    """Holm's step-down rejections: family-wise error <= alpha over all the tests at once."""
    order = sorted(range(len(p_values)), key=lambda i: (math.isnan(p_values[i]), p_values[i]))
    rejected = [False] * len(p_values)
    for rank, i in enumerate(order):
        p = p_values[i]
        if math.isnan(p) or p > alpha / (len(p_values) - rank):
            break
        rejected[i] = True
    return rejected


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
    """median(numerator) / median(denominator) of wall times, with the exact distribution-free
    95 % interval of the ratio (see above) and the Mann-Whitney two-sided p-value.

    Below 1: the numerator is faster. `low`/`high` are NaN when the repeats are too few for a
    verdict at 95 %; `need` then says how many per side would be."""

    numerator: str
    denominator: str
    estimate: float
    low: float
    high: float
    p_value: float = math.nan
    need: int = 0  # repeats per side a verdict needs (0: not computed, e.g. built by hand)

    @property
    def value(self) -> float:
        """The estimate (median over median), as the pytest plugin's results name it."""
        return self.estimate

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    @property
    def significant(self) -> bool:
        """The interval lies wholly on one side of 1 (no interval: not significant)."""
        return self.has_interval and (self.high < 1 or self.low > 1)

    @property
    def too_few(self) -> str:
        return f"too few repeats for a verdict (need ≥ {self.need or repeats_needed()})"

    @property
    def label(self) -> str:
        if not self.has_interval:
            return self.too_few
        return "significant" if self.significant else "not significant"

    @property
    def half_width(self) -> float:
        """How far the interval reaches from the estimate, as a fraction of it (NaN: no interval)."""
        if not self.has_interval:
            return math.nan
        return max(self.high / self.estimate - 1, 1 - self.low / self.estimate)

    def inverted(self) -> Ratio:
        return Ratio(self.denominator, self.numerator, 1 / self.estimate, 1 / self.high, 1 / self.low,
                     self.p_value, self.need)

    def interval(self, digits: int = 2) -> str:
        """'[0.94, 1.13]': at least `digits` decimals, more when the ends need them (decimals)."""
        if not self.has_interval:
            return "[no interval]"
        d = decimals((self.low, self.high), digits)
        return f"[{self.low:.{d}f}, {self.high:.{d}f}]"

    def phrase(self, reference: str) -> str:
        """'41× [38, 44] faster than per_item' or '1.03× [0.98, 1.08] the wall time of static:50'."""
        if not self.has_interval:
            too_few = f"(too few repeats for a verdict: need ≥ {self.need or repeats_needed()})"
            if self.estimate < 0.1:  # "0.00× the wall time" says nothing: say how many times faster
                return f"{_times(1 / self.estimate)} faster than {reference} {too_few}"
            return f"{_times(self.estimate)} the wall time of {reference} {too_few}"
        if self.estimate < 1 and self.significant:
            fast = self.inverted()
            return f"{_times(fast.estimate)} {fast.interval(_digits(fast.estimate))} faster than {reference}"
        # Says what is not significant: after "static:50, the best static" a bare "(not
        # significant)" would read as if it qualified the best static.
        tail = "" if self.significant else " (difference not significant)"
        return f"{_times(self.estimate)} {self.interval(_digits(self.estimate))} the wall time of {reference}{tail}"

    def as_dict(self) -> dict[str, object]:
        """The ratio for results.json: NaN as null."""
        def num(x: float) -> float | None:
            return None if math.isnan(x) else float(x)
        return {"numerator": self.numerator, "denominator": self.denominator, "estimate": num(self.estimate),
                "low": num(self.low), "high": num(self.high), "confidence": CONFIDENCE,
                "p_value": num(self.p_value), "verdict": self.label, "significant": self.significant,
                "repeats_needed": self.need or repeats_needed()}


def decimals(values: tuple[float, ...], at_least: int) -> int:
    """Decimals to print `values` with: at least `at_least`, and enough that each shows
    SIGNIFICANT_DIGITS significant digits (a ratio to per_item of 0.0025 is not "0.00", an
    interval [0.0022, 0.0028] not "[0.00, 0.00]") and that values that differ print apart (up
    to APART_DIGITS more: [0.9391, 0.9399], not [0.94, 0.94])."""
    finite = [abs(v) for v in values if math.isfinite(v)]
    significant = [SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(v)) for v in finite if v > 0]
    if not significant:
        return at_least
    gaps = [abs(a - b) for a, b in zip(finite, finite[1:]) if a != b]
    apart = [min(-math.floor(math.log10(g)), max(significant) + APART_DIGITS) for g in gaps]
    return max([at_least, *significant, *apart])


def _digits(x: float) -> int:
    return 0 if x >= 10 else 2


def _times(x: float) -> str:
    return f"{x:,.{_digits(x)}f}×"


def ratio(numerator: str, a: np.ndarray, denominator: str, b: np.ndarray, alpha: float = ALPHA) -> Ratio:
    """median(a) / median(b) with the exact distribution-free interval at level 1 - alpha, a and
    b independent samples (repeats of different strategies, or of two runs)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    estimate = float(np.median(a) / np.median(b))
    need = repeats_needed(alpha)  # per side, as many on each (fewer on one side can do with more on the other)
    if not enough_repeats(len(a), len(b), alpha):
        return Ratio(numerator, denominator, estimate, math.nan, math.nan, mann_whitney_p(a, b), need)
    low, high = interval_batch(np.log(a)[None, :], np.log(b)[None, :], alpha)
    return Ratio(numerator, denominator, estimate, float(low[0]), float(high[0]), mann_whitney_p(a, b), need)


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
        # items that succeeded over every repeat: 0 means its wall time carries no result (older
        # runs.csv without items_ok: every strategy counts as having succeeded)
        "ok": grouped["items_ok"].sum() if "items_ok" in runs else grouped["items"].max(),
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
    per_item_wall = table["wall_s"].get("per_item", math.nan) if "per_item" not in without_success(table) else math.nan
    table["vs_per_item"] = per_item_wall / table["wall_s"]
    table["vs_oracle"] = table["wall_s"] / (table.loc[oracle, "wall_s"] if oracle else math.nan)
    table["vs_ideal"] = table["wall_s"] / table["ideal_s"]
    # A strategy none of whose items succeeded ran no work to be fast at: none of its speeds.
    table.loc[table["ok"] == 0, ["throughput_items_s", "efficiency", "vs_per_item", "vs_oracle", "vs_ideal"]] = math.nan
    table.attrs["oracle"] = oracle
    table.attrs["items_total"] = int(items_total)
    return table


def without_success(table: pd.DataFrame) -> list[str]:
    """Strategies none of whose items succeeded in any repeat: a wall time without one result is
    no speed, so these are ranked against nothing (not the oracle, not in a ratio)."""
    return [str(s) for s in table.index[table["ok"] == 0]] if "ok" in table else []


def best_of(table: pd.DataFrame, kind: StrategyKind) -> str | None:
    """The strategy of `kind` (e.g. STATIC: static:N for every N run) with the smallest median
    wall, among those with an item that succeeded."""
    failed = without_success(table)
    chosen = table[[kind.read(name) is not None and name not in failed for name in table.index]]
    return str(chosen["wall_s"].idxmin()) if len(chosen) else None


@dataclass(frozen=True)
class Reference:
    """A strategy the adaptive one is judged against, and why it is in the report."""

    role: str  # "best static", "per_item", "best raw_dask", "joblib_auto"
    strategy: str
    ratio: Ratio  # adaptive / reference


def adaptive_references(runs: pd.DataFrame, table: pd.DataFrame, subject: str = "adaptive") -> list[Reference]:
    """adaptive against the oracle, per_item, the best raw_dask:N and joblib_auto: the ones present."""
    failed = without_success(table)
    if subject not in table.index or subject in failed:
        return []
    samples = samples_by_strategy(runs)
    wanted = [("best static", best_of(table, STATIC)), ("per_item", "per_item" if "per_item" in table.index else None),
              ("best raw_dask", best_of(table, RAW_DASK)),
              ("joblib_auto", "joblib_auto" if "joblib_auto" in table.index else None)]
    return [Reference(role, ref, ratio(subject, samples[subject], ref, samples[ref]))
            for role, ref in wanted if ref is not None and ref not in failed]


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


def run_headline(refs: list[Reference], table: pd.DataFrame, notes: dict[str, list[str]] | None,
                 subject: str = "adaptive") -> str:
    """The report's and results.json's headline: `headline`, unless a strategy had no item
    succeed; then what failed (how many items, the first error from its note in env.json's
    strategy_notes) instead of a speed that measured no work."""
    failed = without_success(table)
    if not failed:
        return headline(refs, subject)
    said = next((f"{s}: {n}" for s in failed for n in (notes or {}).get(s, ()) if FAILED_AFTER_RETRIES in n),
                f"{failed[0]}: {int(table.loc[failed[0], 'failed']):,} items failed")
    if len(failed) == len(table):
        return f"No speed verdict: every item failed under every strategy ({said})."
    if subject in failed:
        return (f"No speed verdict for {subject}: none of its {int(table.loc[subject, 'items']):,} items succeeded "
                f"({said}).")
    rest = headline(refs, subject)
    others = ", ".join(failed)
    return (f"{rest} " if rest else "") + (f"{others} had no item succeed and {'is' if len(failed) == 1 else 'are'} "
                                           f"compared with nothing ({said}).")


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
