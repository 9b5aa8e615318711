"""Flow shapes: each pattern builds the Prefect flow for one workload and runs a strategy in
each of its mapping stages. One module per pattern; `run_pattern` picks it by `[pattern] kind`.

Every kind but "map" also has a static twin (`variant="twin"`): the same work on the same
items with its structure fixed before the run, so a run can report dynamic / twin."""

from __future__ import annotations

from typing import Any

from harness.spec import StrategyName, WorkloadSpec
from harness.strategies import Stage, StageResult

VARIANTS = ("dynamic", "twin")


def pattern_variants(spec: WorkloadSpec) -> tuple[str, ...]:
    """The variants a run measures: the flat map has no twin (it is its own static form)."""
    return ("dynamic",) if spec.pattern.kind == "map" else VARIANTS


def run_pattern(spec: WorkloadSpec, strategy: StrategyName, stage: Stage, runtime: Any,
                variant: str = "dynamic") -> StageResult:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    kind = spec.pattern.kind
    if kind == "map":
        from harness.patterns.flat_map import run_map

        return run_map(strategy, stage, runtime, flow_name=f"{spec.name}-map")

    from harness.pattern_spec import pattern_options
    from harness.patterns.branching import run_branching
    from harness.patterns.nested_map import run_nested_map
    from harness.patterns.pipeline import run_pipeline
    from harness.patterns.stages import PatternRun
    from harness.patterns.subflows import run_subflows

    runners = {"nested_map": run_nested_map, "branching": run_branching, "subflows": run_subflows,
               "pipeline": run_pipeline}
    run = PatternRun(spec, pattern_options(spec), strategy, stage, runtime, variant)
    return runners[kind](run)
