"""The strategies end to end on the session's real Prefect API server and Dask LocalCluster.

Every strategy runs the same small workload with injected faults; the expected outcome of each
item is known from the workload itself (and the reference answer is computed in this process),
so accounting, checksums, failures and retries are checked exactly, not only for agreement.
"""

from __future__ import annotations

import math
import sys
import time
import urllib.request
import uuid

import pytest
from kernel_bounds import KERNEL_LOW, ok_cost_s

from harness.patterns import run_pattern
from harness.workload.vocabulary import Strategy
from harness.strategies import Stage, StageResult
from harness.work.kernels import run_batch
from harness.work.outcomes import Tally
from harness.work.synthetic import Workload

pytestmark = pytest.mark.cluster

ITEMS = 120
BATCH = 16
RETRIES = 3
STRATEGIES = ("per_item", f"static:{BATCH}", f"raw_dask:{BATCH}", "joblib_auto")
# Task runs reach the API through the task-run recorder in batches, up to ~5 s late (docs/runtime-notes.md, "Batched task-run recorder");
# a loaded CI machine gets several times that before we call them lost.
API_RECORD_DEADLINE_S = 45.0


def _run(spec, name: str, runtime) -> StageResult:
    stage = Stage(Workload(spec), None, spec.cost.kind, spec.faults.retries, runtime.worker_threads, runtime.client)
    return run_pattern(spec, Strategy.parse(name), stage, runtime)


@pytest.fixture(scope="module")
def faulty_spec(make_spec):
    return make_spec(
        name="flows-faults", seed=3, count=ITEMS, payload_bytes=32, mean_ms=0.5, distribution="lognormal",
        spread=0.5, transient_rate=0.1, permanent_rate=0.05, retries=RETRIES,
    )


@pytest.fixture(scope="module")
def expected(faulty_spec) -> dict:
    """What every strategy must report, from the workload's own fault plan and a local run."""
    items = list(Workload(faulty_spec).items())
    reference = Tally()
    reference.add_batch(run_batch(items, faulty_spec.cost.kind, RETRIES))  # ~60 ms of local work
    failed = {i.index for i in items if i.permanent or i.transient_failures > RETRIES}
    retries = sum(0 if i.permanent else min(i.transient_failures, RETRIES) for i in items)
    assert failed and retries, "the seed should give this workload some faults of both kinds"
    assert set(reference.failed_indices) == failed
    return {"checksum": reference.checksum, "failed": failed, "retries": retries}


@pytest.fixture(scope="module")
def results(runtime, faulty_spec) -> dict[str, StageResult]:
    """Each strategy once on the same workload (shared by the tests below: they only read it)."""
    return {name: _run(faulty_spec, name, runtime) for name in STRATEGIES}


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_item_accounted_once(results, name):
    tally = results[name].tally
    assert tally.items_ok + tally.items_failed == ITEMS
    assert tally.items == ITEMS


@pytest.mark.parametrize("name", STRATEGIES)
def test_same_results_as_the_local_reference(results, expected, name):
    tally = results[name].tally
    assert tally.checksum == expected["checksum"]
    assert set(tally.failed_indices) == expected["failed"]
    assert len(tally.failed_indices) == tally.items_failed  # no failed item counted twice
    assert tally.items_failed == len(expected["failed"])
    assert sum(tally.errors.values()) == tally.items_failed


@pytest.mark.parametrize("name", STRATEGIES)
def test_retries_counted(results, expected, name):
    tally = results[name].tally
    assert tally.retries > 0
    assert tally.retries == expected["retries"]


def test_checksums_and_failures_identical_across_strategies(results):
    checksums = {name: r.tally.checksum for name, r in results.items()}
    failed = {name: frozenset(r.tally.failed_indices) for name, r in results.items()}
    assert len(set(checksums.values())) == 1, checksums
    assert len(set(failed.values())) == 1, failed


def test_task_counts(results):
    assert results["per_item"].tasks == ITEMS
    assert results["per_item"].batch_sizes == {1: ITEMS}
    batches = math.ceil(ITEMS / BATCH)
    for name in (f"static:{BATCH}", f"raw_dask:{BATCH}"):
        assert results[name].tasks == batches, name
        assert sum(results[name].batch_sizes.values()) == batches, name
        assert sum(size * n for size, n in results[name].batch_sizes.items()) == ITEMS, name
        assert max(results[name].batch_sizes) == BATCH, name
    assert 1 <= results["joblib_auto"].tasks <= ITEMS


@pytest.mark.parametrize("name", STRATEGIES)
def test_measured_compute_and_wall(results, faulty_spec, runtime, name):
    result = results[name]
    # Every item that succeeded measured its own work, failed items none (kernel_bounds).
    assert result.tally.compute_s >= KERNEL_LOW * ok_cost_s(Workload(faulty_spec).items(), RETRIES)
    # Each item's compute is a span inside the stage's wall on one of the worker threads.
    assert result.tally.compute_s <= result.wall_s * runtime.worker_threads


def test_sampled_stage_runs_only_its_indices(runtime, faulty_spec):
    workload = Workload(faulty_spec)
    indices = workload.sample_indices(25)
    stage = Stage(workload, indices, faulty_spec.cost.kind, RETRIES, runtime.worker_threads, runtime.client)
    result = run_pattern(faulty_spec, Strategy("static", 7), stage, runtime)
    assert result.tally.items == 25
    assert result.tasks == math.ceil(25 / 7)
    sampled = set(indices)
    assert set(result.tally.failed_indices) <= sampled


# ------------------------------------------------------------------ tasks really reach our API


def _read_item_task_runs(flow_name: str) -> list:
    """Task runs named "item N" (process_item) under the flow runs of the flow called `flow_name`."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, TaskRunFilter, TaskRunFilterName

    runs = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_task_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="item ")),
                limit=200,
                offset=len(runs),
            )
            runs.extend(page)
            if len(page) < 200:
                return runs


def test_per_item_task_runs_reach_our_api(runtime, make_spec):
    """A per_item run's task runs are recorded by the session's server: one per item, final
    states matching the flow's own tally (a worker with its own temporary server would leave
    the real API with none)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    name = f"api-check-{uuid.uuid4().hex[:8]}"  # a flow name no other test uses
    items = 30
    spec = make_spec(name=name, count=items, transient_rate=0.15, permanent_rate=0.1, retries=2, seed=5)
    result = _run(spec, "per_item", runtime)
    assert result.tally.items == items and result.tally.items_failed > 0

    flow_name = f"{name}-map"
    with get_client(sync_client=True) as client:
        assert str(client.api_url).rstrip("/") == runtime.api_url.rstrip("/")
        flow_runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))
    assert len(flow_runs) == 1, f"expected one flow run of {flow_name}, found {len(flow_runs)}"

    deadline = time.monotonic() + API_RECORD_DEADLINE_S
    while True:
        task_runs = _read_item_task_runs(flow_name)
        states = [t.state_type.value if t.state_type else None for t in task_runs]
        done = states.count("COMPLETED") == result.tally.items_ok and states.count("FAILED") == result.tally.items_failed
        if (len(task_runs) == items and done) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(task_runs) == items, f"{len(task_runs)} of {items} task runs reached {runtime.api_url}"
    assert {t.flow_run_id for t in task_runs} == {flow_runs[0].id}
    assert states.count("COMPLETED") == result.tally.items_ok, states
    assert states.count("FAILED") == result.tally.items_failed, states


def _inspect_worker(dask_worker) -> dict:
    """Runs on a Dask worker: which API does it use, and did it start any Prefect server?

    (`client.run` calls this on the worker's event loop, so the worker's own HTTP server cannot
    answer while it runs: the ports it finds are probed from the test process instead.)
    """
    import os
    import sys as _sys

    import psutil

    me = psutil.Process()
    children, listening = [], []
    for process in [me, *me.children(recursive=True)]:
        try:
            if process is not me:
                children.append(" ".join(process.cmdline()))
            listening += [c.laddr.port for c in process.net_connections(kind="inet") if c.status == "LISTEN"]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    server_module = _sys.modules.get("prefect.server.api.server")
    instances = getattr(getattr(server_module, "SubprocessASGIServer", None), "_instances", None)
    settings_url = None
    if "prefect" in _sys.modules:
        from prefect.settings import get_current_settings

        settings_url = get_current_settings().api.url
    return {
        "env_api_url": os.environ.get("PREFECT_API_URL"),
        "settings_api_url": settings_url,
        "children": children,
        "server_module_imported": server_module is not None,
        "server_instances": None if instances is None else len(instances),
        "ephemeral": os.environ.get("PREFECT_SERVER_EPHEMERAL_ENABLED"),
        "listening": sorted(set(listening)),
        "dask_port": int(dask_worker.address.rsplit(":", 1)[1]),
    }


def _answers_as_prefect_api(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as resp:
            return resp.status == 200
    except Exception:  # refused, 404 (Dask's own HTTP server), not HTTP at all: not an API
        return False


def test_workers_use_our_api_and_start_no_server(runtime, results):
    """After real Prefect tasks ran on them (the `results` fixture), no worker has a server of its own."""
    from harness.runtime import check_workers

    probes = runtime.client.run(_inspect_worker)
    assert len(probes) == 2
    for address, probe in probes.items():
        assert probe["env_api_url"] == runtime.api_url, address
        assert probe["settings_api_url"].rstrip("/") == runtime.api_url.rstrip("/"), address
        assert probe["ephemeral"] == "false", address
        suspicious = [c for c in probe["children"] if "uvicorn" in c or ("prefect" in c and "server" in c)]
        assert suspicious == [], f"{address} started a server: {suspicious}"
        assert not probe["server_instances"], f"{address} holds a temporary Prefect server"
        assert probe["dask_port"] in probe["listening"], probe  # the probe does see the worker's sockets
        # A Dask worker also runs a small HTTP server of its own (/health, /metrics); a Prefect API
        # answers /api/health. The Dask port is skipped (it would wait for a Dask message).
        apis = [p for p in probe["listening"] if p != probe["dask_port"] and _answers_as_prefect_api(p)]
        assert apis == [], f"{address} serves a Prefect API on port(s) {apis}"
    assert _answers_as_prefect_api(int(runtime.api_url.rsplit(":", 1)[1].split("/")[0]))  # the probe works
    # and the harness's own preflight agrees
    assert set(check_workers(runtime.client, runtime.api_url)) == set(probes)


def test_flow_process_uses_our_api(runtime):
    from prefect.settings import get_current_settings

    assert get_current_settings().api.url.rstrip("/") == runtime.api_url.rstrip("/")
    assert "prefect.server.api.server" not in sys.modules or not getattr(
        sys.modules["prefect.server.api.server"].SubprocessASGIServer, "_instances", None
    )
