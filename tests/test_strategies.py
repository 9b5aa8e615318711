"""The strategy registry as pure code: names in and out, sampling budgets, and that a new kind
is one module plus one registry line (no Prefect, no cluster)."""

from __future__ import annotations

import pandas as pd
import pytest

from harness import stats
from harness.errors import SpecError
from harness.strategies import (
    DASK_TASK_BUDGET,
    PREFECT_TASK_BUDGET,
    STATIC,
    Stage,
    StageResult,
    Strategy,
    StrategyKind,
    base,
)
from harness.workloads import Tally


@pytest.mark.parametrize("text", ["per_item", "static:64", "adaptive", "raw_dask:1", "joblib_auto"])
def test_a_name_parses_to_a_strategy_that_prints_as_the_same_name(text):
    assert str(Strategy.parse(text)) == text


def test_the_size_must_match_the_kind():
    with pytest.raises(ValueError, match="static:N"):
        Strategy("static")
    with pytest.raises(ValueError, match="per_item"):
        Strategy("per_item", 4)
    with pytest.raises(ValueError, match="unknown strategy kind 'fastest'"):
        Strategy("fastest")


@pytest.mark.parametrize(("text", "items", "measured"), [
    ("per_item", 10**6, PREFECT_TASK_BUDGET),
    ("static:64", 10**6, PREFECT_TASK_BUDGET * 64),
    ("raw_dask:8", 10**6, DASK_TASK_BUDGET * 8),
    ("static:64", 1_000, 1_000),  # under the budget: every item
    ("adaptive", 10**6, 10**6),  # chooses its own structure: always every item
    ("joblib_auto", 10**6, 10**6),
])
def test_sample_size_keeps_each_kind_within_its_task_budget(text, items, measured):
    assert Strategy.parse(text).sample_size(items) == measured


def test_only_the_prefect_kinds_need_a_flow():
    assert {k for k in base.REGISTRY.names if base.REGISTRY[k].needs_flow} == {"per_item", "static", "adaptive"}


def test_best_of_a_kind_ignores_other_kinds_and_unregistered_names():
    table = pd.DataFrame({"wall_s": [3.0, 2.0, 1.0, 0.5]}, index=["static:10", "static:100", "raw_dask:10", "static-ish"])
    assert stats.best_of(table, STATIC) == "static:100"


def execute(strategy: Strategy, stage: Stage) -> StageResult:
    """The whole of a new kind's module (here this test module): count the items, no tasks."""
    tally = Tally()
    for _ in stage.iter_items():
        tally.items_ok += 1
    return StageResult(tally, tasks=0, wall_s=0.0)


def test_a_new_kind_is_one_module_and_one_registry_line(monkeypatch):
    registry = base.Registry()
    monkeypatch.setattr(base, "REGISTRY", registry)
    registry.add(StrategyKind("counting", __name__, sized=True))  # the registry line

    strategy = Strategy.parse("counting:3", "--strategies")
    assert strategy == Strategy("counting", 3) and not strategy.needs_flow
    assert registry.forms == "counting:N (N an integer >= 1)"
    with pytest.raises(SpecError, match=r"--strategies: found 'countng' \(unknown strategy 'countng'; did you mean 'counting'\?\)"):
        Strategy.parse("countng", "--strategies")

    class FakeWorkload:
        def items(self):
            return iter(range(7))

        def __len__(self):
            return 7

    result = strategy.execute(Stage(FakeWorkload(), None, "cpu", 0, 1))  # type: ignore[arg-type]
    assert result.tally.items == 7
