"""The adaptive strategy end to end on a real Prefect server and a real LocalCluster."""

from __future__ import annotations

import pytest

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
    from harness.measure.run import warm_up

    spec = parse_spec(WORKLOAD)
    workload = Workload(spec)
    priors = warm_up(spec, workload, runtime)
    for figure in (priors.overhead_s, priors.item_s, priors.probe_s, priors.probe_filling_s):
        assert figure is not None and 0 < figure < 30  # a round trip, in seconds
    assert warm_up(spec, workload, runtime, probe=False).probe_s is None  # no adaptive strategy: no probes

    stage = Stage(workload, None, spec.cost.kind, spec.faults.retries, runtime.worker_threads, runtime.client,
                  overhead_hint_s=priors.overhead_s, probe_hint_s=priors.probe_s,
                  probe_filling_hint_s=priors.probe_filling_s)
    adaptive = run_pattern(spec, Strategy("adaptive"), stage, runtime)
    assert adaptive.tally.items == 600 and sum(row["items"] for row in adaptive.trace) == 600
    assert adaptive.tally.checksum == _run(spec, Strategy("static", 50), runtime).tally.checksum
