"""Conditional branching: each item's quality is assessed at run time and routes it to a path
of its own cost (high -> fast track, medium -> standard, low -> remediation); a second decision
point sends a share of the non-fast items to review; per-item feature flags switch optional
steps on. Static twin: no decisions, every item runs the full path (remediation, review and
every flag's step) as one flat map."""

from __future__ import annotations

from harness.workload.pattern_options import QUALITY_ROUTES, BranchingOptions
from harness.patterns.stages import (Fold, PatternRun, attribute_draws, choose, describe_counts, is_prefect, launch,
                                     pattern_flow, run_concurrently, run_stage, scaled, sub_stage)
from harness.strategies import StageResult
from harness.work.synthetic import Item


def plan_routes(seed: int, options: BranchingOptions, items: list[Item]) -> dict[str, list[Item]]:
    """Every decision, from the seed: {step name: its items}, route steps first (each item in
    exactly one), then "review", then one step per feature flag. Costs not yet applied."""
    indices = [item.index for item in items]
    qualities = [q for q, _ in options.shares]
    quality = choose(attribute_draws(seed, "branching.quality", indices), [s for _, s in options.shares])
    review = attribute_draws(seed, "branching.review", indices) < options.review_share
    plan: dict[str, list[Item]] = {route: [] for route in QUALITY_ROUTES.values()}
    plan["review"] = []
    for item, q, escalate in zip(items, quality.tolist(), review.tolist()):
        route = QUALITY_ROUTES[qualities[q]]
        plan[route].append(item)
        if route != "fast" and escalate:
            plan["review"].append(item)
    for flag, share in options.flags:
        on = attribute_draws(seed, f"branching.flag.{flag}", indices) < share
        plan[f"flag:{flag}"] = [item for item, enabled in zip(items, on.tolist()) if enabled]
    return plan


def full_path_cost(options: BranchingOptions) -> float:
    """The cost factor of the twin's path: the dearest route, the review and every flag step."""
    return max(c for _, c in options.costs) + options.review_cost + options.flag_cost * len(options.flags)


def _body(run: PatternRun) -> StageResult:
    fold = Fold(run.t0)
    opts: BranchingOptions = run.options
    items = list(run.stage.iter_items())
    plan = plan_routes(run.spec.seed, opts, items)
    costs = dict(opts.costs)
    if run.variant == "dynamic":
        routes = [run.counted_stage(scaled(plan[r], costs[r]), r) for r in QUALITY_ROUTES.values()]
        for result in run_concurrently([lambda s=s: run_stage(run.strategy, s, run.t0) for s in routes]):
            fold.add(result, counted=True)
        optional = [sub_stage(run.stage, scaled(plan["review"], opts.review_cost), "review")]
        optional += [sub_stage(run.stage, scaled(plan[f"flag:{f}"], opts.flag_cost), f"flag:{f}") for f, _ in opts.flags]
        for result in run_concurrently([lambda s=s: run_stage(run.strategy, s, run.t0) for s in optional]):
            fold.add(result, counted=False)
        counts = {name: len(members) for name, members in plan.items()}
    else:
        full = run.counted_stage(scaled(items, full_path_cost(opts)), "full_path")
        fold.add(run_stage(run.strategy, full, run.t0), counted=True)
        counts = {"full_path": len(items)}
    return fold.result(flow_runs=int(is_prefect(run.strategy)), routes=describe_counts(counts))


branching_flow = pattern_flow("branching")


def run_branching(run: PatternRun) -> StageResult:
    return launch(branching_flow, _body, run)
