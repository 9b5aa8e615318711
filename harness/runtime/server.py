"""The Prefect API a run talks to: the one Prefect's own settings name (PREFECT_API_URL from
the environment, a .env file or the active profile), or a loopback `prefect server start`
subprocess the harness starts and stops, its database kept under the results folder so that
`harness ui` can show the runs later (README, "Browsing runs in the Prefect UI")."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import RunError, SpecError
from harness.runtime.cache import cache_dir
from harness.runtime.orphans import forget_server, record_server
from harness.runtime.template_db import DB_NAME, database_damage, save_template, seed_home

SERVER_ENTRY = Path(__file__).with_name("server_entry.py")

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

# How a full disk shows in the server's log: SQLite's message, or the OS's.
DISK_FULL_SIGNS = ("database or disk is full", "No space left on device")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the server subprocess between fork and exec (Linux): SIGKILL when the harness dies.

    The kernel sends it when the thread that started the child ends, so it is set only when the
    main thread starts the server; server_entry.py's watchdog covers every other case."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


# How long an existing PREFECT_API_URL gets to answer each check: a loopback or LAN API answers
# in milliseconds; one that takes seconds is not one a benchmark should run against.
API_CHECK_TIMEOUT_S = 5.0


def prefect_version(api_url: str, timeout: float = API_CHECK_TIMEOUT_S) -> str | None:
    """The Prefect version the API at `api_url` reports (GET /admin/version), or None if what
    answers there is not a Prefect API."""
    try:
        with urllib.request.urlopen(api_url.rstrip("/") + "/admin/version", timeout=timeout) as resp:
            answer = json.loads(resp.read(1024))
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return answer if isinstance(answer, str) and answer[:1].isdigit() else None


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
    database: Path | None = None  # its SQLite file (None: home/prefect.db)

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
        forget_server(self.process.pid)
        shutil.rmtree(self.home, ignore_errors=True)


def start_prefect_server(on_event: Callable[[str], None] | None = None, db_dir: Path | None = None, *,
                         ui: bool = False, port: int | None = None) -> PrefectServer:
    """Start a loopback Prefect API server and wait until it answers.

    Its database is `db_dir`/prefect.db (seeded from the template when absent), else a scratch
    one in the server's own home, removed at stop; `ui` turns the Prefect UI on; `port`
    defaults to a free one. The server dies with this process however it ends
    (server_entry.py, _die_with_parent), and is stopped here if the wait is cut short (an
    error, Ctrl-C)."""
    homes = cache_dir() / "homes"
    homes.mkdir(exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="server-", dir=homes))
    if db_dir is None:
        seeded = seed_home(home, on_event)
        database = home / DB_NAME
    else:
        db_dir.mkdir(parents=True, exist_ok=True)
        database = db_dir / DB_NAME
        seeded = database.exists() or seed_home(db_dir, on_event)
    port = port or free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        **(UI_SETTINGS if ui else SERVER_SETTINGS),
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{database}",
    }
    env.pop("PREFECT_API_URL", None)
    if ui:
        # The UI's JavaScript asks /ui-settings which API to call; the server answers with
        # PREFECT_UI_API_URL, by default built from PREFECT_SERVER_API_HOST/PORT (4200), which
        # `--port` does not change. Named here, it is this server's API whatever its port.
        env["PREFECT_UI_API_URL"] = api_url
    log_path = home / "server.log"
    started = time.perf_counter()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(SERVER_ENTRY), str(os.getpid()), "prefect", "server", "start", "--host", "127.0.0.1",
             "--port", str(port), *(() if ui else ("--no-ui",))],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Own session: the terminal's Ctrl-C reaches only the harness, which then stops the
            # server cleanly; stop() signals the whole group.
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" and threading.current_thread() is threading.main_thread() else None,
        )
    server = PrefectServer(api_url, process, home, log_path, 0.0, seeded, database=database)
    try:
        record_server(process.pid, home)
        deadline = started + SERVER_START_TIMEOUT_S
        while not health_ok(api_url, timeout=1.0):
            if process.poll() is not None or time.perf_counter() > deadline:
                tail = log_path.read_text(errors="replace")[-2000:]
                reason = "exited" if process.poll() is not None else f"did not answer in {SERVER_START_TIMEOUT_S:.0f} s"
                if any(sign in tail for sign in DISK_FULL_SIGNS):  # one line, not SQLAlchemy's 30
                    raise RunError(f"the Prefect server {reason}: the disk holding its database "
                                   f"{database} is full; free space there or choose another --out "
                                   f"(its log: {log_path})")
                raise RunError(f"the Prefect server {reason}; its log ends with:\n{tail}")
            time.sleep(HEALTH_POLL_INTERVAL_S)
    except BaseException:
        server.stop()
        raise
    server.startup_s = time.perf_counter() - started
    if not seeded:
        # Its database was just migrated and holds no run yet: the template, taken now. Taken
        # at stop, it held the runs made on it (every later server would list them), and no
        # server of a session or of a run's own results folder made one until a scratch one
        # stopped: each migrated afresh, ~10 s more (docs/runtime-notes.md).
        save_template(database)
    return server


def configured_api_url() -> str:
    """The API URL Prefect's own settings name: PREFECT_API_URL from the environment, a .env
    file or the active profile (PREFECT_PROFILES_PATH), in Prefect's order of precedence, read
    now (so a change to the environment since Prefect was imported counts); "" if none."""
    from prefect.settings import Settings

    return Settings().api.url or ""


def existing_api() -> tuple[str, str] | None:
    """The API URL Prefect's settings name (configured_api_url) and the Prefect version it
    reports; a SpecError naming it unless a Prefect API answers there within
    API_CHECK_TIMEOUT_S. None if there is none."""
    api_url = configured_api_url()
    if not api_url:
        return None
    if not health_ok(api_url, timeout=API_CHECK_TIMEOUT_S):
        raise SpecError(f"PREFECT_API_URL={api_url}: no Prefect API answers at {api_url}/health "
                        f"within {API_CHECK_TIMEOUT_S:.0f} s")
    version = prefect_version(api_url)
    if version is None:
        raise SpecError(f"PREFECT_API_URL={api_url}: something answers at /health, but "
                        f"{api_url.rstrip('/')}/admin/version gave no Prefect version: not a Prefect API "
                        "(a Prefect server's API URL ends in /api)")
    return api_url, version


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


def _missing(folder: Path) -> list[Path]:
    """`folder` and its ancestors that do not exist yet, outermost first."""
    missing = []
    while not folder.exists():
        missing.insert(0, folder)
        folder = folder.parent
    return missing


def _discard_unless_done(database: Path | None, made: list[Path], exc_type: type[BaseException] | None,
                         *_: object) -> bool:
    """On a run that fails or is interrupted: remove the database it created and the folders
    it made, if they are left empty, so such a run leaves nothing (a database that held runs
    before is kept whole). Runs after the server has stopped."""
    if exc_type is None:
        return False
    if database is not None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            database.with_name(database.name + suffix).unlink(missing_ok=True)
    for folder in reversed(made):
        if folder.name == DB_DIR:
            (folder / DB_LOCK).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty: another run's, keep it
            folder.rmdir()
    return False


# A damaged database's files keep this suffix and the time they were set aside, beside it.
DAMAGED_SUFFIX = ".damaged-"


def set_aside_if_damaged(database: Path) -> str | None:
    """Rename a `database` that fails SQLite's quick check (and its journal, WAL and shared
    memory files) to `prefect.db.damaged-<time>` beside it, so a fresh one takes its place; a
    line saying so, or None if it is sound or absent. A server on a damaged file fails to
    start, run after run, with nothing in its log naming the file."""
    if not database.exists() or (damage := database_damage(database)) is None:
        return None
    aside = database.with_name(f"{database.name}{DAMAGED_SUFFIX}{time.strftime('%Y%m%d-%H%M%S')}")
    for suffix in ("", "-wal", "-shm", "-journal"):
        part = database.with_name(database.name + suffix)
        if part.exists():
            part.rename(aside.with_name(aside.name + suffix))
    return (f"{database}: not a sound SQLite database ({damage}); set aside as {aside.name} and starting a "
            "fresh one (the runs it held are no longer in `harness ui`; their run folders are untouched)")


def results_db_dir(results_dir: Path, run_id: str, stack: contextlib.ExitStack,
                   on_event: Callable[[str], None] | None = None) -> Path:
    """Where a run's own server keeps its database under `results_dir`: the folder's shared one
    while no other run is using it (locked until `stack` closes), else one of the run's own.
    A damaged database there is set aside first (`set_aside_if_damaged`, said through
    `on_event`). If the run fails, what it created here is removed (`_discard_unless_done`)."""
    shared = Path(results_dir) / DB_DIR
    made = _missing(shared)
    shared.mkdir(parents=True, exist_ok=True)
    fd = _lock(shared / DB_LOCK)
    db_dir = shared if fd is not None else shared / RUNS_DB_DIR / (run_id or f"pid-{os.getpid()}")
    made += _missing(db_dir)
    database = db_dir / DB_NAME
    if fd is not None and (said := set_aside_if_damaged(database)) and on_event:  # the lock: no server on it
        on_event(said)
    # pushed first: it runs last, after the server has stopped and the lock is released
    stack.push(functools.partial(_discard_unless_done, None if database.exists() else database, made))
    if fd is not None:
        stack.callback(os.close, fd)
    return db_dir


def open_api(stack: contextlib.ExitStack, startup: dict[str, Any],
             on_event: Callable[[str], None] | None = None,
             existing: tuple[str, str] | None = None, results_dir: Path | None = None,
             run_id: str = "") -> str:
    """The API URL to use: the one Prefect's settings name if any (`existing`, checked by
    existing_api), else a server we start and `stack` stops, its database under `results_dir`
    (a scratch one without it). Records in `startup` which it was and, if started, how long
    it took and where its database is."""
    existing = existing or existing_api()
    if existing:
        startup["prefect_server"] = "existing"
        startup["prefect_server_version"] = existing[1]
        return existing[0]
    db_dir = results_db_dir(results_dir, run_id, stack, on_event) if results_dir is not None else None
    server = start_prefect_server(on_event, db_dir)
    stack.callback(server.stop)
    startup["prefect_server"] = "started"
    startup["prefect_server_s"] = round(server.startup_s, 3)
    startup["prefect_server_seeded_db"] = server.seeded_from_template
    startup["prefect_database"] = str(server.database) if db_dir is not None else "scratch (deleted at exit)"
    return server.api_url
