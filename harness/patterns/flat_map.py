"""Basic dynamic task mapping: one flat map over items discovered at run time."""

from __future__ import annotations

from typing import Any

from harness.patterns.labels import RunLabel
from harness.patterns.stages import call_flow, pattern_flow, strategy_parameters
from harness.workload.vocabulary import Strategy
from harness.strategies import Stage, StageResult, execute

mapped_stage = pattern_flow("map")


def _execute(job: tuple[Strategy, Stage]) -> StageResult:
    return execute(*job)


def run_map(strategy: Strategy, stage: Stage, runtime: Any, flow_name: str,
            label: RunLabel | None = None) -> StageResult:
    """Run the stage as one flow on the Dask task runner (reference strategies run bare); its
    flow run is named and tagged by `label` (README, "Browsing runs in the Prefect UI")."""
    if not strategy.needs_flow:
        return execute(strategy, stage)
    with runtime.submitting():
        result = call_flow(mapped_stage, _execute, (strategy, stage), runtime, flow_name, label=label,
                           parameters=strategy_parameters(strategy, stage.items))
    result.flow_runs = 1
    return result
