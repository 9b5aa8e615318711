"""The tiny benchmark that test_planted_slowdown.py runs in child pytest processes.

Not collected by the normal test command (its name does not start with test_): the child
names it on its command line. It measures the per_item stage of 8 items (8 Prefect tasks) on
the parent's cluster (HARNESS_BENCH_DASK_ADDRESS): the strategy most exposed to a per-task
cost in the flow process, which is what HARNESS_BENCH_SLOWDOWN_MS plants.
"""

from __future__ import annotations

import pytest
from benchlib import bench_rounds, measure_strategy

from harness.workload.vocabulary import Strategy

pytestmark = pytest.mark.cluster

TINY_ITEMS = 8


def test_tiny_per_item(benchmark, bench_runtime, make_spec):
    spec = make_spec(name="bench-tiny", seed=4, count=TINY_ITEMS, mean_ms=0.5, retries=0)
    record = measure_strategy(benchmark, bench_runtime, spec, Strategy("per_item"), bench_rounds())
    assert record.tasks == TINY_ITEMS
