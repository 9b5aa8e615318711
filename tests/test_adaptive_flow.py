"""The adaptive strategy end to end on a real Prefect server and a real LocalCluster."""

from __future__ import annotations

import time

import pytest
from kernel_bounds import KERNEL_LOW, ok_cost_s

from harness.patterns import run_pattern
from harness.workload.spec import parse_spec
from harness.workload.vocabulary import Strategy
from harness.strategies import Stage
from harness.work.synthetic import Workload

pytestmark = pytest.mark.cluster

WORKLOAD = """
name = "adaptive-e2e"
seed = 5
[items]
count = 600
payload_bytes = 16
[cost]
kind = "cpu"
mean_ms = 0.3
distribution = "lognormal"
spread = 1.0
[[cost.phases]]
at = 0.5
mean_ms = 1.5
[faults]
transient_rate = 0.05
permanent_rate = 0.02
retries = 3
"""


def _run(spec, name, runtime):
    stage = Stage(Workload(spec), None, spec.cost.kind, spec.faults.retries, runtime.worker_threads, runtime.client)
    return run_pattern(spec, name, stage, runtime)


def test_adaptive_accounts_every_item_once_and_matches_static(runtime):
    spec = parse_spec(WORKLOAD)
    adaptive = _run(spec, Strategy("adaptive"), runtime)
    static = _run(spec, Strategy("static", 50), runtime)

    assert adaptive.tally.items == 600
    assert adaptive.tally.items_ok + adaptive.tally.items_failed == 600
    assert adaptive.tally.checksum == static.tally.checksum
    assert sorted(adaptive.tally.failed_indices) == sorted(static.tally.failed_indices)
    assert adaptive.tally.items_failed > 0 and adaptive.tally.retries > 0
    # one trace row per observation, covering every item exactly once
    assert sum(row["items"] for row in adaptive.trace) == 600
    fills = [row for row in adaptive.trace if row["reason"].startswith("fill:")]
    assert all(row["mode"] == "inline" for row in fills)
    assert len(adaptive.trace) - len(fills) == sum(adaptive.batch_sizes.values())  # fills are not tasks
    assert all(row["reason"] for row in adaptive.trace)
    # it started with a probe of one item, the flow filling in while it ran (how far the
    # batches grow after that depends on how long the probe took: test_controller covers it)
    batched = [row for row in adaptive.trace if row["mode"] == "batched"]
    assert batched[0]["batch_size"] == 1 and batched[0]["reason"].startswith("cold start")
    assert fills and fills[0]["submitted_s"] >= batched[0]["submitted_s"]


def test_the_warm_up_times_the_probe_into_a_waiting_and_a_filling_flow(runtime):
    """What the controller's start weighs (harness.strategies.probe), measured on the real path;
    an adaptive run given them still accounts for every item once."""
    from harness.measure.run import WARM_UP_TASKS_PER_THREAD, warm_up

    spec = parse_spec(WORKLOAD)
    workload = Workload(spec)
    t0 = time.perf_counter()
    priors = warm_up(spec, workload, runtime)
    warm_up_s = time.perf_counter() - t0
    # Every figure was measured inside the warm-up, so its duration bounds them: a round trip
    # cannot outlast it, nor a task's overhead, (wall x threads - compute) / tasks, exceed its
    # share of it (a unit slip, ms for s, lands 1,000x off).
    threads = runtime.worker_threads
    sampled = workload.take(workload.sample_indices(min(len(workload), WARM_UP_TASKS_PER_THREAD * threads)))
    assert 0 < priors.probe_s <= warm_up_s and 0 < priors.probe_filling_s <= warm_up_s
    assert 0 < priors.overhead_s <= warm_up_s * threads / len(sampled)  # static:1: a task per item
    # item_s is the sampled items' mean compute: their own cost, within the kernel's accuracy.
    assert KERNEL_LOW * ok_cost_s(sampled, spec.faults.retries) / len(sampled) <= priors.item_s
    assert priors.item_s <= warm_up_s * threads / len(sampled)
    assert warm_up(spec, workload, runtime, probe=False).probe_s is None  # no adaptive strategy: no probes

    stage = Stage(workload, None, spec.cost.kind, spec.faults.retries, runtime.worker_threads, runtime.client,
                  overhead_hint_s=priors.overhead_s, probe_hint_s=priors.probe_s,
                  probe_filling_hint_s=priors.probe_filling_s)
    adaptive = run_pattern(spec, Strategy("adaptive"), stage, runtime)
    assert adaptive.tally.items == 600 and sum(row["items"] for row in adaptive.trace) == 600
    assert adaptive.tally.checksum == _run(spec, Strategy("static", 50), runtime).tally.checksum
