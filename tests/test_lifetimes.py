"""Nothing outlives the harness, and every wait is bounded (issue 16, items 1, 2, 4, 7, 8).

Real processes throughout: `python -m harness run workloads/small.toml --quick` as a
subprocess killed at chosen points (its server and cluster found in its process tree before the
kill, checked gone by PID after), a silent TCP listener and a worker-less `dask scheduler` as
--dask-address, a damaged template database, and the worker-side filter for injected faults.
Each subprocess has its own HARNESS_CACHE_DIR, seeded from the real template when one exists.
"""

from __future__ import annotations

import logging
import os
import pathlib
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from harness.errors import SpecError
from harness.measure.run_folder import remove_stale_partials, run_folder
from harness.runtime import check_address, reap_orphaned_servers
from harness.runtime.logs import InjectedFaultFilter
from harness.runtime.orphans import record_server
from harness.runtime.template_db import copy_database, database_damage, save_template, seed_home, template_path
from harness.work.faults import PermanentFault, TransientFault

REPO = Path(__file__).resolve().parents[1]
SMALL = REPO / "workloads" / "small.toml"
# Every wait below has this bound unless it says otherwise: start-up of a server and a cluster
# on a loaded 2-core machine stays well under it.
STEP_TIMEOUT_S = 120
# What a killed harness's children get to die: the server's watchdog polls every 0.5 s and
# Dask workers exit when their pipe to the parent closes.
DEATH_TIMEOUT_S = 15
SIGINT_EXIT_BOUND_S = 6.0


# ------------------------------------------------------------------------------ helpers


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache folder of this test's own, holding a copy of the real template if there is one
    (a seeded server starts in seconds, a fresh one migrates for ten or more)."""
    real = template_path()
    folder = tmp_path / "cache"
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(folder))
    if real.exists() and database_damage(real) is None:
        template_path().parent.mkdir(parents=True, exist_ok=True)
        copy_database(real, template_path())
    return folder


def _harness(out: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}  # its own runtime
    env["PYTHONPATH"] = str(REPO)
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(SMALL), "--quick", "--out", str(out), *args],
        env=env, cwd=out.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_until(condition, timeout: float = STEP_TIMEOUT_S, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _server_children(proc: subprocess.Popen[str]) -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process(proc.pid).children(recursive=True)
                if "server_entry.py" in " ".join(p.cmdline())]
    except psutil.Error:
        return []


def _finish(proc: subprocess.Popen[str]) -> str:
    try:
        _, err = proc.communicate(timeout=STEP_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    return err


def _assert_gone(procs: list[psutil.Process]) -> None:
    _, alive = psutil.wait_procs(procs, timeout=DEATH_TIMEOUT_S)
    assert not alive, [(p.pid, p.cmdline()) for p in alive]


@pytest.fixture
def silent_listener() -> Iterator[str]:
    """A TCP port that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(timeout=5)
    for conn in accepted:
        conn.close()
    server.close()


# ------------------------------------------------------------------------------ kills


@pytest.mark.cluster
def test_sigterm_while_the_server_starts_stops_it_and_writes_nothing(tmp_path, cache):
    out = tmp_path / "results"
    proc = _harness(out)
    try:
        _wait_until(lambda: _server_children(proc) or proc.poll() is not None, what="the server process")
        servers = _server_children(proc)
        assert servers, proc.stderr.read()[-2000:] if proc.poll() is not None else "no server"
        proc.send_signal(signal.SIGTERM)
        err = _finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    _assert_gone(servers)
    assert not out.exists()  # not even an empty <out>/<name>/
    assert list((cache / "servers").glob("*.json")) == []  # it stopped its server: no record left
    assert list((cache / "homes").iterdir()) == []


@pytest.mark.cluster
def test_sigkill_mid_run_takes_server_and_workers_along_and_the_next_start_cleans_up(tmp_path, cache):
    out = tmp_path / "results"
    proc = _harness(out)
    try:
        _wait_until(lambda: proc.poll() is not None or any((out / "small").glob(".*.partial")),
                    what="the run's partial folder")
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        tree = psutil.Process(proc.pid).children(recursive=True)
        assert any("server_entry.py" in " ".join(p.cmdline()) for p in tree)
        assert sum("distributed" in " ".join(p.cmdline()) or "multiprocessing" in " ".join(p.cmdline())
                   for p in tree) >= 2, [p.cmdline() for p in tree]  # the LocalCluster's workers
        proc.kill()
        proc.wait(timeout=DEATH_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=DEATH_TIMEOUT_S)
    _assert_gone(tree)

    # what the killed run left: its partial folder, its server's record and home
    partials = list((out / "small").glob(".*.partial"))
    assert len(partials) == 1
    assert len(list((cache / "servers").glob("*.json"))) == 1
    live = out / "small" / f".20990101-000000-abcd.{os.getpid()}.partial"  # a live run's: kept
    live.mkdir()
    assert remove_stale_partials(out, "small") == partials
    assert not partials[0].exists() and live.exists()
    reap_orphaned_servers()  # its server is already dead: the record and home just go
    assert list((cache / "servers").glob("*.json")) == []
    assert list((cache / "homes").iterdir()) == []


def test_reap_stops_a_recorded_server_whose_parent_is_dead(cache):
    """A server that outlived its harness (say, its watchdog was stopped too) is stopped by the
    next start, which says so; a reused pid or a live parent's server is left alone."""
    dead_parent = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_parent.wait()
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "server_entry.py"],
                              start_new_session=True)
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "server_entry.py"],
                            start_new_session=True)
    try:
        _wait_until(lambda: "server_entry.py" in " ".join(psutil.Process(orphan.pid).cmdline()), 10, "cmdline")
        home = cache / "homes" / "server-x"
        home.mkdir(parents=True)
        record = record_server(orphan.pid, home)
        record.write_text(record.read_text().replace(f'"parent_pid": {os.getpid()}', f'"parent_pid": {dead_parent.pid}'))
        record_server(ours.pid, cache / "homes" / "server-y")  # parent: this live process
        said = reap_orphaned_servers()
        assert len(said) == 1 and str(orphan.pid) in said[0], said
        assert orphan.wait(timeout=DEATH_TIMEOUT_S) == -signal.SIGKILL
        assert not home.exists() and not record.exists()
        assert ours.poll() is None
    finally:
        for p in (orphan, ours):
            if p.poll() is None:
                p.kill()
                p.wait()


# ------------------------------------------------------------------------------ bounded waits


@pytest.mark.cluster
def test_a_silent_listener_as_dask_address_exits_2_naming_it(tmp_path, cache, silent_listener):
    out = tmp_path / "results"
    started = time.monotonic()
    proc = _harness(out, "--dask-address", silent_listener, "--connect-timeout", "1.5")
    err = _finish(proc)
    assert proc.returncode == 2, err[-2000:]
    assert silent_listener in err and "no Dask scheduler answered there within 1.5 s" in err, err[-2000:]
    assert time.monotonic() - started < STEP_TIMEOUT_S
    assert not out.exists()
    assert not (cache / "homes").exists() or list((cache / "homes").iterdir()) == []  # no server started


@pytest.mark.cluster
def test_sigint_while_connecting_exits_promptly(tmp_path, cache, silent_listener):
    out = tmp_path / "results"
    proc = _harness(out, "--dask-address", silent_listener)
    try:
        for line in proc.stderr:  # the address is probed right after this line
            if "starting the runtime" in line:
                break
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        proc.wait(timeout=STEP_TIMEOUT_S)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=DEATH_TIMEOUT_S)
    assert proc.returncode == 130
    # ~2 s on an idle machine, most of it the interpreter's exit; a hang behind the probe was
    # 21 s before. The bound leaves room for a loaded machine and still tells the two apart.
    assert took < SIGINT_EXIT_BOUND_S, took


@pytest.mark.cluster
def test_a_scheduler_without_workers_exits_2_after_the_worker_timeout(tmp_path, cache):
    dask = Path(sys.executable).with_name("dask")
    log = tmp_path / "scheduler.log"
    with open(log, "w") as sink:
        scheduler = subprocess.Popen([str(dask), "scheduler", "--host", "127.0.0.1", "--port", "0",
                                      "--dashboard-address", "127.0.0.1:0"], stdout=sink, stderr=subprocess.STDOUT)
    try:
        import re

        found: list[str] = []

        def listening() -> bool:
            found[:] = re.findall(r"Scheduler at:\s+(tcp://[\d.:]+)", log.read_text())
            assert scheduler.poll() is None, log.read_text()
            return bool(found)

        _wait_until(listening, what="the dask scheduler")
        out = tmp_path / "results"
        proc = _harness(out, "--dask-address", found[0], "--worker-timeout", "2")
        err = _finish(proc)
    finally:
        scheduler.terminate()
        scheduler.wait(timeout=DEATH_TIMEOUT_S)
    assert proc.returncode == 2, err[-2000:]
    assert found[0] in err and "no workers" in err and "2 s" in err
    assert not out.exists()


@pytest.mark.parametrize("address, named", [
    ("inproc://somewhere", "inproc://"),
    ("ucx://127.0.0.1:8786", "ucx://"),
    ("tls://127.0.0.1:8786", "TLS configuration"),
])
def test_unreachable_schemes_are_refused(address, named):
    with pytest.raises(SpecError, match=named) as info:
        check_address(address)
    assert address in str(info.value)


def test_tcp_and_bare_addresses_pass_the_scheme_check():
    check_address("tcp://127.0.0.1:8786")
    check_address("127.0.0.1:8786")


def test_a_health_endpoint_that_is_not_prefect_exits_2(monkeypatch):
    """Something answers /health but /admin/version gives no Prefect version."""
    import http.server

    from harness.runtime import STOCK, open_runtime
    from harness.workload.spec import ClusterSpec

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            self.send_response(200 if self.path.endswith("/health") else 404)
            self.end_headers()
            self.wfile.write(b"true")

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_port}/api"
        monkeypatch.setenv("PREFECT_API_URL", url)
        with pytest.raises(SpecError, match="not a Prefect API") as info, open_runtime(ClusterSpec(), STOCK):
            pass
        assert url in str(info.value)
    finally:
        httpd.shutdown()
        httpd.server_close()


# ------------------------------------------------------------------------------ folders


def test_a_failed_run_leaves_no_empty_folders(tmp_path):
    out = tmp_path / "results"
    with pytest.raises(RuntimeError), run_folder(out, "w") as (partial, _):
        assert partial.is_dir() and str(os.getpid()) in partial.name
        raise RuntimeError("the run failed")
    assert not out.exists()


def test_a_failed_run_keeps_an_out_folder_that_holds_other_runs(tmp_path):
    out = tmp_path / "results"
    with run_folder(out, "w") as (partial, _):
        (partial / "runs.csv").write_text("x\n")
    with pytest.raises(KeyboardInterrupt), run_folder(out, "w"):
        raise KeyboardInterrupt
    names = sorted(p.name for p in (out / "w").iterdir())
    assert len(names) == 2 and "latest" in names, names  # the first run and `latest`, no partial


def test_a_ctrl_c_as_the_partial_folder_is_made_removes_it(tmp_path, monkeypatch):
    # The moment the folder becomes visible is when a user (or a test) sees the run has begun:
    # a Ctrl-C landing as mkdir returns, before the body starts, must not leave it behind.
    made = pathlib.Path.mkdir

    def mkdir_then_interrupted(self, *args, **kwargs):
        made(self, *args, **kwargs)
        if self.name.endswith(".partial"):
            raise KeyboardInterrupt
    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir_then_interrupted)
    out = tmp_path / "results"
    with pytest.raises(KeyboardInterrupt), run_folder(out, "w"):
        pytest.fail("the body never starts")
    assert not out.exists()


def test_stale_partials_of_dead_processes_go_live_ones_stay(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    parent = tmp_path / "w"
    parent.mkdir()
    stale = parent / f".20260101-000000-aaaa.{dead.pid}.partial"
    live = parent / f".20260101-000000-bbbb.{os.getpid()}.partial"
    other = parent / ".20260101-000000-cccc.partial"  # an older harness's naming: not judged
    for folder in (stale, live, other):
        folder.mkdir()
    assert remove_stale_partials(tmp_path, "w") == [stale]
    assert not stale.exists() and live.exists() and other.exists()


# ------------------------------------------------------------------------------ template database


def _small_db(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
        db.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"row {i}") for i in range(500)])
    db.close()


def test_a_copied_database_opens_and_holds_what_the_template_held(tmp_path, cache):
    template_path().unlink(missing_ok=True)  # this test's own database becomes the template
    home = tmp_path / "home"
    home.mkdir()
    _small_db(home / "prefect.db")
    live = sqlite3.connect(home / "prefect.db")  # open, in WAL mode, while it is copied
    try:
        save_template(home / "prefect.db")
    finally:
        live.close()
    assert database_damage(template_path()) is None
    target = tmp_path / "new-home"
    target.mkdir()
    assert seed_home(target) is True
    with sqlite3.connect(target / "prefect.db") as db:
        assert db.execute("SELECT count(*), max(v) FROM t").fetchone() == (500, "row 99")
    db.close()


def test_a_damaged_template_is_deleted_said_and_rebuilt(tmp_path, cache):
    template_path().parent.mkdir(parents=True, exist_ok=True)
    template_path().write_bytes(b"SQLite format 3\x00" + os.urandom(8192))  # a header, then garbage
    assert database_damage(template_path()) is not None
    said: list[str] = []
    home = tmp_path / "home"
    home.mkdir()
    assert seed_home(home, said.append) is False
    assert len(said) == 1 and str(template_path()) in said[0] and "damaged" in said[0]
    assert not template_path().exists() and not (home / "prefect.db").exists()
    _small_db(home / "prefect.db")  # what the server that migrated a fresh database leaves
    save_template(home / "prefect.db")
    assert database_damage(template_path()) is None


def test_a_template_holding_runs_is_deleted_said_and_rebuilt(tmp_path, cache):
    """An older harness saved the template when a server stopped, with the runs made on it: every
    server seeded from it listed them."""
    template_path().unlink(missing_ok=True)
    template_path().parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(template_path()) as db:
        db.execute("CREATE TABLE flow_run (id TEXT)")
        db.execute("INSERT INTO flow_run VALUES ('an old run')")
    db.close()
    said: list[str] = []
    home = tmp_path / "home"
    home.mkdir()
    assert seed_home(home, said.append) is False
    assert len(said) == 1 and "holds 1 flow runs" in said[0]
    assert not template_path().exists() and not (home / "prefect.db").exists()


@pytest.mark.cluster
def test_a_real_server_starts_over_a_damaged_template_and_rebuilds_it(cache, tmp_path):
    """A run's own server (its database under the results folder, as `harness run` starts it)."""
    import httpx

    from harness.runtime import start_prefect_server

    template_path().parent.mkdir(parents=True, exist_ok=True)
    template_path().write_bytes(os.urandom(4096))
    said: list[str] = []
    results_db = tmp_path / "results" / ".prefect"
    server = start_prefect_server(said.append, db_dir=results_db)
    try:
        assert not server.seeded_from_template
        # Rebuilt as soon as the server answers, not at its stop: the servers started meanwhile
        # (a test session's subprocess runs) are seeded from it, and no run made later is in it.
        assert database_damage(template_path()) is None
        flow = httpx.post(f"{server.api_url}/flows/", json={"name": "made-after"}).raise_for_status().json()
        httpx.post(f"{server.api_url}/flow_runs/", json={"flow_id": flow["id"]}).raise_for_status()
    finally:
        server.stop()
    assert any("damaged" in line for line in said), said
    for database, runs in ((template_path(), 0), (results_db / "prefect.db", 1)):
        with sqlite3.connect(database) as db:
            assert db.execute("SELECT count(*) FROM flow_run").fetchone() == (runs,), database
        db.close()


# ------------------------------------------------------------------------------ worker logs


def _record(logger: str, exc: BaseException | None = None, args: tuple = (), msg: str = "") -> logging.LogRecord:
    exc_info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord(logger, logging.ERROR, __file__, 1, msg or ("msg %s %s %s %s %s" if args else "msg"),
                             args or None, exc_info)


def test_injected_fault_filter_drops_only_the_harness_own_faults():
    from harness.strategies.resilience import PathFault

    keep = InjectedFaultFilter().filter
    assert not keep(_record("prefect.task_runs", TransientFault(3, 1)))
    assert not keep(_record("prefect.task_runs", PermanentFault(3, 1)))
    assert not keep(_record("prefect.task_runs", PathFault("a", 0, 1)))
    assert keep(_record("prefect.task_runs", ValueError("a bug of the user")))
    finished = "Finished in state Failed('Task run encountered an exception {}')"
    assert not keep(_record("prefect.task_runs", msg=finished.format("PermanentFault: permanent fault injected")))
    assert keep(_record("prefect.task_runs", msg=finished.format("ValueError: a bug of the user")))
    assert not keep(_record("distributed.worker", args=("k", "executing", "t", repr(TransientFault(3, 1)), "tb")))
    assert keep(_record("distributed.worker", args=("k", "executing", "t", repr(ValueError("x")), "tb")))


def _fail_with(kind: str) -> None:
    if kind == "injected":
        raise TransientFault(7, 1)
    raise ValueError("a bug of the user")


class _Capture(logging.Handler):
    """Collects, on a worker, the records that reach the failure loggers' handlers."""

    lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _start_capture() -> None:
    from harness.runtime.logs import WORKER_FAILURE_LOGGERS

    for name in WORKER_FAILURE_LOGGERS:
        logging.getLogger(name).addHandler(_Capture())


def _stop_capture() -> list[str]:
    from harness.runtime.logs import WORKER_FAILURE_LOGGERS

    for name in WORKER_FAILURE_LOGGERS:
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if type(h).__name__ == "_Capture"]:
            logger.removeHandler(handler)
    lines, _Capture.lines = list(_Capture.lines), []
    return lines


@pytest.mark.cluster
def test_workers_log_a_users_error_but_not_an_injected_fault(runtime):
    """On the workers of the session's cluster (open_runtime registered the filter there), a
    raw Dask task failed by an injected fault logs nothing; a user's error still logs."""
    client = runtime.client
    client.run(_start_capture)
    try:
        for kind in ("injected", "user"):
            future = client.submit(_fail_with, kind, pure=False)
            with pytest.raises((TransientFault, ValueError)):
                future.result(timeout=STEP_TIMEOUT_S)
    finally:
        logs = "\n".join(line for lines in client.run(_stop_capture).values() for line in lines)
    assert "Compute Failed" in logs and "a bug of the user" in logs
    assert "TransientFault" not in logs and "fault injected" not in logs
