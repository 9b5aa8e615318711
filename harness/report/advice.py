"""What a run tells a reader to do about batch sizes: which static sizes are near-optimal, whether
the sweep bracketed the best one, and which strategies run through Prefect. Pure."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from harness.analysis import stats
from harness.workload.vocabulary import REGISTRY, STATIC

# A size whose median wall is within this fraction of the best static's is as good in practice:
# run-to-run noise on a shared machine is several % (the report's IQR warning starts at 10 %).
NEAR_OPTIMAL_FRACTION = 0.05


@dataclass(frozen=True)
class BatchAdvice:
    best: int  # the oracle's batch size
    best_wall_s: float
    walls: dict[int, float]  # every static size tried -> its median wall (projected), by size
    band: tuple[int, ...]  # the sizes within NEAR_OPTIMAL_FRACTION of the best

    @property
    def edge(self) -> str:
        """"largest" or "smallest" when the best size is at that end of two or more tried, else ""."""
        sizes = sorted(self.walls)
        if len(sizes) < 2:
            return ""
        return "largest" if self.best == sizes[-1] else "smallest" if self.best == sizes[0] else ""


def batch_advice(table: pd.DataFrame) -> BatchAdvice | None:
    """From a summary table (harness.analysis.stats.summarize: strategies as index, median `wall_s`);
    a size none of whose items succeeded is no candidate (stats.without_success)."""
    failed = stats.without_success(table)
    walls = {s.batch_size: float(table.loc[name, "wall_s"])
             for name in table.index if (s := STATIC.read(name)) is not None and name not in failed}
    if not walls:
        return None
    best = min(walls, key=walls.__getitem__)
    limit = walls[best] * (1 + NEAR_OPTIMAL_FRACTION)
    return BatchAdvice(best, walls[best], dict(sorted(walls.items())),
                       tuple(size for size in sorted(walls) if walls[size] <= limit))


def through_prefect(strategies: list[str]) -> tuple[list[str], list[str]]:
    """(strategies that run Prefect tasks inside a flow, those that run on Dask without Prefect)."""
    kinds = {name: REGISTRY.read(name) for name in strategies}
    prefect = [n for n in strategies if kinds[n] is not None and kinds[n].needs_flow]
    return prefect, [n for n in strategies if n not in prefect]
