"""Stopping the `dask scheduler` / `dask worker` processes the distributed tests start, each in
its own process group (start_new_session=True), so a nanny's children go with it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterable

# Long enough for a worker to close its connections cleanly; a hung one is killed after it.
GRACE_S = 10


def stop_groups(procs: Iterable[subprocess.Popen]) -> None:
    """SIGTERM every process group, wait GRACE_S for each, SIGKILL what is still there."""
    procs = list(procs)
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
