"""The ratio interval claims 95 %: at the repeats the product uses, no-change pairs are flagged
at most 5 % of the time and known changes are covered at least 95 % of the time (within
Monte-Carlo error), and too few repeats claim nothing. Simulation in tests/calibration.py."""

from __future__ import annotations

import time

import pytest
from calibration import IQR_FRACTIONS, REPEATS, calibrate, render

from harness.analysis import stats


@pytest.mark.parametrize("n", REPEATS)
@pytest.mark.parametrize("iqr", IQR_FRACTIONS)
def test_false_positives_and_coverage_are_at_least_nominal(n, iqr):
    cell = calibrate(n, iqr)
    if n < stats.repeats_needed():
        assert not cell.verdicts and cell.false_positive_rate == 0
        return
    assert cell.verdicts
    assert cell.false_positive_rate <= stats.ALPHA + cell.mc_slack()
    assert cell.coverage >= stats.CONFIDENCE - cell.mc_slack()


def test_a_30_percent_change_is_caught_at_ten_repeats_on_a_quiet_machine():
    assert calibrate(10, 0.05).power > 0.99


def test_the_whole_calibration_is_fast_and_prints_its_table(capsys):
    t0 = time.perf_counter()
    from calibration import table
    text = render(table())
    assert time.perf_counter() - t0 < 10
    print(text)  # shown with -s: the figures README quotes
    assert text.count("\n|") == 2 + len(REPEATS) * len(IQR_FRACTIONS)


def test_three_repeats_say_how_many_a_verdict_needs():
    r = stats.ratio("a", [1.0, 1.1, 1.2], "b", [2.0, 2.1, 2.2])
    assert not r.has_interval and not r.significant
    assert r.label == f"too few repeats for a verdict (need ≥ {stats.repeats_needed()})"
    assert stats.repeats_needed() == 4  # 2 / C(8, 4) = 0.029 <= 0.05; 2 / C(6, 3) = 0.1 is not
