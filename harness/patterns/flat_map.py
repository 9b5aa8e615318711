"""Basic dynamic task mapping: one flat map over items discovered at run time."""

from __future__ import annotations

import uuid
from typing import Any

from prefect import flow

from harness.spec import StrategyName
from harness.strategies import Stage, StageResult, execute

# Stages waiting for their flow run, by key. Prefect ships the flow object and its parameters
# to the worker with every task, so the flow takes a short key, not the stage itself (which
# holds the workload and a Dask client that cannot be pickled).
_pending: dict[str, tuple[StrategyName, Stage]] = {}


def _mapped_stage(key: str) -> StageResult:
    strategy, stage = _pending[key]
    return execute(strategy, stage)


# Named apart from its function so that workers unpickle the function by reference.
mapped_stage = flow(_mapped_stage, name="map", validate_parameters=False, persist_result=False)


def run_map(strategy: StrategyName, stage: Stage, runtime: Any, flow_name: str) -> StageResult:
    """Run the stage as one flow on the Dask task runner (reference strategies run bare)."""
    if not strategy.needs_flow:
        return execute(strategy, stage)
    key = uuid.uuid4().hex
    _pending[key] = (strategy, stage)
    try:
        with runtime.submitting():
            result = mapped_stage.with_options(name=flow_name, task_runner=runtime.task_runner())(key)
    finally:
        del _pending[key]
    result.flow_runs = 1
    return result
