"""The Prefect API a run talks to: the one Prefect's own settings name (PREFECT_API_URL from
the environment, a .env file or the active profile), or a loopback `prefect server start`
subprocess the harness starts and stops, its database kept under the results folder so that
`harness ui` can show the runs later (README, "Browsing runs in the Prefect UI")."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import RunError, SpecError
from harness.runtime.cache import cache_dir
from harness.runtime.template_db import DB_NAME, save_template, seed_home

# `prefect server start` took up to 14 s on a fresh database (docs/runtime-notes.md, "Server
# start-up and the database template"); a slow CI machine gets four times that before we call
# it failed.
SERVER_START_TIMEOUT_S = 60.0
HEALTH_POLL_INTERVAL_S = 0.1
# SIGTERM first so uvicorn closes SQLite cleanly; SIGKILL the group if it has not gone by then.
SERVER_STOP_GRACE_S = 10.0

# Server-side settings: task runs are recorded in batches rather than one by one, and services
# the harness never uses are off so they do not compete with the workers for the machine's
# cores (docs/runtime-notes.md, "Batched task-run recorder" and "Server services off").
SERVER_SETTINGS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_FOREMAN_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_REPOSSESSOR_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
    "PREFECT_SERVER_EVENTS_STREAM_OUT_ENABLED": "false",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
}
# `harness ui`: the same lean server over a results folder's database, with the UI on.
UI_SETTINGS = {**SERVER_SETTINGS, "PREFECT_SERVER_UI_ENABLED": "true"}

# Under a results folder (--out): the database every run into it shares, and its lock. A run
# holds the lock while its server is up; two servers writing one SQLite file contend for its
# single write lock, so a second run meanwhile keeps its own database in RUNS_DB_DIR/<run id>.
DB_DIR = ".prefect"
DB_LOCK = "prefect.db.lock"
RUNS_DB_DIR = "runs"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def health_ok(api_url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(api_url.rstrip("/") + "/health", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass
class PrefectServer:
    """A `prefect server start` subprocess in its own process group and its own PREFECT_HOME."""

    api_url: str
    process: subprocess.Popen[bytes]
    home: Path
    log_path: Path
    startup_s: float
    seeded_from_template: bool
    database: Path
    # Save the database as the template at stop: only a scratch one in the server's own home.
    # A results folder's database holds runs; a template must hold none.
    saves_template: bool = True

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(SERVER_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.saves_template:
            save_template(self.home)
        shutil.rmtree(self.home, ignore_errors=True)


def start_prefect_server(db_dir: Path | None = None, *, ui: bool = False, port: int | None = None) -> PrefectServer:
    """Start a loopback Prefect API server and wait until it answers.

    Its database is `db_dir`/prefect.db (seeded from the template when absent), else a scratch
    one in the server's own home, removed at stop; `ui` turns the Prefect UI on; `port`
    defaults to a free one.
    """
    homes = cache_dir() / "homes"
    homes.mkdir(exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="server-", dir=homes))
    if db_dir is None:
        seeded = seed_home(home)
        database = home / DB_NAME
    else:
        db_dir.mkdir(parents=True, exist_ok=True)
        database = db_dir / DB_NAME
        seeded = database.exists() or seed_home(db_dir)
    port = port or free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        **(UI_SETTINGS if ui else SERVER_SETTINGS),
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{database}",
    }
    env.pop("PREFECT_API_URL", None)
    log_path = home / "server.log"
    started = time.perf_counter()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
             "--port", str(port), *(() if ui else ("--no-ui",))],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group: stop() takes uvicorn's children too
        )
    server = PrefectServer(api_url, process, home, log_path, 0.0, seeded, database, saves_template=db_dir is None)
    deadline = started + SERVER_START_TIMEOUT_S
    while not health_ok(api_url, timeout=1.0):
        if process.poll() is not None or time.perf_counter() > deadline:
            tail = log_path.read_text(errors="replace")[-2000:]
            server.stop()
            reason = "exited" if process.poll() is not None else f"did not answer in {SERVER_START_TIMEOUT_S:.0f} s"
            raise RunError(f"the Prefect server {reason}; its log ends with:\n{tail}")
        time.sleep(HEALTH_POLL_INTERVAL_S)
    server.startup_s = time.perf_counter() - started
    return server


def configured_api_url() -> str:
    """The API URL Prefect's own settings name: PREFECT_API_URL from the environment, a .env
    file or the active profile (PREFECT_PROFILES_PATH), in Prefect's order of precedence, read
    now (so a change to the environment since Prefect was imported counts); "" if none."""
    from prefect.settings import Settings

    return Settings().api.url or ""


def _lock(path: Path) -> int | None:
    """An exclusive lock on `path` held until the returned descriptor is closed; None if
    another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def results_db_dir(results_dir: Path, run_id: str, stack: contextlib.ExitStack) -> Path:
    """Where a run's own server keeps its database under `results_dir`: the folder's shared one
    while no other run is using it (locked until `stack` closes), else one of the run's own."""
    shared = Path(results_dir) / DB_DIR
    shared.mkdir(parents=True, exist_ok=True)
    fd = _lock(shared / DB_LOCK)
    if fd is not None:
        stack.callback(os.close, fd)
        return shared
    return shared / RUNS_DB_DIR / (run_id or f"pid-{os.getpid()}")


def open_api(stack: contextlib.ExitStack, startup: dict[str, Any], results_dir: Path | None = None,
             run_id: str = "") -> str:
    """The API URL to use: the one Prefect's settings name if any (it must answer), else a
    server we start and `stack` stops, its database under `results_dir` (a scratch one without
    it). Records in `startup` which it was and, if started, how long it took and where its
    database is."""
    api_url = configured_api_url()
    if api_url:
        if not health_ok(api_url):
            raise SpecError(f"PREFECT_API_URL={api_url}: no Prefect API answers at {api_url}/health")
        startup["prefect_server"] = "existing"
        return api_url
    db_dir = results_db_dir(results_dir, run_id, stack) if results_dir is not None else None
    server = start_prefect_server(db_dir)
    stack.callback(server.stop)
    startup["prefect_server"] = "started"
    startup["prefect_server_s"] = round(server.startup_s, 3)
    startup["prefect_server_seeded_db"] = server.seeded_from_template
    startup["prefect_database"] = str(server.database) if db_dir is not None else "scratch (deleted at exit)"
    return server.api_url
