"""Runs side by side and runs cut short, on the session's API server and cluster: two real
`python -m harness run` processes of one workload at once each write their own complete
folder, and a third run on the same runtime interrupted afterwards (Ctrl-C) leaves them and
`latest` untouched. (tests/test_cli.py interrupts a run that started its own runtime.)"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.cluster

SUBPROCESS_TIMEOUT_S = 240


# How often to look for the run's temporary folder: what the interrupted run shows when its
# measured runs begin (it is made right before them).
POLL_S = 0.05


@pytest.fixture
def start_run(runtime):
    """start_run(workload, out) -> a `python -m harness run` process on the session's runtime;
    any still running when the test ends is killed (it started no runtime of its own)."""
    started: list[subprocess.Popen[str]] = []

    def start(workload: Path, out: Path, *args: str) -> subprocess.Popen[str]:
        # The session's PREFECT_API_URL and client settings are in os.environ: the runs use that API.
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness", "run", str(workload), "--out", str(out), "--repeats", "1",
             "--dask-address", runtime.scheduler_address, *args],
            env=dict(os.environ), cwd=workload.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_concurrent_runs_write_separate_folders_and_an_interrupt_spares_them(start_run, tmp_path, make_toml):
    workload = tmp_path / "twice.toml"
    workload.write_text(make_toml("twice", count=40, strategies=("static:10", "raw_dask:10")))
    out = tmp_path / "results"

    procs = [start_run(workload, out) for _ in range(2)]
    results = [p.communicate(timeout=SUBPROCESS_TIMEOUT_S) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in results]
    folders = [Path(stdout.rstrip("\n").splitlines()[-1]) for stdout, _ in results]
    assert folders[0] != folders[1]
    for folder in folders:
        runs = pd.read_csv(folder / "runs.csv")
        assert len(runs) == 2 and (runs["items"] == 40).all()
        assert (folder / "report.md").is_file() and (folder / "env.json").is_file()
    parent = out / "twice"
    assert (parent / "latest").resolve() in {f.resolve() for f in folders}
    before = {f.name: _digest(f) for f in folders}
    latest = os.readlink(parent / "latest")

    # A third run on the same runtime gets Ctrl-C once its measured runs have begun: its
    # temporary folder exists (per_item on 400 items of 5 ms then keeps it busy for seconds).
    workload.write_text(make_toml("twice", count=400, mean_ms=5.0, strategies=("per_item",)))
    third = start_run(workload, out)
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT_S  # only how long to wait before failing
    while not any(p.name.endswith(".partial") for p in parent.iterdir()):
        assert third.poll() is None, f"the run ended before its measured runs began: {third.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "the run's temporary folder never appeared"
        time.sleep(POLL_S)
    third.send_signal(signal.SIGINT)
    _, err = third.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    assert third.returncode == 130, err[-2000:]
    assert sorted(p.name for p in parent.iterdir()) == sorted([*before, "latest"])  # no partial folder
    assert {name: _digest(parent / name) for name in before} == before  # earlier results byte for byte
    assert os.readlink(parent / "latest") == latest
