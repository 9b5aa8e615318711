"""harness.analysis.stats on synthetic samples whose answers are known: ratios of medians and their
exact distribution-free intervals, significance labels, instability warnings, the summary table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from run_fixture import ITEMS, THREADS, TRUE_WALL_S, make_runs
from scipy.stats import mannwhitneyu

from harness.analysis import stats

NOISE = 0.05  # lognormal sigma of the synthetic wall times: a quiet machine


def noisy(true_median: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Samples whose population median is exactly `true_median` (lognormal noise has median 1)."""
    return true_median * np.exp(rng.normal(0, NOISE, n))


@pytest.mark.parametrize("true_ratio", [0.5, 1.0, 1.3])
def test_ratio_interval_covers_the_true_ratio_in_most_trials(true_ratio):
    rng = np.random.default_rng(7)
    trials = 40
    covered = 0
    for _ in range(trials):
        r = stats.ratio("a", noisy(2.0 * true_ratio, 15, rng), "b", noisy(2.0, 15, rng))
        covered += r.low <= true_ratio <= r.high
    # 95 % nominal and exact (tests/test_stats_calibration.py measures it); 40 trials can miss 2-3 by chance.
    assert covered / trials >= 0.85


def test_a_clear_difference_is_significant_and_no_difference_is_not():
    rng = np.random.default_rng(3)
    faster = stats.ratio("a", noisy(1.0, 10, rng), "b", noisy(2.0, 10, rng))
    assert faster.significant and faster.label == "significant"
    assert faster.high < 1
    same = stats.ratio("a", noisy(2.0, 10, rng), "b", noisy(2.0, 10, rng))
    assert same.low < 1 < same.high
    assert not same.significant and same.label == "not significant"


def test_ratio_is_the_ratio_of_medians_and_reproducible():
    a, b = np.array([3.0, 1.0, 2.0, 10.0]), np.array([1.0, 1.0, 4.0])
    r = stats.ratio("a", a, "b", b)
    assert r.estimate == pytest.approx(np.median(a) / np.median(b))
    assert (r.low, r.high) == (stats.ratio("a", a, "b", b).low, stats.ratio("a", a, "b", b).high)


def test_one_repeat_gives_no_interval_and_is_never_significant():
    r = stats.ratio("a", np.array([1.0]), "b", np.array([2.0, 2.1]))
    assert r.estimate == pytest.approx(1.0 / 2.05)
    assert math.isnan(r.low) and not r.significant
    assert r.label == "too few repeats for a verdict (need ≥ 4)"
    assert r.phrase("b") == "0.49× the wall time of b (too few repeats for a verdict: need ≥ 4)"


def test_the_interval_is_the_k_th_pairwise_ratio_from_each_end():
    """5 against 5 at 95 %: Mann-Whitney's two-sided critical U is 2, so k = 3."""
    a, b = np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    r = stats.ratio("a", a, "b", b)
    pairs = np.sort((a[:, None] / b[None, :]).ravel())
    assert stats.critical_rank(5, 5) == 3
    assert (r.low, r.high) == pytest.approx((pairs[2], pairs[-3]))
    assert r.p_value == pytest.approx(2 / 252)  # every a below every b: the most extreme of C(10, 5)


def test_holm_rejects_step_down():
    assert stats.holm([0.01, 0.04, 0.03]) == [True, False, False]  # 0.01 <= 0.05/3; 0.03 > 0.05/2
    assert stats.holm([0.01, 0.02, 0.04]) == [True, True, True]  # 0.01, 0.02 <= 0.025, 0.04 <= 0.05


def test_samples_without_spread_have_a_point_interval():
    r = stats.ratio("a", np.array([3.0] * 4), "b", np.array([2.0] * 4))
    assert (r.low, r.estimate, r.high) == pytest.approx((1.5, 1.5, 1.5))
    assert r.significant


def test_phrase_says_faster_only_when_significantly_faster():
    fast = stats.Ratio("adaptive", "per_item", 0.025, 0.02, 0.03)
    assert fast.phrase("per_item") == "40× [33, 50] faster than per_item"
    close = stats.Ratio("adaptive", "static:50", 1.03, 0.98, 1.08)
    assert close.phrase("static:50") == "1.03× [0.98, 1.08] the wall time of static:50 (difference not significant)"


def test_quiet_samples_give_no_warning():
    assert stats.instability_warnings(make_runs()) == []


def test_a_wide_spread_is_flagged_as_unstable():
    runs = make_runs(spread=(-0.2, -0.1, 0.0, 0.1, 0.2))  # IQR = 20 % of the median
    warnings = stats.instability_warnings(runs)
    assert len(warnings) == len(TRUE_WALL_S)
    assert all("unstable, IQR is 20.0% of the median, over the 10% limit" in w for w in warnings)


def test_a_slow_first_repeat_is_flagged():
    runs = make_runs(spread=(1.0, 0.0, 0.0, 0.0, 0.0))  # the first repeat takes twice as long
    warnings = stats.instability_warnings(runs)
    assert sum("first repeat (repeat 1) took 2.0×" in w for w in warnings) == len(TRUE_WALL_S)


def test_summary_uses_projected_walls_and_known_references():
    table = stats.summarize(make_runs())
    assert list(table.index) == list(TRUE_WALL_S)
    for strategy, wall in TRUE_WALL_S.items():
        assert table.loc[strategy, "wall_s"] == pytest.approx(wall)  # projected for sampled rows
        assert table.loc[strategy, "throughput_items_s"] == pytest.approx(ITEMS / wall)
        assert table.loc[strategy, "efficiency"] == pytest.approx(3.0 / THREADS / wall)
        assert table.loc[strategy, "vs_per_item"] == pytest.approx(TRUE_WALL_S["per_item"] / wall)
    assert table.attrs["oracle"] == "static:50"
    assert table.loc["adaptive", "vs_oracle"] == pytest.approx(4.2 / 4.0)
    assert table.loc["per_item", "sampled"] and not table.loc["adaptive", "sampled"]


def test_adaptive_is_judged_against_every_reference_present():
    runs = make_runs()
    refs = stats.adaptive_references(runs, stats.summarize(runs))
    assert [(r.role, r.strategy) for r in refs] == [
        ("best static", "static:50"), ("per_item", "per_item"), ("best raw_dask", "raw_dask:50"),
        ("joblib_auto", "joblib_auto")]
    for r in refs:
        true = TRUE_WALL_S["adaptive"] / TRUE_WALL_S[r.strategy]
        assert r.ratio.estimate == pytest.approx(true)
        assert r.ratio.low <= true <= r.ratio.high
        assert r.ratio.significant  # every reference differs from adaptive by >= 5 %, noise is 2 %
    oracle, per_item = refs[0].ratio, refs[1].ratio.inverted()
    assert stats.headline(refs) == (
        f"adaptive was 1.05× [{oracle.low:.2f}, {oracle.high:.2f}] the wall time of static:50, the best static "
        f"and 29× [{per_item.low:.0f}, {per_item.high:.0f}] faster than per_item.")


def test_variants_split_into_main_rows_and_twin_ratios():
    dynamic = make_runs(variant="dynamic")
    twin = make_runs({s: w / 1.25 for s, w in TRUE_WALL_S.items()}, variant="twin")
    runs = pd.concat([dynamic, twin], ignore_index=True)
    assert (stats.main_rows(runs)["variant"] == "dynamic").all()
    ratios = stats.variant_ratios(runs)
    assert [r.numerator for r in ratios] == [f"{s} dynamic" for s in TRUE_WALL_S]
    assert all(r.estimate == pytest.approx(1.25) and r.significant for r in ratios)
    assert stats.variant_ratios(make_runs()) == []  # an old runs.csv has no variant column


def test_a_large_speed_up_without_a_verdict_reads_as_times_faster():
    """'0.00× the wall time of per_item' says nothing; the inverse says how much faster."""
    from harness.analysis.stats import Ratio

    fast = Ratio("adaptive", "per_item", 1 / 1116, math.nan, math.nan)
    assert fast.phrase("per_item").startswith("1,116× faster than per_item (too few repeats")
    near = Ratio("adaptive", "static:64", 0.97, math.nan, math.nan)
    assert near.phrase("static:64").startswith("0.97× the wall time of static:64 (too few repeats")


# Sizes either side of EXACT_PAIRS_MAX (400 pairs): exact counts below, the normal approximation
# with continuity correction above; 1 x 1 and 3 x 3 are the smallest, where no verdict is possible.
EXACT_SIZES = [(1, 1), (1, 6), (3, 3), (4, 4), (4, 9), (5, 5), (8, 3), (10, 10), (12, 17), (20, 20)]
ASYMPTOTIC_SIZES = [(21, 20), (25, 25), (40, 12)]


def shifted_pairs(n: int, m: int, seed: int, trials: int = 50):
    """Continuous samples (no ties), shifted by 0 to 1 sd so the p-values span the whole range."""
    rng = np.random.default_rng([seed, n, m])
    for _ in range(trials):
        yield rng.normal(rng.uniform(0, 1), 1, n), rng.normal(0, 1, m)


@pytest.mark.parametrize(("n", "m"), EXACT_SIZES)
@pytest.mark.parametrize("alternative", ["two-sided", "greater"])
def test_mann_whitney_p_is_scipys_exact_p_without_ties(n, m, alternative):
    for a, b in shifted_pairs(n, m, seed=11):
        expected = mannwhitneyu(a, b, alternative=alternative, method="exact").pvalue
        assert stats.mann_whitney_p(a, b, alternative) == pytest.approx(expected, rel=1e-12), (a, b)


@pytest.mark.parametrize(("n", "m"), ASYMPTOTIC_SIZES)
@pytest.mark.parametrize("alternative", ["two-sided", "greater"])
def test_mann_whitney_p_above_the_exact_size_is_scipys_normal_approximation(n, m, alternative):
    assert n * m > stats.EXACT_PAIRS_MAX
    for a, b in shifted_pairs(n, m, seed=12):
        expected = mannwhitneyu(a, b, alternative=alternative, method="asymptotic", use_continuity=True).pvalue
        assert stats.mann_whitney_p(a, b, alternative) == pytest.approx(expected, rel=1e-12), (a, b)


@pytest.mark.parametrize(("n", "m"), [(3, 3), (4, 4), (5, 6), (10, 10), (12, 17)])
@pytest.mark.parametrize("alternative", ["two-sided", "greater"])
def test_with_ties_the_p_value_is_never_below_scipys_exact_one(n, m, alternative):
    """Ties count half and the tail is rounded the cautious way; scipy's exact method ignores
    ties. So a tie can only make the harness's p larger, never claim more than scipy's."""
    rng = np.random.default_rng([13, n, m])
    tied = 0
    for _ in range(100):
        a, b = rng.integers(0, 5, n).astype(float), rng.integers(0, 4, m).astype(float)
        tied += bool(np.isin(a, b).any())
        expected = mannwhitneyu(a, b, alternative=alternative, method="exact").pvalue
        assert stats.mann_whitney_p(a, b, alternative) >= expected - 1e-12, (a, b)
    assert tied >= 50  # the draws did tie


def test_an_interval_prints_with_the_digits_its_size_needs():
    tiny = stats.Ratio("adaptive", "per_item", 0.0025, 0.0022, 0.0028)  # docs/examples/large, per_item
    assert tiny.interval() == tiny.interval(3) == "[0.0022, 0.0028]"  # not "[0.00, 0.00]"
    assert stats.Ratio("a", "b", 1.03, 0.939, 1.127).interval() == "[0.94, 1.13]"  # two decimals do
    assert stats.Ratio("a", "b", 421.0, 360.2, 464.4).interval(0) == "[360, 464]"
    assert stats.Ratio("a", "b", 0.94, 0.9391, 0.9399).interval() == "[0.9391, 0.9399]"  # distinct ends differ
    assert stats.Ratio("a", "b", 1.0, 1.0, 1.0).interval() == "[1.00, 1.00]"
    assert stats.Ratio("a", "b", 1.0, 1.0, 1.0 + 1e-12).interval() == "[1.000, 1.000]"  # alike to 4 digits
