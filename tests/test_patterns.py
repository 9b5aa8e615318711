"""The dynamic-workflow patterns (harness.patterns): their options, the structure they decide
from the seed, and each one end to end on the session's real Prefect server and Dask cluster
against its static twin, with the flow runs and task runs read back from the Prefect API."""

from __future__ import annotations

import dataclasses
import math
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from harness.errors import SpecError
from harness.workload.pattern_options import QUALITY_ROUTES, VALIDATIONS, MapOptions, pattern_options
from harness.patterns import pattern_variants, run_pattern
from harness.patterns.branching import full_path_cost, plan_routes
from harness.patterns.stages import attribute_draws, choose
from harness.patterns.subflows import type_items
from harness.patterns.trace import mode_changes
from harness.workload.spec import load_spec
from harness.workload.vocabulary import Strategy
from harness.strategies import Stage
from harness.work.synthetic import Workload
from tests.conftest import spec_from_toml

WORKLOADS = Path(__file__).resolve().parent.parent / "workloads"
# Task runs reach the API through the server's task-run recorder in batches, up to ~5 s late
# (docs/runtime-notes.md, "Batched task-run recorder"); a loaded shared machine gets several times that before we call them lost.
API_RECORD_DEADLINE_S = 45.0

BASE = """
name = "p"
seed = 3
[items]
count = 50
[cost]
kind = "cpu"
mean_ms = 1.0
"""


def pattern_spec(pattern: str):
    return spec_from_toml(BASE + "[pattern]\n" + pattern)


# ------------------------------------------------------------------ options: read and refused


def test_defaults_of_each_kind():
    assert pattern_options(pattern_spec('kind = "nested_map"')).groups == 8
    branching = pattern_options(pattern_spec('kind = "branching"'))
    assert dict(branching.shares) == {"high": 0.6, "medium": 0.3, "low": 0.1}
    assert pattern_options(pattern_spec('kind = "subflows"')).cost("xml") == 2.0
    assert pattern_spec('kind = "map"').pattern == MapOptions()


def test_declared_steps_resolve_into_a_dependency_order():
    spec = spec_from_toml((WORKLOADS / "pipeline_small.toml").read_text())
    opts = pattern_options(spec)
    order = opts.order
    assert opts.built_from == "steps" and set(order) == {"extract", "clean", "enrich", "load"}
    for step in opts.steps:
        assert all(order.index(dep) < order.index(step.name) for dep in step.depends_on)
    assert opts.counted == "load"


def test_schema_builds_one_chain_of_steps_per_field():
    opts = pattern_options(load_spec(WORKLOADS / "schema_pipeline_small.toml"))
    assert opts.built_from == "schema"
    steps = {s.name: s for s in opts.steps}
    assert list(steps) == ["email.not_null", "email.email_format", "email.trim", "email.lowercase",
                           "age.not_null", "age.range"]
    assert steps["email.not_null"].depends_on == () and steps["age.not_null"].depends_on == ()
    assert steps["email.trim"].depends_on == ("email.email_format",)
    assert steps["age.range"].cost == VALIDATIONS["range"]


@pytest.mark.parametrize(
    "pattern, named",
    [
        pytest.param('kind = "nested_map"\ngroups = 0', ["[pattern] groups: found 0", "integer from 1"], id="groups"),
        pytest.param('kind = "nested_map"\nendpoints = 3', ["[pattern] endpoints: unknown key for kind 'nested_map'",
                                                             "groups, group_spread"], id="unknown-key"),
        pytest.param('kind = "branching"\nshares = { high = 0.5, medium = 0.3, low = 0.3 }',
                     ["[pattern] shares:", "summing to 1", "sum to 1.1"], id="shares-sum"),
        pytest.param('kind = "branching"\nshares = { high = 0.5, medium = 0.5 }',
                     ["[pattern] shares:", "missing low"], id="shares-missing"),
        pytest.param('kind = "branching"\ncosts = { fast = 0, standard = 1, remediation = 2 }',
                     ["[pattern] costs.fast: found 0", "a number > 0"], id="route-cost"),
        pytest.param('kind = "branching"\nflags = { audit = 1.5 }', ["[pattern] flags.audit: found 1.5"], id="flag"),
        pytest.param('kind = "subflows"\ntypes = { csv = 1.0 }\ncosts = { xml = 2.0 }',
                     ["[pattern] costs.xml", "one of csv"], id="cost-of-unknown-type"),
        pytest.param('kind = "pipeline"', ["[pattern] steps: found neither", "exactly one"], id="no-steps"),
        pytest.param('kind = "pipeline"\n[[pattern.steps]]\nname = "a"\ndepends_on = ["ghost"]',
                     ["[[pattern.steps]] #1 depends_on: found 'ghost'", "step 'a'", "expected names of declared steps: a"],
                     id="missing-dependency"),
        pytest.param('kind = "pipeline"\n[[pattern.steps]]\nname = "a"\ndepends_on = ["c"]\n'
                     '[[pattern.steps]]\nname = "b"\ndepends_on = ["a"]\n[[pattern.steps]]\nname = "c"\ndepends_on = ["b"]',
                     ["[pattern] steps: found a dependency cycle", "a", "b", "c"], id="cycle"),
        pytest.param('kind = "pipeline"\n[[pattern.steps]]\nname = "a"\n[[pattern.steps]]\nname = "a"',
                     ["[[pattern.steps]] #2 name: found 'a'", "at most once"], id="duplicate-step"),
        pytest.param('kind = "pipeline"\n[[pattern.schema]]\nname = "email"\nvalidations = ["is_email"]',
                     ["[[pattern.schema]] #1 validations: found 'is_email'", "not_null, email_format"],
                     id="unknown-validation"),
        pytest.param('kind = "pipeline"\n[[pattern.schema]]\nname = "email"',
                     ["[[pattern.schema]] #1 validations: found no validations or transformations"], id="empty-field"),
    ],
)
def test_bad_pattern_options_name_the_file_table_and_key(pattern, named):
    with pytest.raises(SpecError) as caught:
        pattern_spec(pattern)
    message = str(caught.value)
    assert message.startswith("<test>: ")
    for fragment in named:
        assert fragment in message, message


def test_a_cycle_is_bad_input_on_the_command_line(tmp_path, capsys):
    from harness.cli import main

    path = tmp_path / "cycle.toml"
    path.write_text(BASE + '[pattern]\nkind = "pipeline"\n[[pattern.steps]]\nname = "a"\ndepends_on = ["b"]\n'
                    '[[pattern.steps]]\nname = "b"\ndepends_on = ["a"]\n')
    out = tmp_path / "results"
    assert main(["run", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "cycle.toml: [pattern] steps: found a dependency cycle" in err
    assert "a -> b -> a" in err or "b -> a -> b" in err
    assert not out.exists() or not any(out.rglob("runs.csv"))


# ------------------------------------------------------------------ structure drawn from the seed


def test_attribute_draws_depend_on_the_index_only():
    indices = [5, 4097, 9000, 17]
    draws = attribute_draws(7, "x", indices)
    assert list(attribute_draws(7, "x", indices[::-1])) == list(draws[::-1])
    assert list(attribute_draws(7, "x", [9000])) == [draws[2]]
    assert list(attribute_draws(7, "y", indices)) != list(draws)
    assert all(0 <= d < 1 for d in draws)


def test_choose_follows_the_shares():
    counts = Counter(choose(attribute_draws(1, "shares", range(20_000)), [0.7, 0.2, 0.1]).tolist())
    assert sorted(counts) == [0, 1, 2]
    for k, share in enumerate([0.7, 0.2, 0.1]):
        assert abs(counts[k] / 20_000 - share) < 0.02


def test_branching_routes_every_item_once_and_reviews_only_slow_ones():
    spec = load_spec(WORKLOADS / "branching_large.toml")
    opts = pattern_options(spec)
    items = list(Workload(spec).items())
    plan = plan_routes(spec.seed, opts, items)
    routed = [i.index for route in QUALITY_ROUTES.values() for i in plan[route]]
    assert sorted(routed) == [i.index for i in items]
    fast = {i.index for i in plan["fast"]}
    assert plan["review"] and not fast & {i.index for i in plan["review"]}
    for route, share in zip(QUALITY_ROUTES.values(), dict(opts.shares).values()):
        assert abs(len(plan[route]) / len(items) - share) < 0.03
    assert {f"flag:{f}" for f, _ in opts.flags} <= set(plan)
    # a sample sees the same decisions for its items as the whole run
    sample = items[::7]
    small = plan_routes(spec.seed, opts, sample)
    assert [i.index for i in small["remediation"]] == [i.index for i in plan["remediation"] if i.index % 7 == 0]
    assert full_path_cost(opts) == 4.0 + 1.0 + 0.5 * 2


def test_subflow_types_follow_the_shares_in_declared_order():
    spec = load_spec(WORKLOADS / "subflows_large.toml")
    by_type = type_items(spec.seed, pattern_options(spec), list(Workload(spec).items()))
    assert list(by_type) == ["csv", "json", "xml", "parquet"]
    assert sum(map(len, by_type.values())) == spec.items.count
    assert len(by_type["csv"]) > len(by_type["parquet"])


def test_mode_changes_are_found_per_stage_in_time_order():
    trace = [
        {"stage": "a", "t_s": 0.1, "mode": "batched", "batch_size": 4, "reason": "start"},
        {"stage": "b", "t_s": 0.2, "mode": "inline", "batch_size": 2, "reason": "tiny"},
        {"stage": "a", "t_s": 0.4, "mode": "batched", "batch_size": 8, "reason": "grow"},
        {"stage": "a", "t_s": 0.3, "mode": "inline", "batch_size": 1, "reason": "cheap"},
    ]
    changes = mode_changes(trace)
    assert [(c["stage"], c["from"], c["to"], c["reason"]) for c in changes] == [
        ("a", "batched", "inline", "cheap"), ("a", "inline", "batched", "grow")]
    assert mode_changes([{"t_s": 1.0, "batch_size": 3}]) == []


def test_every_pattern_kind_has_options_and_a_runner():
    from harness.patterns import RUNNERS
    from harness.workload.pattern_options import PATTERN_OPTIONS

    assert set(RUNNERS) == set(PATTERN_OPTIONS) - {"map"}
    for kind, options in PATTERN_OPTIONS.items():
        assert options.__pydantic_fields__["kind"].default == kind


def test_map_has_no_twin():
    assert pattern_variants(pattern_spec('kind = "map"')) == ("dynamic",)
    assert pattern_variants(pattern_spec('kind = "subflows"')) == ("dynamic", "twin")


# ------------------------------------------------------------------ end to end on Prefect + Dask


def _fresh(path: str):
    """The workload with a name no other run uses, so its flows are ours alone on the API."""
    spec = load_spec(WORKLOADS / path)
    return dataclasses.replace(spec, name=f"{spec.name.replace('_', '-')}-{uuid.uuid4().hex[:8]}")


def _run(spec, strategy: str, variant: str, runtime):
    stage = Stage(Workload(spec), None, spec.cost.kind, spec.faults.retries, runtime.worker_threads, runtime.client)
    return run_pattern(spec, Strategy.parse(strategy), stage, runtime, variant)


def _api_runs(prefix: str, expected_tasks: int) -> tuple[list, list]:
    """Flow runs of flows whose name starts with `prefix`, and their batch task runs ("batch 0-5")
    (waiting for the task-run recorder up to the deadline)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterName,
    )

    deadline = time.monotonic() + API_RECORD_DEADLINE_S
    with get_client(sync_client=True) as client:
        flows = client.read_flows(flow_filter=FlowFilter(name=FlowFilterName(like_=prefix)), limit=200)
        names = [f.name for f in flows if f.name.startswith(prefix)]
        flow_runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=names)), limit=200)
        while True:
            task_runs: list = []
            while True:
                page = client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[r.id for r in flow_runs])),
                    task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="batch ")),
                    limit=200, offset=len(task_runs))
                task_runs.extend(page)
                if len(page) < 200:
                    break
            if len(task_runs) >= expected_tasks or time.monotonic() > deadline:
                return flow_runs, task_runs
            time.sleep(0.5)


def _batches(sizes, batch: int) -> int:
    return sum(math.ceil(n / batch) for n in sizes if n)


def _check_pair(spec, results, batch: int, dynamic_stage_sizes, twin_stage_sizes, flows: dict[str, int]):
    """Both variants: every item once, same checksum; task counts implied by the structure;
    and what the Prefect API recorded agrees with what the run says it built."""
    dynamic, twin = results["dynamic"], results["twin"]
    for result in (dynamic, twin):
        assert result.tally.items == spec.items.count and result.tally.items_failed == 0
    assert dynamic.tally.checksum == twin.tally.checksum
    assert dynamic.tasks == _batches(dynamic_stage_sizes, batch)
    assert twin.tasks == _batches(twin_stage_sizes, batch)
    assert (dynamic.flow_runs, twin.flow_runs) == (flows["dynamic"], flows["twin"])


@pytest.mark.cluster
def test_nested_map_maps_per_group_and_matches_its_flat_twin(runtime):
    spec = _fresh("nested_map_small.toml")
    results = {v: _run(spec, "static:6", v, runtime) for v in ("dynamic", "twin")}
    opts = pattern_options(spec)
    from harness.patterns.nested_map import group_weights

    weights = group_weights(spec.seed, opts.groups, opts.group_spread)
    draws = attribute_draws(spec.seed, "nested_map.group", range(spec.items.count))
    sizes = Counter(choose(draws, weights).tolist())
    assert results["dynamic"].routes.startswith(f"groups={len(sizes)};")
    _check_pair(spec, results, 6, list(sizes.values()), [spec.items.count], {"dynamic": 1, "twin": 1})
    _assert_api_matches(spec, "nested_map", results)


def _assert_api_matches(spec, kind: str, results) -> None:
    for variant, result in results.items():
        prefix = f"{spec.name}-{kind}-{variant}"
        flow_runs, task_runs = _api_runs(prefix, result.tasks)
        assert len(flow_runs) == 1, f"{prefix}: {len(flow_runs)} flow runs"
        assert flow_runs[0].state_type.value == "COMPLETED"
        assert len(task_runs) == result.tasks, f"{prefix}: {len(task_runs)} of {result.tasks} task runs recorded"


@pytest.mark.cluster
def test_branching_routes_at_run_time_and_matches_its_full_path_twin(runtime):
    spec = _fresh("branching_small.toml")
    results = {v: _run(spec, "static:5", v, runtime) for v in ("dynamic", "twin")}
    plan = plan_routes(spec.seed, pattern_options(spec), list(Workload(spec).items()))
    routes = dict(pair.split("=") for pair in results["dynamic"].routes.split(";"))
    assert {name: int(n) for name, n in routes.items()} == {name: len(items) for name, items in plan.items()}
    assert sum(len(plan[r]) for r in QUALITY_ROUTES.values()) == spec.items.count
    _check_pair(spec, results, 5, [len(v) for v in plan.values()], [spec.items.count], {"dynamic": 1, "twin": 1})
    _assert_api_matches(spec, "branching", results)
    # the twin runs more work than routing does: every item the full path
    assert results["twin"].tally.compute_s > results["dynamic"].tally.compute_s


@pytest.mark.cluster
def test_subflows_are_built_per_type_at_run_time(runtime):
    spec = _fresh("subflows_small.toml")
    results = {v: _run(spec, "static:6", v, runtime) for v in ("dynamic", "twin")}
    by_type = type_items(spec.seed, pattern_options(spec), list(Workload(spec).items()))
    sizes = [len(v) for v in by_type.values()]
    flows = {"dynamic": 1 + 2 * len(by_type), "twin": 1}
    _check_pair(spec, results, 6, sizes + sizes, [spec.items.count], flows)

    flow_runs, task_runs = _api_runs(spec.name, results["dynamic"].tasks + results["twin"].tasks)
    assert len(flow_runs) == flows["dynamic"] + flows["twin"]
    subflow_runs = [r for r in flow_runs if r.parent_task_run_id is not None]
    assert len(subflow_runs) == 2 * len(by_type)  # a transform and a load subflow per type
    # named in the Prefect UI by the run's label and their part (harness.patterns.labels)
    assert {r.name for r in subflow_runs} == {f"{spec.name}/static:6/{step}:{t}"
                                              for t in by_type for step in ("transform", "load")}
    assert {r.name for r in flow_runs if r.parent_task_run_id is None} == {f"{spec.name}/static:6",
                                                                           f"{spec.name}/static:6/twin"}
    assert all("harness" in r.tags and "strategy:static:6" in r.tags for r in flow_runs)
    assert len(task_runs) == results["dynamic"].tasks + results["twin"].tasks
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        flow_names = {client.read_flow(r.flow_id).name for r in flow_runs}
    assert flow_names == {f"{spec.name}-subflows-dynamic", f"{spec.name}-subflows-twin",
                          *(f"{spec.name}-transform-{t}" for t in by_type), *(f"{spec.name}-load-{t}" for t in by_type)}


@pytest.mark.cluster
@pytest.mark.parametrize("path, batch", [("pipeline_small.toml", 6), ("schema_pipeline_small.toml", 8)])
def test_pipeline_runs_every_step_and_matches_its_fixed_order_twin(runtime, path, batch):
    spec = _fresh(path)
    results = {v: _run(spec, f"static:{batch}", v, runtime) for v in ("dynamic", "twin")}
    steps = len(pattern_options(spec).steps)
    _check_pair(spec, results, batch, [spec.items.count] * steps, [spec.items.count] * steps,
                {"dynamic": 1, "twin": 1})
    assert results["dynamic"].routes.startswith(f"steps={steps};")
    assert "max_concurrent=2" in results["dynamic"].routes  # independent steps ran at once
    assert results["twin"].routes.endswith("max_concurrent=1")
    _assert_api_matches(spec, "pipeline", results)


@pytest.mark.cluster
def test_adaptive_pipeline_traces_each_step(runtime):
    spec = _fresh("adaptive_pipeline_small.toml")
    results = {v: _run(spec, "adaptive", v, runtime) for v in ("dynamic", "twin")}
    assert results["dynamic"].tally.checksum == results["twin"].tally.checksum
    steps = {s.name for s in pattern_options(spec).steps}
    for result in results.values():
        assert result.tally.items == spec.items.count
        assert {row["stage"] for row in result.trace} == steps
        assert all(row["mode"] and row["reason"] for row in result.trace)
        for step in steps:  # each step saw every item, in rows of the controller's choosing
            assert sum(row["items"] for row in result.trace if row["stage"] == step) == spec.items.count
        assert len({row["batch_size"] for row in result.trace}) > 1
        assert {c["stage"] for c in mode_changes(result.trace)} <= steps


@pytest.mark.cluster
def test_reference_strategies_run_the_same_structure_without_flows(runtime):
    spec = _fresh("branching_small.toml")
    dynamic = _run(spec, "raw_dask:5", "dynamic", runtime)
    twin = _run(spec, "raw_dask:5", "twin", runtime)
    assert dynamic.flow_runs == twin.flow_runs == 0
    assert dynamic.tally.checksum == twin.tally.checksum and dynamic.tally.items == spec.items.count
    plan = plan_routes(spec.seed, pattern_options(spec), list(Workload(spec).items()))
    assert dynamic.tasks == _batches([len(v) for v in plan.values()], 5)


@pytest.mark.cluster
def test_run_records_both_variants_with_their_structure(runtime, tmp_path):
    """`harness run` on a pattern workload: each strategy as written and as its twin, with the
    pattern, variant, flow runs and routes columns in runs.csv and the checksums agreeing."""
    import pandas as pd

    from harness.measure.records import read_runs
    from harness.measure.run import run_workload
    from harness.workload.spec import with_overrides

    spec = with_overrides(load_spec(WORKLOADS / "nested_map_small.toml"), strategies="static:6",
                          address=runtime.scheduler_address)
    seen: list[int] = []
    folder = run_workload(spec, tmp_path, progress=lambda label, items: seen.append)
    runs = read_runs(folder)
    assert list(runs["variant"]) in (["dynamic", "twin"], ["twin", "dynamic"])
    assert set(runs["pattern"]) == {"nested_map"} and set(runs["strategy"]) == {"static:6"}
    assert runs["checksum"].nunique() == 1 and (runs["items"] == spec.items.count).all()
    assert (runs["flow_runs"] == 1).all() and runs["routes"].str.startswith("groups=").all()
    assert not pd.isna(runs["mode_changes"]).any()
    assert max(seen) == spec.items.count  # the progress line followed the counted stages


def test_shared_progress_adds_up_concurrent_stages():
    from harness.patterns.stages import SharedProgress

    reported: list[int] = []
    progress = SharedProgress(reported.append)
    a, b = progress.stage("a"), progress.stage("b")
    a(3)
    b(2)
    a(5)
    assert reported == [3, 5, 7]
    assert SharedProgress(None).stage("a") is None
