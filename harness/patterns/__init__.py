"""Flow shapes: each pattern builds the Prefect flow for one workload and runs a strategy in
each of its mapping stages. One module per pattern; `run_pattern` picks it by `[pattern] kind`."""

from __future__ import annotations

from typing import Any

from harness.errors import SpecError
from harness.spec import StrategyName, WorkloadSpec
from harness.strategies import Stage, StageResult


def run_pattern(spec: WorkloadSpec, strategy: StrategyName, stage: Stage, runtime: Any) -> StageResult:
    if spec.pattern.kind == "map":
        from harness.patterns.flat_map import run_map

        return run_map(strategy, stage, runtime, flow_name=f"{spec.name}-map")
    raise SpecError(
        f"{spec.source}: [pattern] kind: {spec.pattern.kind!r} is accepted by the schema but not "
        "implemented yet; use \"map\""
    )
