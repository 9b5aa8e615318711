"""Data-driven pipelines: a DAG of steps declared in the workload file (`depends_on`), or
built from a schema (each field's validations and transformations as a chain of steps). At run
time the flow resolves the dependencies and starts every step whose dependencies are done, so
independent steps run concurrently. Every step maps over all the items. Static twin: the same
steps hard-wired one after another in a fixed order.

With the `adaptive` strategy and drift phases this is also the *adaptive pipeline*: each step's
controller changes batch size and mode as the cost drifts; trace.csv labels every row with its
`stage` (the step) and `mode_changes` in runs.csv counts the switches."""

from __future__ import annotations

import contextvars
import graphlib
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from harness.workload.pattern_options import PipelineOptions, Step
from harness.patterns.stages import (MAX_CONCURRENT_STAGES, Fold, PatternRun, describe_counts, is_prefect, launch,
                                     pattern_flow, run_stage, scaled, sub_stage)
from harness.strategies import StageResult
from harness.work.synthetic import Item


def _run_step(run: PatternRun, items: list[Item], step: Step) -> StageResult:
    items = scaled(items, step.cost)
    counted = step.name == run.options.counted
    stage = run.counted_stage(items, step.name) if counted else sub_stage(run.stage, items, step.name)
    return run_stage(run.strategy, stage, run.t0)


def run_dag(run: PatternRun, items: list[Item], fold: Fold) -> int:
    """Start each step as soon as its dependencies are done; return the most run at once."""
    opts: PipelineOptions = run.options
    steps = {s.name: s for s in opts.steps}
    sorter = graphlib.TopologicalSorter({s.name: s.depends_on for s in opts.steps})
    sorter.prepare()
    running: dict[Future[StageResult], str] = {}
    most = 0
    with ThreadPoolExecutor(MAX_CONCURRENT_STAGES, thread_name_prefix="step") as pool:
        while sorter.is_active():
            for name in sorter.get_ready():
                ctx = contextvars.copy_context()  # Prefect's flow run context, for task submits
                running[pool.submit(ctx.run, _run_step, run, items, steps[name])] = name
            most = max(most, len(running))
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                fold.add(future.result(), counted=name == opts.counted)
                sorter.done(name)
    return most


def _body(run: PatternRun) -> StageResult:
    fold = Fold(run.t0)
    opts: PipelineOptions = run.options
    items = list(run.stage.iter_items())
    if run.variant == "dynamic":
        most = run_dag(run, items, fold)
    else:
        steps = {s.name: s for s in opts.steps}
        for name in opts.order:
            fold.add(_run_step(run, items, steps[name]), counted=name == opts.counted)
        most = 1
    counts = {"steps": len(opts.steps), "max_concurrent": most}
    return fold.result(flow_runs=int(is_prefect(run.strategy)), routes=describe_counts(counts))


pipeline_flow = pattern_flow("pipeline")


def run_pipeline(run: PatternRun) -> StageResult:
    return launch(pipeline_flow, _body, run)
