"""Faults from the workload file, end to end through the CLI on the session's real Prefect API
and Dask cluster: item faults retried (only the retryable kind) and counted, permanent ones
reported per item, and a failing execution path routed around by the circuit breaker."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.strategies.resilience import MAX_RERUNS_PER_BATCH, PathGuard, path_fails
from harness.workload.spec import parse_spec
from harness.work.synthetic import Workload

RETRIES = 3


@pytest.fixture(autouse=True)
def _keep_signal_handlers(keep_signal_handlers):
    """main() installs signal handlers for the CLI process (conftest.keep_signal_handlers)."""


def _run_cli(args: list[str], capsys) -> Path:
    code = main(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    return Path(captured.out.rstrip("\n").splitlines()[-1])


# ---------------------------------------------------------------- pure parts


def test_path_faults_are_deterministic_and_near_their_rate():
    hits = [path_fails(7, 0.25, first, 1) for first in range(0, 40_000, 10)]
    assert hits == [path_fails(7, 0.25, first, 1) for first in range(0, 40_000, 10)]
    assert 0.22 < sum(hits) / len(hits) < 0.28
    assert hits != [path_fails(8, 0.25, first, 1) for first in range(0, 40_000, 10)]  # the seed matters
    assert not any(path_fails(7, 0.0, first, 1) for first in range(100))
    assert all(path_fails(7, 1.0, first, 1) for first in range(100))


def test_a_failed_batch_is_queued_again_elsewhere_and_gives_up_after_the_limit(make_spec):
    from harness.errors import RunError

    spec = make_spec(count=10)
    guard = PathGuard(("batched", "inline"), seed=1, fault_rate=0.0, fault_path="batched")
    items = iter(Workload(spec).items())
    job, new = guard.next_batch(items, 4)
    assert new and [i.index for i in job.items] == [0, 1, 2, 3]
    guard.failed("batched", job, RuntimeError("worker lost"))
    assert guard.queued_items == 4
    again, new = guard.next_batch(items, 4)
    assert again is job and not new
    assert guard.route("batched", again) == "inline"  # a re-run avoids the path it failed on
    for _ in range(MAX_RERUNS_PER_BATCH - 1):
        guard.failed("inline", job, RuntimeError("again"))
        guard.next_batch(items, 4)
    with pytest.raises(RunError, match="failed 4 times"):
        guard.failed("inline", job, RuntimeError("and again"))
    assert "re-run, each item counted once" in guard.notes()[0]


# ---------------------------------------------------------------- end to end


def _expected_item_faults(spec) -> tuple[set[int], int]:
    """Failed items and total retries, from the items themselves: permanent items are never
    retried, transient ones up to `retries` times."""
    items = list(Workload(spec).items())
    failed = {i.index for i in items if i.permanent or i.transient_failures > RETRIES}
    retries = sum(0 if i.permanent else min(i.transient_failures, RETRIES) for i in items)
    return failed, retries


@pytest.mark.cluster
def test_item_faults_are_retried_counted_and_reported_through_the_cli(runtime, tmp_path, make_toml, capsys):
    toml = make_toml("faulty", count=80, mean_ms=0.3, transient_rate=0.05, permanent_rate=0.03,
                     retries=RETRIES, seed=21)
    path = tmp_path / "faulty.toml"
    path.write_text(toml)
    failed, retries = _expected_item_faults(parse_spec(toml))
    assert failed and retries  # the seed gives both kinds of fault

    out = tmp_path / "results"
    folder = _run_cli(["run", str(path), "--out", str(out), "--strategies", "per_item,static:25,adaptive",
                       "--repeats", "1", "--dask-address", runtime.scheduler_address], capsys)
    runs = pd.read_csv(folder / "runs.csv", dtype={"checksum": str})
    assert set(runs["strategy"]) == {"per_item", "static:25", "adaptive"}
    assert (runs["items"] == 80).all() and (runs["items_ok"] + runs["items_failed"] == 80).all()
    assert (runs["items_failed"] == len(failed)).all()  # reported per item, the run completed
    assert (runs["retries"] == retries).all()  # only the retryable fault was retried
    assert runs["checksum"].nunique() == 1


@pytest.mark.cluster
def test_breaker_routes_around_a_failing_path_and_the_report_says_so(runtime, tmp_path, make_toml, capsys):
    """Every task on the batched path fails: the breaker opens after a few, the rest of the
    items go inline, every failed batch is re-run once, and the results match a static run."""
    # Items of 4 ms waiting (1.2 s of work): worth tasks, so the controller keeps asking for them.
    toml = make_toml("broken-path", count=300, kind="sleep", mean_ms=4.0, seed=4) + (
        "\n[faults]\npath_failure_rate = 1.0\npath = \"batched\"\n")
    toml = toml.replace("[faults]\ntransient_rate = 0.0\npermanent_rate = 0.0\nretries = 3\n", "", 1)
    path = tmp_path / "broken.toml"
    path.write_text(toml)
    out = tmp_path / "results"
    folder = _run_cli(["run", str(path), "--out", str(out), "--strategies", "static:30,adaptive",
                       "--repeats", "1", "--dask-address", runtime.scheduler_address], capsys)

    runs = pd.read_csv(folder / "runs.csv", dtype={"checksum": str}).set_index("strategy")
    assert runs.loc["adaptive", "items"] == 300 and runs.loc["adaptive", "items_ok"] == 300
    assert runs.loc["adaptive", "checksum"] == runs.loc["static:30", "checksum"]

    notes = json.loads((folder / "env.json").read_text())["strategy_notes"]["adaptive"]
    said = "\n".join(notes)
    assert "PathFault" in said and "each item counted once" in said
    assert "path 'batched'" in said and "went open" in said
    assert "routed around a failing path" in said
    trace = pd.read_csv(folder / "trace.csv")
    assert trace["items"].sum() == 300  # observations cover every item once, failed tasks none
    assert set(trace["mode"]) == {"inline"}
    assert "routed around a failing path" in (folder / "report.md").read_text()


def test_path_fault_keys_parse_and_only_their_path_fails(make_toml):
    toml = make_toml("keys", count=10).replace(
        "retries = 3\n", 'retries = 3\npath_failure_rate = 1.0\npath = "inline"\n', 1)
    spec = parse_spec(toml)
    assert (spec.faults.path_failure_rate, spec.faults.path) == (1.0, "inline")
    assert parse_spec(make_toml("keys")).faults.path_failure_rate == 0.0  # off unless asked for
    guard = PathGuard(("batched", "inline"), spec.seed, spec.faults.path_failure_rate, spec.faults.path)
    job, _ = guard.next_batch(iter(Workload(spec).items()), 5)
    assert guard.injected("inline", job) and not guard.injected("batched", job)
