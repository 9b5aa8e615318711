"""How one mapping stage is executed: the mechanism of the strategies a run compares.

Prefect strategies (`per_item`, `static:N`, `adaptive`) must run inside a flow whose task runner
is a DaskTaskRunner; the reference strategies (`raw_dask:N`, `joblib_auto`) use the Dask client
alone, no Prefect. Each kind is one module of this package with `execute(strategy, stage)`,
named by its line in harness.workload.vocabulary's registry (docs, "Design and contributing").
May import harness.policy, harness.work, harness.workload and harness.analysis; never
harness.patterns, harness.measure or anything above.
"""

from __future__ import annotations

import importlib

from harness.strategies.base import Stage, StageResult
from harness.workload.vocabulary import Strategy


def execute(strategy: Strategy, stage: Stage) -> StageResult:
    """Run `stage` with `strategy` (Prefect ones must be called inside a flow): the module its
    registry line names, imported on first use."""
    return importlib.import_module(strategy.definition.module).execute(strategy, stage)


__all__ = ["Stage", "StageResult", "execute"]
