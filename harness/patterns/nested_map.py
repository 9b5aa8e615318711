"""Nested dynamic mapping: groups (services) discovered at run time, each mapped over its own
items (endpoints), the results flattened ("unmapped") into one; batching applies inside each
group. Static twin: the groups' items known up front as one flat map."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from harness.patterns.stages import (Fold, PatternRun, attribute_draws, describe_counts, is_prefect, launch,
                                     pattern_flow, run_concurrently, run_stage)
from harness.strategies import StageResult
from harness.work.synthetic import Item


def group_weights(seed: int, groups: int, spread: float) -> np.ndarray:
    """Each group's share of the items: lognormal with sigma `spread`, drawn from the seed."""
    rng = np.random.default_rng([seed, groups, 0x9E5])
    weights = np.exp(spread * rng.standard_normal(groups))
    return weights / weights.sum()


def group_items(run: PatternRun) -> dict[int, list[Item]]:
    """Discover the groups: each item's group drawn from the seed, groups in number order."""
    items = list(run.stage.iter_items())
    weights = group_weights(run.spec.seed, run.options.groups, run.options.group_spread)
    draws = attribute_draws(run.spec.seed, "nested_map.group", [i.index for i in items])
    numbers = np.minimum(np.searchsorted(np.cumsum(weights), draws, side="right"), len(weights) - 1)
    groups: dict[int, list[Item]] = defaultdict(list)
    for item, g in zip(items, numbers.tolist()):
        groups[g].append(item)
    return dict(sorted(groups.items()))


def _body(run: PatternRun) -> StageResult:
    fold = Fold(run.t0)
    groups = group_items(run)
    if run.variant == "dynamic":
        stages = [run.counted_stage(items, f"group-{g}") for g, items in groups.items()]
        results = run_concurrently([lambda s=s: run_stage(run.strategy, s, run.t0) for s in stages])
    else:  # the same items in group order, one flat map whose structure is fixed up front
        flat = [item for items in groups.values() for item in items]
        results = [run_stage(run.strategy, run.counted_stage(flat, "flat"), run.t0)]
    for result in results:
        fold.add(result, counted=True)
    counts = {"groups": len(groups), "largest": max((len(v) for v in groups.values()), default=0)}
    return fold.result(flow_runs=int(is_prefect(run.strategy)), routes=describe_counts(counts))


nested_map_flow = pattern_flow("nested_map")


def run_nested_map(run: PatternRun) -> StageResult:
    return launch(nested_map_flow, _body, run)
