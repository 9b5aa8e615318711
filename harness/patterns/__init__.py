"""Flow shapes: each pattern builds the Prefect flow for one workload and runs a strategy in
each of its mapping stages. One module per pattern; `run_pattern` picks it by `[pattern] kind`.

Every kind but "map" also has a static twin (`variant="twin"`): the same work on the same
items with its structure fixed before the run, so a run can report dynamic / twin.

Adding a pattern (README "Extending: a new pattern"): its module here, its options model in
harness.workload.pattern_options, and one line in `RUNNERS` below.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from harness.patterns.labels import RunLabel  # pure, no Prefect

if TYPE_CHECKING:  # at run time this package must stay light: harness.workload.spec imports its options
    from harness.workload.spec import WorkloadSpec
    from harness.workload.vocabulary import Strategy
    from harness.strategies import Stage, StageResult

VARIANTS = ("dynamic", "twin")

# The runner of each non-map kind, "module:function" in this package, imported when first run
# (the pattern modules import Prefect). Each runner takes a stages.PatternRun.
RUNNERS = {
    "nested_map": "nested_map:run_nested_map",
    "branching": "branching:run_branching",
    "subflows": "subflows:run_subflows",
    "pipeline": "pipeline:run_pipeline",
}


def pattern_variants(spec: WorkloadSpec) -> tuple[str, ...]:
    """The variants a run measures: the flat map has no twin (it is its own static form)."""
    return ("dynamic",) if spec.pattern.kind == "map" else VARIANTS


def run_pattern(spec: WorkloadSpec, strategy: Strategy, stage: Stage, runtime: Any,
                variant: str = "dynamic", label: RunLabel | None = None) -> StageResult:
    """Run `stage` with `strategy` in the workload's pattern; `label` names and tags its flow
    runs (default: "<workload>/<strategy>", tagged with both)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    kind = spec.pattern.kind
    if label is None:
        label = RunLabel(spec.name, str(strategy), variant=variant)
    if kind == "map":
        from harness.patterns.flat_map import run_map

        return run_map(strategy, stage, runtime, flow_name=f"{spec.name}-map", label=label)

    from harness.patterns.stages import PatternRun

    module, function = RUNNERS[kind].split(":")
    runner = getattr(importlib.import_module(f"harness.patterns.{module}"), function)
    return runner(PatternRun(spec, spec.pattern, strategy, stage, runtime, variant, label))
