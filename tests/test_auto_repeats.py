"""`--repeats auto` on a tiny real workload (real Prefect API server, real Dask LocalCluster):
rounds are added until adaptive's ratios settle or the budget would be overrun, never past it
once the run has the rounds its verdicts need (before that the floor wins, and says so);
every run folder carries results.json valid against the documented schema, and runs.csv the
machine's load around each run. harness.analysis.settle's policy is tested directly, fast."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from run_fixture import make_env, make_runs

from harness.analysis import settle, stats
from harness.cli import main
from harness.measure import results_file as results
from harness.measure.machine_load import LOAD_COLUMNS

BUDGET_S = 40


def _run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.cluster
def test_auto_repeats_stop_within_the_budget_and_write_valid_results(runtime, tmp_path, make_toml, capsys):
    path = tmp_path / "tiny.toml"
    path.write_text(make_toml("tiny", count=60, mean_ms=0.3, distribution="lognormal",
                              strategies=("per_item", "static:10", "adaptive")))
    out = tmp_path / "results"
    code, stdout, err = _run_cli(["run", str(path), "--out", str(out), "--repeats", "auto", "--budget", str(BUDGET_S),
                                  "--dask-address", runtime.scheduler_address], capsys)
    assert code == 0, err
    folder = out / "tiny" / stdout.strip().splitlines()[-1].rsplit("/", 1)[-1]
    env = json.loads((folder / "env.json").read_text())
    block = env["settling"]
    assert env["repeats_requested"] == "auto" and block["budget_s"] == BUDGET_S
    assert block["rounds"] == env["repeats"] == len(block["round_s"]) >= block["floor"]  # verdicts first
    if block["rounds_s"] > BUDGET_S:  # a busy machine: the floor took the run past its budget, and said so
        assert "exceeded by" in (folder / "report.md").read_text()
    assert block["stopped_because"]
    assert "round 1" in err and f"stopping after round {block['rounds']}" in err

    runs = pd.read_csv(folder / "runs.csv")
    assert set(runs["repeat"]) == set(range(block["rounds"]))
    assert runs.groupby("strategy").size().eq(block["rounds"]).all()  # whole rounds only
    for column in LOAD_COLUMNS:
        assert runs[column].notna().all(), column
    assert env["workload_digest"] and env["cpu_model"] and env["load"]["at_start"]["load_1min"] >= 0

    document = json.loads((folder / "results.json").read_text())
    results.validate(document)
    assert document["schema"] == results.SCHEMA_ID
    assert document["settling"]["stopped_because"] == block["stopped_because"]
    assert {s["strategy"] for s in document["strategies"]} == {"per_item", "static:10", "adaptive"}
    report = (folder / "report.md").read_text()
    assert "How the repeats settled" in report and block["stopped_because"] in report


def test_results_json_of_a_fixture_run_follows_the_schema_and_carries_the_report_figures():
    runs, env = make_runs(), make_env()
    document = results.build(runs, env)
    results.validate(document)
    assert document["oracle"] == "static:50"
    by_role = {r["role"]: r for r in document["references"]}
    ratio = by_role["best static"]["ratio"]
    assert ratio["low"] <= ratio["estimate"] <= ratio["high"] and ratio["verdict"] == "significant"
    assert json.loads(json.dumps(document)) == document  # plain JSON: no NaN, no numpy


def test_a_document_missing_a_field_fails_the_schema():
    import jsonschema

    document = results.build(make_runs(), make_env())
    del document["strategies"][0]["wall_s"]
    with pytest.raises(jsonschema.ValidationError):
        results.validate(document)


def test_settling_waits_for_the_floor_then_stops_when_the_ratios_are_tight():
    quiet = make_runs(spread=(-0.002, -0.001, 0.0, 0.001, 0.002))  # IQR 0.2 %: settles once a verdict exists
    three = quiet[quiet["repeat"] < 3]
    go = settle.decide(three, [1.0] * 3, 3.0, 100.0)
    assert go.go_on and all("too few repeats" in s.why for s in go.statuses)
    stop = settle.decide(quiet, [1.0] * 5, 5.0, 100.0)
    assert not stop.go_on and stop.reason == "every ratio settled"
    assert {s.role for s in stop.statuses} == set(settle.SETTLING_ROLES)


def test_a_ratio_far_beyond_2x_settles_however_wide_and_a_wide_near_one_says_how_many_rounds():
    """adaptive is ~29x faster than per_item here: a ±40 % interval cannot turn that verdict.
    Against the best static (1.05x) the same width settles nothing, and says roughly how many
    rounds would reach the target; a run made before the decisive rule is judged as it ran."""
    noisy = make_runs(spread=(-0.3, 0.2, -0.1, 0.3, 0.0))
    by_role = {s.role: s for s in settle.ratio_statuses(noisy)}
    per_item, best = by_role["per_item"], by_role["best static"]
    assert per_item.settled and per_item.ratio.half_width > settle.TARGET_HALF_WIDTH
    assert "lies beyond 2×" in per_item.why
    assert not best.settled and "rounds would reach it" in best.why
    wanted = settle.rounds_to_target(best.ratio.half_width, 5)
    assert wanted > 5 and f"~{wanted} rounds" in best.why
    old_run = {"target_half_width": 0.05}  # env.json of a run without decisive_factor
    assert not any(s.settled for s in settle.statuses_of(noisy, old_run))


def test_settling_stops_before_a_round_that_would_overrun_the_budget():
    noisy = make_runs(spread=(-0.3, 0.2, -0.1, 0.3, 0.0))
    floor = settle.floor_rounds(noisy["strategy"].nunique())
    rounds = [10.0] * (floor - 1) + [12.0]
    spent = sum(rounds)
    decision = settle.decide(noisy, rounds, spent, spent + 10.0)  # next ~13.2 s, 10 s left
    assert not decision.go_on and decision.reason.startswith("budget")
    assert math.isclose(decision.next_round_s, 12.0 * (1 + settle.ROUND_ESTIMATE_MARGIN))
    going = settle.decide(noisy, rounds, spent, spent + 38.0)
    assert going.go_on and going.more_within_budget == 1  # 38 s left: this round and one more


def test_the_floor_wins_over_the_budget_and_says_by_how_much():
    """A slow machine: 2 rounds of 30 s spent 60 s of a 60 s budget. Stopping there would give
    no verdict and a run compare could not judge, so the run goes on to its floor, saying how
    far past the budget the next round takes it; at the floor the budget stops it."""
    noisy = make_runs(spread=(-0.3, 0.2, -0.1, 0.3, 0.0))
    floor = settle.floor_rounds(noisy["strategy"].nunique())
    early = settle.decide(noisy, [30.0, 30.0], 60.0, 60.0)
    assert early.go_on and early.more_within_budget == 0
    assert early.over_budget.startswith("past the 60 s budget by ~33 s") and f"round 3 of the {floor}" in early.over_budget
    spent = 30.0 * floor
    at_floor = settle.decide(noisy, [30.0] * floor, spent, 60.0)
    assert not at_floor.go_on
    assert at_floor.reason == f"budget: 60 s spent ({spent:.0f} s: the {floor} rounds the verdicts need came first)"
    within = settle.decide(noisy, [10.0] * floor, 10.0 * floor, 1000.0)
    assert within.over_budget == ""


def test_the_floor_is_what_a_verdict_needs():
    assert stats.repeats_needed() == 4
    assert not settle.decide(make_runs(spread=(0.0,) * 3), [1.0] * 3, 3.0, 100.0).statuses[0].settled


@pytest.mark.parametrize("args, named", [(["--budget", "-5"], "--budget"), (["--repeats", "sometimes"], "--repeats")])
def test_a_bad_budget_or_repeats_is_bad_input_before_anything_starts(tmp_path, make_toml, capsys, args, named):
    path = tmp_path / "tiny.toml"
    path.write_text(make_toml("tiny"))
    code, _, err = _run_cli(["run", str(path), "--out", str(tmp_path / "results"), *args], capsys)
    assert code == 2 and named in err and args[1] in err
    assert not (tmp_path / "results").exists()
