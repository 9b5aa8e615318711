"""Dynamic subflows: each item has a type (csv, json, xml... drawn from the seed with the
configured shares); at run time a flow factory builds one processing subflow per type present
and a registry selects it; the type subflows run in parallel, each a small pipeline composed of
its own transform and the reusable load subflow. Static twin: one monolithic flow doing the
same work (each item's transform and load cost) as one flat map."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from harness.workload.pattern_options import SubflowsOptions
from harness.patterns.stages import (Fold, PatternRun, attribute_draws, call_flow, choose, describe_counts,
                                     is_prefect, launch, pattern_flow, run_concurrently, run_stage, scaled,
                                     strategy_parameters, sub_stage)
from harness.strategies import StageResult
from harness.work.synthetic import Item


@dataclass
class TypeRun:
    """What one type's subflow processes."""

    run: PatternRun
    kind: str
    items: list[Item]


def type_items(seed: int, options: SubflowsOptions, items: list[Item]) -> dict[str, list[Item]]:
    """Each item's type, drawn from the seed: {type: items}, types in declared order."""
    names = [name for name, _ in options.types]
    kinds = choose(attribute_draws(seed, "subflows.type", [i.index for i in items]), [s for _, s in options.types])
    by_type: dict[str, list[Item]] = defaultdict(list)
    for item, k in zip(items, kinds.tolist()):
        by_type[names[k]].append(item)
    return {name: by_type[name] for name in names if by_type[name]}


def _load(job: TypeRun) -> StageResult:
    """The reusable last step of every type's pipeline."""
    stage = sub_stage(job.run.stage, scaled(job.items, job.run.options.load_cost), f"load:{job.kind}")
    return run_stage(job.run.strategy, stage, job.run.t0)


def _transform(job: TypeRun) -> tuple[StageResult, StageResult]:
    """One type's pipeline: its own transform, then the shared load subflow."""
    opts: SubflowsOptions = job.run.options
    stage = job.run.counted_stage(scaled(job.items, opts.cost(job.kind)), f"transform:{job.kind}")
    transformed = run_stage(job.run.strategy, stage, job.run.t0)
    if is_prefect(job.run.strategy):
        loaded = call_flow(load_flow, _load, job, job.run.runtime, f"{job.run.spec.name}-load-{job.kind}",
                           label=job.run.label.child(f"load:{job.kind}"),
                           parameters=strategy_parameters(job.run.strategy, len(job.items), f"load:{job.kind}"))
    else:
        loaded = _load(job)
    return transformed, loaded


load_flow = pattern_flow("load")
transform_flow = pattern_flow("transform")


def create_processing_flow(name: str, kind: str) -> Any:
    """The flow factory: a processing subflow for one item type, built at run time. (Its
    function stays stages' module-level one, so Dask workers can unpickle it; the flow object is new.)"""
    return transform_flow.with_options(name=name, description=f"transform {kind} items, then load them")


def _body(run: PatternRun) -> StageResult:
    fold = Fold(run.t0)
    opts: SubflowsOptions = run.options
    by_type = type_items(run.spec.seed, opts, list(run.stage.iter_items()))
    counts = {kind: len(items) for kind, items in by_type.items()}
    if run.variant == "twin":
        items = [item._replace(cost_ms=item.cost_ms * (opts.cost(kind) + opts.load_cost))
                 for kind, members in by_type.items() for item in members]
        fold.add(run_stage(run.strategy, run.counted_stage(items, "monolith"), run.t0), counted=True)
        return fold.result(flow_runs=int(is_prefect(run.strategy)), routes=describe_counts(counts))
    jobs = [TypeRun(run, kind, items) for kind, items in by_type.items()]
    if is_prefect(run.strategy):
        registry = {job.kind: create_processing_flow(f"{run.spec.name}-transform-{job.kind}", job.kind)
                    for job in jobs}
        calls = [lambda j=job: call_flow(registry[j.kind], _transform, j, run.runtime,
                                         label=run.label.child(f"transform:{j.kind}"),
                                         parameters=strategy_parameters(run.strategy, len(j.items),
                                                                        f"transform:{j.kind}"))
                 for job in jobs]
        flow_runs = 1 + 2 * len(jobs)  # this flow, then a transform and a load subflow per type
    else:
        calls = [lambda j=job: _transform(j) for job in jobs]
        flow_runs = 0
    for transformed, loaded in run_concurrently(calls):
        fold.add(transformed, counted=True)
        fold.add(loaded, counted=False)
    return fold.result(flow_runs=flow_runs, routes=describe_counts(counts))


subflows_flow = pattern_flow("subflows")


def run_subflows(run: PatternRun) -> StageResult:
    return launch(subflows_flow, _body, run)
