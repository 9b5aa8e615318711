"""`python -m harness compare RUN_A RUN_B`: exit 1 on a significant slow-down beyond the
threshold, 0 otherwise, 2 on bad input; run B is built by scaling run A's wall times."""

from __future__ import annotations

import pytest
from run_fixture import TRUE_WALL_S, make_runs, scaled, write_run

from harness.cli import main
from harness.compare import compare_runs
from harness.errors import SpecError


@pytest.fixture
def run_a(tmp_path):
    return write_run(tmp_path / "a")


def test_a_planted_30_percent_slowdown_exits_1(tmp_path, run_a, capsys):
    run_b = write_run(tmp_path / "b", runs=scaled(make_runs(), 1.3))
    assert main(["compare", str(run_a), str(run_b)]) == 1
    out = capsys.readouterr().out
    assert out.count("REGRESSION") == len(TRUE_WALL_S)
    assert "+30.0%" in out and "regressed: per_item" in out


def test_identical_runs_exit_0(run_a, capsys):
    assert main(["compare", str(run_a), str(run_a)]) == 0
    assert "no significant regression" in capsys.readouterr().out


def test_a_slowdown_within_the_threshold_exits_0(tmp_path, run_a):
    run_b = write_run(tmp_path / "b", runs=scaled(make_runs(), 1.3))
    assert main(["compare", str(run_a), str(run_b), "--threshold", "0.5"]) == 0


def test_a_speedup_is_not_a_regression(tmp_path, run_a):
    run_b = write_run(tmp_path / "b", runs=scaled(make_runs(), 0.7))
    result = compare_runs(run_a, run_b)
    assert not result.regressed
    assert all(c.verdict == "faster" and c.ratio.high < 1 for c in result.changes)


def test_noise_alone_is_not_a_regression(tmp_path, run_a):
    """B 30 % slower in its median but so noisy that the interval reaches below 1."""
    run_b = write_run(tmp_path / "b", runs=scaled(make_runs(spread=(-0.6, -0.4, 0.0, 0.4, 0.8)), 1.3))
    result = compare_runs(run_a, run_b)
    assert all(c.ratio.estimate == pytest.approx(1.3) for c in result.changes)
    assert not result.regressed


def test_strategies_in_one_run_only_are_listed_not_compared(tmp_path, run_a, capsys):
    walls = {s: w for s, w in TRUE_WALL_S.items() if s != "joblib_auto"} | {"static:64": 3.0}
    run_b = write_run(tmp_path / "b", runs=make_runs(walls))
    assert main(["compare", str(run_a), str(run_b)]) == 0
    out = capsys.readouterr().out
    assert "only in A (not compared): joblib_auto" in out and "only in B (not compared): static:64" in out


@pytest.mark.parametrize("case", ["missing folder", "no runs.csv", "not a csv"])
def test_bad_input_exits_2_and_names_the_folder(tmp_path, run_a, capsys, case):
    bad = tmp_path / "bad"
    if case != "missing folder":
        bad.mkdir()
    if case == "not a csv":
        (bad / "runs.csv").write_text("nothing,here\n")
    assert main(["compare", str(run_a), str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err
    with pytest.raises(SpecError):
        compare_runs(run_a, bad)


def test_a_negative_threshold_is_bad_input(run_a, capsys):
    assert main(["compare", str(run_a), str(run_a), "--threshold", "-0.1"]) == 2
    assert "--threshold" in capsys.readouterr().err
