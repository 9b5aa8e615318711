"""harness.workload.spec: the workload file contract and the command-line overrides of it."""

from __future__ import annotations

import dataclasses

import pytest

from harness.errors import SpecError
from harness.workload.pattern_options import NestedMapOptions, PipelineOptions, Step
from harness.workload.spec import (
    ClusterSpec,
    CostSpec,
    FaultSpec,
    ItemsSpec,
    Phase,
    RunSpec,
    Strategy,
    WorkloadSpec,
    load_spec,
    parse_spec,
    parse_strategy,
    strategies_to_run,
    with_overrides,
)

FULL = """
name = "large-2"
description = "a drifting lognormal load"
seed = 7

[items]
count = 200_000
payload_bytes = 256

[cost]
kind = "cpu"
mean_ms = 0.2
distribution = "lognormal"
spread = 1.5
heavy_fraction = 0.1
heavy_ms = 20

[[cost.phases]]
at = 0.25
mean_ms = 2

[[cost.phases]]
at = 0.5
mean_ms = 0.1

[faults]
transient_rate = 0.01
permanent_rate = 0.001
retries = 5

[pattern]
kind = "nested_map"
groups = 10
group_spread = 0.5

[cluster]
workers = 4
threads_per_worker = 2
address = "tcp://127.0.0.1:8786"

[run]
strategies = ["per_item", "static:64", "adaptive", "raw_dask:128", "joblib_auto"]
sweep = [1, 16, 64, 4096]
repeats = 5
"""


def toml_text(
    top: str = 'name = "w"\nseed = 1',
    items: str = "count = 10",
    cost: str = 'kind = "cpu"\nmean_ms = 1.0',
    rest: str = "",
) -> str:
    """A minimal valid workload, with any of its parts replaced; `rest` follows [cost]."""
    return f"{top}\n[items]\n{items}\n[cost]\n{cost}\n{rest}\n"


def write(tmp_path, text: str, name: str = "bad.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_full_file_round_trips_into_the_expected_spec(tmp_path):
    path = write(tmp_path, FULL, "full.toml")
    expected = WorkloadSpec(
        name="large-2",
        seed=7,
        items=ItemsSpec(count=200_000, payload_bytes=256),
        cost=CostSpec(
            kind="cpu",
            mean_ms=0.2,
            distribution="lognormal",
            spread=1.5,
            heavy_fraction=0.1,
            heavy_ms=20.0,
            phases=(Phase(0.25, 2.0), Phase(0.5, 0.1)),
        ),
        faults=FaultSpec(transient_rate=0.01, permanent_rate=0.001, retries=5),
        pattern=NestedMapOptions(groups=10, group_spread=0.5),
        cluster=ClusterSpec(workers=4, threads_per_worker=2, address="tcp://127.0.0.1:8786"),
        run=RunSpec(
            strategies=(
                Strategy("per_item"),
                Strategy("static", 64),
                Strategy("adaptive"),
                Strategy("raw_dask", 128),
                Strategy("joblib_auto"),
            ),
            sweep=(1, 16, 64, 4096),
            repeats=5,
        ),
        description="a drifting lognormal load",
        source=str(path),
    )
    spec = load_spec(path)
    assert spec == expected
    assert isinstance(spec.cost.heavy_ms, float) and isinstance(spec.cost.phases[0].mean_ms, float)
    hash(spec)  # frozen all the way down, pattern options included


def test_minimal_file_gets_the_dataclass_defaults(tmp_path):
    path = write(tmp_path, toml_text(), "min.toml")
    assert load_spec(str(path)) == WorkloadSpec(
        name="w", seed=1, items=ItemsSpec(10), cost=CostSpec("cpu", 1.0), source=str(path)
    )


def test_parse_spec_names_its_source_and_defaults_to_string():
    assert parse_spec(toml_text()).source == "<string>"
    with pytest.raises(SpecError, match="^inline: "):
        parse_spec(toml_text(items="count = 0"), "inline")


@pytest.mark.parametrize(
    "distribution, spread",
    [("uniform", "1"), ("lognormal", "4.0"), ("pareto", "1.01"), ("constant", "1000"), ("bimodal", "0.1")],
)
def test_spread_at_the_edges_of_each_distribution_is_accepted(distribution, spread):
    cost = f'kind = "sleep"\nmean_ms = 5\ndistribution = "{distribution}"\nspread = {spread}'
    assert parse_spec(toml_text(cost=cost)).cost.spread == float(spread)


def test_edge_values_are_accepted():
    spec = parse_spec(
        toml_text(
            top='name = "a_b-1"\nseed = 0',
            items="count = 10_000_000\npayload_bytes = 16_777_216",
            cost='kind = "sleep"\nmean_ms = 600_000\ndistribution = "bimodal"\nheavy_fraction = 1.0',
            rest="[faults]\npermanent_rate = 1.0\nretries = 0\n[run]\nsweep = []\nrepeats = 100\n"
            '[cluster]\nworkers = 256\naddress = ""',
        )
    )
    assert (spec.items.count, spec.faults.permanent_rate, spec.run.sweep) == (10_000_000, 1.0, ())


MALFORMED = [
    pytest.param({"top": 'name = "w"\nseed = = 1'}, ["invalid TOML", "line 2"], id="toml-syntax"),
    pytest.param(
        {"top": 'name = "w"\nseed = 1\ncolour = "red"'},
        ["[top level] colour: unknown key", "expected one of: name, description, seed, [items]"],
        id="unknown-top-level-key",
    ),
    pytest.param(
        {"cost": 'kind = "cpu"\nmean = 1.0'},
        ["[cost] mean: unknown key (did you mean 'mean_ms'?)", "expected one of: kind, mean_ms, distribution"],
        id="unknown-key-in-cost",
    ),
    pytest.param(
        {"rest": "[itemz]\ncount = 1"},
        ["[itemz]: unknown table (did you mean '[items]'?)", "expected one of: [items], [cost], [faults]"],
        id="unknown-table",
    ),
    pytest.param(
        {"cost": 'kind = "cpu"\nmean_ms = 1\n[cost.extra]\nx = 1'},
        ["[cost] extra: unknown key", "expected one of: kind"],
        id="unknown-subtable",
    ),
    pytest.param(
        {"items": 'count = "abc"'},
        ["[items] count: found 'abc' (string), expected an integer from 1 to 10_000_000"],
        id="string-for-int",
    ),
    pytest.param(
        {"top": 'name = "w"\nseed = true'},
        ["[top level] seed: found true (boolean), expected an integer >= 0"],
        id="bool-for-int",
    ),
    pytest.param(
        {"items": "count = 1.5"}, ["[items] count: found 1.5 (float), expected an integer"], id="float-for-int"
    ),
    pytest.param(
        {"cost": 'kind = "cpu"\nmean_ms = true'},
        ["[cost] mean_ms: found true (boolean), expected a number > 0"],
        id="bool-for-float",
    ),
    pytest.param({"items": "count = 0"}, ["[items] count: found 0, expected an integer from 1 to"], id="count-0"),
    pytest.param(
        {"items": "count = 10_000_001"},
        ["[items] count: found 10000001, expected an integer from 1 to 10_000_000"],
        id="count-too-big",
    ),
    pytest.param(
        {"items": "count = 5\npayload_bytes = 16_777_217"},
        ["[items] payload_bytes: found 16777217", "from 0 to 16_777_216 (16 MiB)"],
        id="payload-too-big",
    ),
    pytest.param(
        {"cost": 'kind = "cpu"\nmean_ms = -1'},
        ["[cost] mean_ms: found -1, expected a number > 0 and <= 600_000"],
        id="negative-mean-ms",
    ),
    pytest.param(
        {"cost": 'kind = "cpu"\nmean_ms = nan'}, ["[cost] mean_ms: found nan, expected a number > 0"], id="nan-mean-ms"
    ),
    pytest.param(
        {"cost": 'kind = "gpu"\nmean_ms = 1'},
        ["[cost] kind: found 'gpu' (string), expected one of 'cpu', 'sleep'"],
        id="bad-cost-kind",
    ),
    pytest.param(
        {"cost": 'kind = "cpu"\nmean_ms = 1\ndistribution = "normal"'},
        ["[cost] distribution: found 'normal' (string)", "one of 'constant', 'uniform', 'lognormal', 'pareto'"],
        id="bad-distribution",
    ),
    pytest.param(
        {"cost": 'kind = "cpu"\nmean_ms = 1\ndistribution = "pareto"\nspread = 1'},
        ["[cost] spread: found 1.0, expected a number > 1 and <= 100 (pareto: alpha)"],
        id="pareto-spread-1",
    ),
    pytest.param(
        {"cost": 'kind = "cpu"\nmean_ms = 1\ndistribution = "pareto"'},
        ["[cost] spread: missing, expected a number > 1", "'pareto' needs it"],
        id="pareto-without-spread",
    ),
    pytest.param(
        {"cost": 'kind = "cpu"\nmean_ms = 1\ndistribution = "uniform"\nspread = 1.5'},
        ["[cost] spread: found 1.5, expected a number > 0 and <= 1 (uniform: half-width"],
        id="uniform-spread-above-1",
    ),
    pytest.param(
        {"cost": 'kind = "cpu"\nmean_ms = 1\ndistribution = "lognormal"\nspread = 4.5'},
        ["[cost] spread: found 4.5, expected a number > 0 and <= 4 (lognormal: sigma)"],
        id="lognormal-spread-above-4",
    ),
    pytest.param(
        {"cost": 'kind = "cpu"\nmean_ms = 1\nspread = 0'},
        ["[cost] spread: found 0, expected a number > 0"],
        id="spread-0",
    ),
    pytest.param(
        {"cost": 'kind = "cpu"\nmean_ms = 1\nheavy_fraction = 1.5'},
        ["[cost] heavy_fraction: found 1.5, expected a number >= 0 and <= 1"],
        id="heavy-fraction-above-1",
    ),
    pytest.param(
        {"rest": "[[cost.phases]]\nat = 0.5\nmean_ms = 2\n[[cost.phases]]\nat = 0.3\nmean_ms = 1"},
        ["[[cost.phases]] #2 at: found 0.3, expected a number > 0.5", "increasing order"],
        id="phases-out-of-order",
    ),
    pytest.param(
        {"rest": "[[cost.phases]]\nat = 1.0\nmean_ms = 2"},
        ["[[cost.phases]] #1 at: found 1.0, expected a number > 0 and < 1"],
        id="phase-at-1",
    ),
    pytest.param(
        {"rest": "[[cost.phases]]\nat = 0.5\nmean_ms = 2\nweight = 3"},
        ["[[cost.phases]] #1 weight: unknown key", "expected one of: at, mean_ms"],
        id="unknown-key-in-phase",
    ),
    pytest.param(
        {"rest": "[[cost.phases]]\nat = 0.5"},
        ["[[cost.phases]] #1 mean_ms: missing", "expected a number > 0"],
        id="phase-without-mean-ms",
    ),
    pytest.param(
        {"rest": "[cost.phases]\nat = 0.5\nmean_ms = 2"},
        ["[cost] phases: found a table, expected an array of tables ([[cost.phases]])"],
        id="phases-single-brackets",
    ),
    pytest.param(
        {"rest": "[faults]\ntransient_rate = 1.0"},
        ["[faults] transient_rate: found 1.0, expected a number >= 0 and < 1"],
        id="transient-rate-1",
    ),
    pytest.param(
        {"rest": "[faults]\nretries = 101"},
        ["[faults] retries: found 101, expected an integer from 0 to 100"],
        id="retries-too-many",
    ),
    pytest.param(
        {"rest": '[pattern]\nkind = "fanout"'},
        ["[pattern] kind: found 'fanout' (string), expected one of 'map', 'nested_map', 'branching'"],
        id="bad-pattern-kind",
    ),
    pytest.param(
        {"rest": '[pattern]\nkind = "map"\ngroups = 4'},
        ["[pattern] groups: unknown key for kind 'map', expected only: kind"],
        id="extra-key-for-pattern-map",
    ),
    pytest.param(
        {"rest": "[cluster]\nworkers = 0"},
        ["[cluster] workers: found 0, expected an integer from 1 to 256"],
        id="workers-0",
    ),
    pytest.param(
        {"rest": '[cluster]\naddress = "localhost:8786"'},
        ["[cluster] address: found 'localhost:8786' (string)", '"tcp://127.0.0.1:8786"'],
        id="bad-address",
    ),
    pytest.param(
        {"rest": '[run]\nstrategies = ["fastest"]'},
        [
            "[run] strategies: found 'fastest' (unknown strategy 'fastest')",
            "expected one of per_item, adaptive, adaptive_warm, joblib_auto, static:N, raw_dask:N (N an integer >= 1)",
        ],
        id="bad-strategy-name",
    ),
    pytest.param(
        {"rest": '[run]\nstrategies = ["static"]'},
        ["[run] strategies: found 'static' (static needs a batch size, e.g. 'static:64')", "static:N"],
        id="static-without-size",
    ),
    pytest.param(
        {"rest": '[run]\nstrategies = ["static:0"]'},
        ["[run] strategies: found 'static:0' (the batch size must be an integer >= 1)"],
        id="static-0",
    ),
    pytest.param(
        {"rest": '[run]\nstrategies = ["adaptive:8"]'},
        ["[run] strategies: found 'adaptive:8' (adaptive takes no batch size)"],
        id="size-on-unsized-strategy",
    ),
    pytest.param(
        {"rest": '[run]\nstrategies = ["static:64", "adaptive", "static:64"]'},
        ["[run] strategies: found 'static:64' twice, expected each strategy at most once"],
        id="duplicate-strategy",
    ),
    pytest.param(
        {"rest": "[run]\nstrategies = []"},
        ["[run] strategies: found [] (array), expected a non-empty array of strategy names"],
        id="no-strategies",
    ),
    pytest.param(
        {"rest": "[run]\nstrategies = [64]"},
        ["[run] strategies: found 64 (integer), expected a strategy name"],
        id="strategy-not-a-string",
    ),
    pytest.param(
        {"rest": "[run]\nsweep = [1, 0]"},
        ["[run] sweep #2: found 0, expected an integer from 1 to 9_223_372_036_854_775_807"],
        id="sweep-with-0",
    ),
    pytest.param(
        {"rest": "[run]\nsweep = [16, 16]"},
        ["[run] sweep: found 16 twice, expected each value at most once"],
        id="sweep-duplicate",
    ),
    pytest.param(
        {"rest": "[run]\nrepeats = 0"}, ["[run] repeats: found 0, expected an integer from 1 to 100"], id="repeats-0"
    ),
    pytest.param(
        {"top": "seed = 1"},
        ["[top level] name: missing (a required key), expected a name of lower-case letters"],
        id="missing-name",
    ),
    pytest.param(
        {"top": 'name = "My Load"\nseed = 1'},
        ["[top level] name: found 'My Load' (string)", "[a-z0-9_-]+"],
        id="bad-name-characters",
    ),
    pytest.param(
        {"top": 'name = "w"\nseed = 1\nfaults = 5'},
        ["[faults]: found 5 (integer), expected a table"],
        id="table-given-as-value",
    ),
    pytest.param(
        {"items": "payload_bytes = 1"},
        ["[items] count: missing (a required key), expected an integer from 1 to 10_000_000"],
        id="missing-count",
    ),
]


@pytest.mark.parametrize("parts, expected", MALFORMED)
def test_malformed_file_is_rejected_with_an_actionable_message(tmp_path, parts, expected):
    path = write(tmp_path, toml_text(**parts))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    for text in expected:
        assert text in message


TASK = 'name = "w"\n[items]\nsource = "m:items"\n[task]\nfunction = "m:fetch"\n'


def test_task_max_concurrency_is_an_optional_integer_of_at_least_1():
    """Parsing only: whether the function is async (a plain one is refused) needs it imported
    (tests/test_user_task.py)."""
    assert parse_spec(TASK, "w.toml").task.max_concurrency is None
    assert parse_spec(TASK + "max_concurrency = 3\n", "w.toml").task.max_concurrency == 3
    for value, found in (("0", "found 0,"), ('"3"', "found '3' (string),")):
        with pytest.raises(SpecError) as caught:
            parse_spec(TASK + f"max_concurrency = {value}\n", "w.toml")
        assert str(caught.value).startswith(f"w.toml: [task] max_concurrency: {found} expected an integer >= 1")


def test_missing_required_table_names_its_first_required_key():
    with pytest.raises(SpecError, match=r"^x\.toml: \[cost\] kind: missing"):
        parse_spec('name = "w"\nseed = 1\n[items]\ncount = 1\n', "x.toml")


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(SpecError, match=r"nope\.toml: no such workload file"):
        load_spec(path)


def test_unreadable_file_is_named(tmp_path):
    with pytest.raises(SpecError, match="cannot read the workload file"):
        load_spec(tmp_path)  # a directory


def test_non_utf8_file_is_named(tmp_path):
    path = tmp_path / "latin.toml"
    path.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(SpecError, match=r"latin\.toml: not UTF-8"):
        load_spec(path)


def test_pattern_options_are_typed_and_frozen():
    text = toml_text(
        rest='[pattern]\nkind = "pipeline"\n[[pattern.steps]]\nname = "b"\ndepends_on = ["a"]\n'
        '[[pattern.steps]]\nname = "a"\n'
    )
    spec = parse_spec(text)
    pattern = spec.pattern
    assert pattern == PipelineOptions(steps=(Step("b", depends_on=("a",)), Step("a")))
    assert (pattern.built_from, pattern.order) == ("steps", ("a", "b"))
    assert dataclasses.replace(spec, name="other").pattern == pattern  # a resolved pattern passes as it is
    hash(pattern)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("per_item", Strategy("per_item")),
        ("adaptive", Strategy("adaptive")),
        ("adaptive_warm", Strategy("adaptive_warm")),
        ("joblib_auto", Strategy("joblib_auto")),
        (" static:64 ", Strategy("static", 64)),
        ("raw_dask:1", Strategy("raw_dask", 1)),
    ],
)
def test_parse_strategy_accepts_the_valid_forms(text, expected):
    assert parse_strategy(text, "--strategies") == expected
    assert str(expected) == text.strip()


@pytest.mark.parametrize(
    "text, problem",
    [
        ("per-item", "did you mean 'per_item'?"),
        ("static", "static needs a batch size"),
        ("raw_dask:", "the batch size must be an integer >= 1"),
        ("static:-3", "the batch size must be an integer >= 1"),
        ("static:2.5", "the batch size must be an integer >= 1"),
        ("per_item:4", "per_item takes no batch size"),
        ("", "an empty name"),
    ],
)
def test_parse_strategy_rejects_bad_text_naming_where_and_the_valid_forms(text, problem):
    with pytest.raises(SpecError) as caught:
        parse_strategy(text, "--strategies")
    message = str(caught.value)
    assert message.startswith(f"--strategies: found {text!r} (")
    assert problem in message
    assert "per_item, adaptive, adaptive_warm, joblib_auto, static:N, raw_dask:N" in message


def test_strategies_to_run_appends_the_sweep_without_duplicates():
    text = toml_text(rest='[run]\nstrategies = ["per_item", "static:64", "adaptive"]\nsweep = [1, 64, 256]')
    names = [str(s) for s in strategies_to_run(parse_spec(text))]
    assert names == ["per_item", "static:64", "adaptive", "static:1", "static:256"]


def test_with_overrides_replaces_strategies_repeats_and_address():
    spec = parse_spec(FULL)
    new = with_overrides(spec, strategies="per_item, raw_dask:8", repeats=2, address="tls://sched:8786")
    assert new.run.strategies == (Strategy("per_item"), Strategy("raw_dask", 8))
    assert (new.run.repeats, new.run.sweep) == (2, spec.run.sweep)
    assert new.cluster == dataclasses.replace(spec.cluster, address="tls://sched:8786")
    assert spec.run.repeats == 5  # the original is untouched
    assert with_overrides(spec) == spec
    assert with_overrides(spec, address="").cluster.address == ""


def test_with_overrides_quick_means_one_repeat_and_no_sweep():
    spec = with_overrides(parse_spec(FULL), quick=True, repeats=4)
    assert (spec.run.repeats, spec.run.sweep) == (1, ())
    assert [str(s) for s in strategies_to_run(spec)][-1] == "joblib_auto"


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"strategies": "per_item,,adaptive"}, "--strategies: found '' (an empty name)"),
        ({"strategies": ""}, "--strategies: found '' (an empty name)"),
        ({"strategies": "static"}, "--strategies: found 'static' (static needs a batch size"),
        ({"strategies": "adaptive,adaptive"}, "--strategies: found 'adaptive' twice"),
        ({"repeats": 0}, "--repeats: found 0, expected an integer from 1 to 100"),
        ({"repeats": 101}, "--repeats: found 101, expected an integer from 1 to 100"),
        ({"repeats": True}, "--repeats: found true (boolean), expected an integer"),
        ({"address": "127.0.0.1:8786"}, "--dask-address: found '127.0.0.1:8786' (string), expected"),
        ({"address": "tcp://"}, "--dask-address: found 'tcp://' (string)"),
    ],
)
def test_with_overrides_rejects_bad_values_naming_the_option(kwargs, expected):
    with pytest.raises(SpecError) as caught:
        with_overrides(parse_spec(toml_text()), **kwargs)
    assert str(caught.value).startswith(expected)
