"""Fixtures of the benchmark suite; the knobs and the measuring helpers are in benchlib.py."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from benchlib import DASK_ADDRESS_ENV, SLOWDOWN_ENV, one_flow_run

from harness.workload.spec import WorkloadSpec

from harness.workload.vocabulary import Strategy
from harness.strategies import Stage, execute
from harness.work.synthetic import Workload


@pytest.fixture(scope="session")
def bench_runtime(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The runtime benchmarks run on: the session's (tests/conftest.py), or an existing cluster."""
    address = os.environ.get(DASK_ADDRESS_ENV, "")
    if not address:
        yield request.getfixturevalue("runtime")
        return
    from harness.runtime import LEAN, open_runtime
    from harness.workload.spec import ClusterSpec

    with open_runtime(ClusterSpec(address=address), LEAN) as rt:  # as the session's runtime fixture
        yield rt


@pytest.fixture(scope="session", autouse=True)
def planted_slowdown() -> Iterator[float]:
    """HARNESS_BENCH_SLOWDOWN_MS: sleep that long in the flow process on every task submit.

    A per-task cost in the flow process is a real regression of the kind the suite must catch
    (the flow is the serial bottleneck, docs/runtime-notes.md; shipping Prefect's settings with each task
    was one, ~70 ms). DaskTaskRunner.submit is the one door every Prefect task of every strategy
    goes through (`task.map` calls it per task), so the plant touches no harness code.
    """
    raw = os.environ.get(SLOWDOWN_ENV, "")
    delay_ms = float(raw) if raw else 0.0
    if delay_ms <= 0:
        yield 0.0
        return
    from prefect_dask import DaskTaskRunner

    stock = DaskTaskRunner.submit

    def slowed_submit(self: Any, *args: Any, **kwargs: Any) -> Any:
        time.sleep(delay_ms / 1000)
        return stock(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DaskTaskRunner, "submit", slowed_submit)
        yield delay_ms


@pytest.fixture(scope="session")
def warm_runtime(bench_runtime: Any, make_spec: Callable[..., WorkloadSpec]) -> Any:
    """The runtime after one flow ran both task kinds on every worker: the first task of a
    fresh worker imports Prefect's task engine and unpickles the task (~1-2 s), which is not
    what any benchmark measures."""
    spec = make_spec(name="bench-warmup", count=8, mean_ms=0.1)
    with one_flow_run(bench_runtime, "bench-warmup") as inside:
        for name in (Strategy("per_item"), Strategy("static", 2)):
            stage = Stage(Workload(spec), None, spec.cost.kind, 0, bench_runtime.worker_threads, bench_runtime.client)
            inside(lambda name=name, stage=stage: execute(name, stage))
    return bench_runtime


@pytest.fixture(scope="session")
def measured() -> dict[str, Any]:
    """What the benchmarks measured this session (benchlib.Measured by strategy name, and a few
    figures of the pure benchmarks), for the ratio guards."""
    return {}
