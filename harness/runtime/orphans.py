"""Servers a killed harness left behind, found and stopped by the next run.

Each server the harness starts is recorded in the cache (`servers/<pid>.json`: its pid, its
parent's pid, both start times, its home). A record whose parent is gone, while the server it
names still runs, is an orphan: the parent was killed before it could stop it, and the
server's own watchdog (harness/runtime/server_entry.py) did not fire either. Start times tell a
reused pid from the process that was recorded.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from pathlib import Path

import psutil

from harness.runtime.cache import cache_dir

# The server's command line must still contain this for a recorded pid to be killed: a pid
# reused by an unrelated process is never touched.
SERVER_CMDLINE_MARK = "server_entry.py"
# Start times are compared to this precision: psutil reports them as float seconds.
START_TIME_TOLERANCE_S = 0.5


def _records_dir() -> Path:
    path = cache_dir() / "servers"
    path.mkdir(exist_ok=True)
    return path


def _started_at(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _same_process(pid: int, started_at: float) -> bool:
    now = _started_at(pid)
    return now is not None and abs(now - started_at) < START_TIME_TOLERANCE_S


def record_server(pid: int, home: Path) -> Path:
    """Note a server this process started; `forget_server` removes the note when it stops."""
    path = _records_dir() / f"{pid}.json"
    parent = os.getpid()
    path.write_text(json.dumps({
        "pid": pid, "started_at": _started_at(pid), "parent_pid": parent,
        "parent_started_at": _started_at(parent), "home": str(home),
    }))
    return path


def forget_server(pid: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        (_records_dir() / f"{pid}.json").unlink()


def reap_orphaned_servers() -> list[str]:
    """Stop every recorded server whose parent is gone; one line per server stopped."""
    said = []
    for path in sorted(_records_dir().glob("*.json")):
        try:
            rec = json.loads(path.read_text())
            pid, parent = int(rec["pid"]), int(rec["parent_pid"])
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)  # a record cut short by a kill: nothing to act on
            continue
        if rec.get("parent_started_at") is not None and _same_process(parent, rec["parent_started_at"]):
            continue  # its harness is alive: its server is not ours to stop
        if rec.get("started_at") is not None and _same_process(pid, rec["started_at"]):
            with contextlib.suppress(psutil.Error):
                if SERVER_CMDLINE_MARK in " ".join(psutil.Process(pid).cmdline()):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, signal.SIGKILL)  # its own process group: uvicorn too
                    said.append(f"stopped a Prefect server (pid {pid}) left running by a harness "
                                f"that was killed (pid {parent})")
        home = Path(rec.get("home") or "")
        if home.parent == cache_dir() / "homes":  # never anything outside the cache
            shutil.rmtree(home, ignore_errors=True)
        path.unlink(missing_ok=True)
    return said
