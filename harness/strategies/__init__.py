"""How one mapping stage is executed: the strategies a run compares, and their registry.

Prefect strategies (`per_item`, `static:N`, `adaptive`) must run inside a flow whose task runner
is a DaskTaskRunner; the reference strategies (`raw_dask:N`, `joblib_auto`) use the Dask client
alone, no Prefect. Each kind is one module of this package with `execute(strategy, stage)`,
and one line below (README, "Extending: a new strategy").
"""

from __future__ import annotations

from harness.strategies.base import (
    DASK_TASK_BUDGET,
    PREFECT_TASK_BUDGET,
    REGISTRY,
    Stage,
    StageResult,
    Strategy,
    StrategyKind,
)

_add = REGISTRY.add
# The order is the order messages list them in.
PER_ITEM = _add(StrategyKind("per_item", "harness.strategies.per_item", needs_flow=True,
                             task_budget=PREFECT_TASK_BUDGET))
STATIC = _add(StrategyKind("static", "harness.strategies.static", sized=True, needs_flow=True,
                           task_budget=PREFECT_TASK_BUDGET))
ADAPTIVE = _add(StrategyKind("adaptive", "harness.strategies.adaptive", needs_flow=True))
RAW_DASK = _add(StrategyKind("raw_dask", "harness.strategies.raw_dask", sized=True, task_budget=DASK_TASK_BUDGET))
JOBLIB_AUTO = _add(StrategyKind("joblib_auto", "harness.strategies.joblib_auto"))

STRATEGY_KINDS = REGISTRY.names
# Kinds that take a batch size after a colon ("static:64"); the others take none.
SIZED_STRATEGY_KINDS = tuple(name for name in REGISTRY.names if REGISTRY[name].sized)
STRATEGY_FORMS = REGISTRY.forms
# Kinds that run Prefect tasks (for importers of the tuple; Strategy.needs_flow says it per strategy).
PREFECT_STRATEGIES = tuple(name for name in REGISTRY.names if REGISTRY[name].needs_flow)


def parse_strategy(text: str, where: str) -> Strategy:
    """"static:64" -> Strategy("static", 64); a SpecError naming `where` when it is not one."""
    return REGISTRY.parse(text, where)


def execute(strategy: Strategy, stage: Stage) -> StageResult:
    """Run `stage` with `strategy` (Prefect ones must be called inside a flow)."""
    return strategy.execute(stage)


__all__ = [
    "ADAPTIVE", "DASK_TASK_BUDGET", "JOBLIB_AUTO", "PER_ITEM", "PREFECT_STRATEGIES", "PREFECT_TASK_BUDGET",
    "RAW_DASK", "REGISTRY", "SIZED_STRATEGY_KINDS", "STATIC", "STRATEGY_FORMS", "STRATEGY_KINDS", "Stage",
    "StageResult", "Strategy", "StrategyKind", "execute", "parse_strategy",
]
