"""Runs side by side and runs cut short, on the session's API server and cluster: two real
`python -m harness run` processes of one workload at once each write their own complete
folder, and a run interrupted afterwards (Ctrl-C, in this process) leaves them and `latest`
untouched. (tests/test_cli.py interrupts a subprocess that started its own runtime.)"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main

pytestmark = pytest.mark.cluster

SUBPROCESS_TIMEOUT_S = 240


@pytest.fixture(autouse=True)
def _keep_signal_handlers(keep_signal_handlers):
    """main() installs signal handlers for the CLI process (conftest.keep_signal_handlers)."""


def _start(workload: Path, out: Path, runtime, *args: str) -> subprocess.Popen[str]:
    # The session's PREFECT_API_URL and client settings are in os.environ: the runs use that API.
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(workload), "--out", str(out), "--repeats", "1",
         "--dask-address", runtime.scheduler_address, *args],
        env=dict(os.environ), cwd=workload.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_concurrent_runs_write_separate_folders_and_an_interrupt_spares_them(runtime, tmp_path, make_toml):
    workload = tmp_path / "twice.toml"
    workload.write_text(make_toml("twice", count=40, strategies=("static:10", "raw_dask:10")))
    out = tmp_path / "results"

    procs = [_start(workload, out, runtime) for _ in range(2)]
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

    # a third run, in this process on the same runtime, gets Ctrl-C once its measured runs
    # have begun (its temporary folder exists)
    workload.write_text(make_toml("twice", count=400, mean_ms=5.0, strategies=("per_item",)))
    threading.Thread(target=_interrupt_when_partial, args=(parent,), daemon=True).start()
    code = main(["run", str(workload), "--out", str(out), "--repeats", "1",
                 "--dask-address", runtime.scheduler_address])
    assert code == 130
    assert sorted(p.name for p in parent.iterdir()) == sorted([*before, "latest"])  # no partial folder
    assert {name: _digest(parent / name) for name in before} == before  # earlier results byte for byte
    assert os.readlink(parent / "latest") == latest


def _interrupt_when_partial(parent: Path) -> None:
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT_S
    while time.monotonic() < deadline:
        if any(p.name.endswith(".partial") for p in parent.iterdir()):
            time.sleep(0.5)  # inside the per_item run
            os.kill(os.getpid(), signal.SIGINT)
            return
        time.sleep(0.05)
