"""The machinery a run stands on: a Prefect API server, a Dask cluster, and the settings that
join them.

By default the harness starts both itself (a loopback `prefect server start` on SQLite and a
Dask LocalCluster) and stops them at the end, even on error or Ctrl-C. An existing
`PREFECT_API_URL` in the environment, or a scheduler address, is used instead.

The settings applied are the measured ones from RUNTIME.md: each is there because it cuts
Prefect's per-task cost without changing what a task does, and every report records them.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import RunError, SpecError
from harness.spec import ClusterSpec

# `prefect server start` took 12-14 s on a fresh database and ~5 s on a migrated one here;
# a slow CI machine gets four times the worst case before we call it failed.
SERVER_START_TIMEOUT_S = 60.0
HEALTH_POLL_INTERVAL_S = 0.1
# A scheduler that does not answer in this long is not going to: say so (exit 2) rather than hang.
SCHEDULER_CONNECT_TIMEOUT_S = 10.0
# Dask's per-stream message log length (see open_runtime): enough lines to debug a stream,
# too few to hold a run's items.
LOW_LEVEL_LOG_LENGTH = 16
# SIGTERM first so uvicorn closes SQLite cleanly; SIGKILL the group if it has not gone by then.
SERVER_STOP_GRACE_S = 10.0

# The two ways of shipping Prefect context to Dask workers (recorded in every report).
#  stock: prefect-dask as released: every submit serialises Prefect's whole settings object
#         (~30 ms of flow CPU) and each task rebuilds it on the worker (~45 ms).
#  lean:  the settings object is left out of the per-task context; workers read the same
#         settings from their own environment, which the harness sets (and checks) before the
#         first task. Cut the per-task cost from 45-65 ms to 13-23 ms (RUNTIME.md).
PROFILES = ("lean", "stock")

# Server-side settings: task runs are recorded in batches (35-45 ms of server CPU per task
# one by one, 4-6 ms in batches of 100), and services the harness never uses are off so they
# do not compete with the workers for the machine's cores.
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

# Client-side settings for the flow process and every Dask worker.
CLIENT_SETTINGS = {
    # Benchmark runs: no log shipping to the API, only warnings on the console.
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_LOGGING_TO_API_ENABLED": "false",
    # Without an API URL Prefect silently starts a temporary server per process (~300 ms per
    # task, runs invisible to the real API): make that an error instead.
    "PREFECT_SERVER_EPHEMERAL_ENABLED": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def cache_dir() -> Path:
    """Where the harness keeps its migrated-database template and its servers' homes."""
    root = os.environ.get("HARNESS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "harness"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _is_loopback_http(url: str) -> bool:
    return re.match(r"^http://(127\.\d+\.\d+\.\d+|localhost)(:\d+)?/", url) is not None


def _one_certificate_file() -> Path:
    """A PEM holding a single CA certificate.

    Prefect builds an SSL context for every client, loading the whole CA bundle (~29 ms, twice
    per task). For a plain-http loopback API no certificate is ever checked, so any one valid
    certificate does; we take the first of the bundle the machine already trusts.
    """
    import certifi

    target = cache_dir() / "one-cert.pem"
    if not target.exists():
        bundle = Path(certifi.where()).read_text()
        first = bundle[: bundle.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")]
        first = first[first.index("-----BEGIN CERTIFICATE-----") :]
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(first + "\n")
        tmp.replace(target)
    return target


def client_settings(api_url: str) -> dict[str, str]:
    """Environment for the flow process and the Dask workers, given the API they talk to."""
    settings = {"PREFECT_API_URL": api_url, **CLIENT_SETTINGS}
    if _is_loopback_http(api_url):
        # Safe only because nothing is verified over plain http (never for a remote https API).
        settings["PREFECT_API_SSL_CERT_FILE"] = str(_one_certificate_file())
    return settings


def _health_ok(api_url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(api_url.rstrip("/") + "/health", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


# --------------------------------------------------------------------------- Prefect server


@dataclass
class PrefectServer:
    """A `prefect server start` subprocess in its own process group and its own PREFECT_HOME."""

    api_url: str
    process: subprocess.Popen[bytes]
    home: Path
    log_path: Path
    startup_s: float
    seeded_from_template: bool

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
        _save_template(self.home)
        shutil.rmtree(self.home, ignore_errors=True)


def _template_db() -> Path:
    return cache_dir() / "template" / "prefect.db"


def _save_template(home: Path) -> None:
    """Keep the first cleanly migrated database, so later servers skip the 8 s of migrations."""
    template = _template_db()
    db = home / "prefect.db"
    if template.exists() or not db.exists():
        return
    template.parent.mkdir(parents=True, exist_ok=True)
    tmp = template.with_suffix(f".{os.getpid()}.tmp")
    shutil.copyfile(db, tmp)
    tmp.replace(template)


def start_prefect_server() -> PrefectServer:
    """Start a loopback Prefect API server on a free port and wait until it answers."""
    homes = cache_dir() / "homes"
    homes.mkdir(exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="server-", dir=homes))
    seeded = _template_db().exists()
    if seeded:
        shutil.copyfile(_template_db(), home / "prefect.db")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        **SERVER_SETTINGS,
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
    }
    env.pop("PREFECT_API_URL", None)
    log_path = home / "server.log"
    started = time.perf_counter()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
             "--port", str(port), "--no-ui"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group: stop() takes uvicorn's children too
        )
    server = PrefectServer(api_url, process, home, log_path, 0.0, seeded)
    deadline = started + SERVER_START_TIMEOUT_S
    while not _health_ok(api_url, timeout=1.0):
        if process.poll() is not None or time.perf_counter() > deadline:
            tail = log_path.read_text(errors="replace")[-2000:]
            server.stop()
            reason = "exited" if process.poll() is not None else f"did not answer in {SERVER_START_TIMEOUT_S:.0f} s"
            raise RunError(f"the Prefect server {reason}; its log ends with:\n{tail}")
        time.sleep(HEALTH_POLL_INTERVAL_S)
    server.startup_s = time.perf_counter() - started
    return server


# --------------------------------------------------------------------------- Dask


def _probe_worker(api_url: str) -> dict[str, Any]:
    """Runs on each Dask worker before the first task: can this worker reach our API?"""
    import os as _os
    import urllib.request as _request

    seen = _os.environ.get("PREFECT_API_URL", "")
    reachable, error = False, ""
    if seen:
        try:
            with _request.urlopen(seen.rstrip("/") + "/health", timeout=5) as resp:
                reachable = resp.status == 200
        except Exception as exc:  # any failure is the answer we report
            error = f"{type(exc).__name__}: {exc}"
    # Import Prefect now so the first measured task does not pay for it.
    import prefect  # noqa: F401

    return {
        "pid": _os.getpid(),
        "api_url": seen,
        "reachable": reachable,
        "error": error,
        "ephemeral_enabled": _os.environ.get("PREFECT_SERVER_EPHEMERAL_ENABLED", "(unset: true)"),
    }


def check_workers(client: Any, api_url: str) -> dict[str, dict[str, Any]]:
    """Fail with a clear error unless every worker reaches the API the flow uses.

    A worker without PREFECT_API_URL would start its own temporary server for each task run:
    ~300 ms per task, and task runs the real API never sees.
    """
    probes = client.run(_probe_worker, api_url)
    problems = []
    for address, probe in sorted(probes.items()):
        if not probe["api_url"]:
            problems.append(f"{address}: PREFECT_API_URL is not set in the worker's environment")
        elif probe["api_url"].rstrip("/") != api_url.rstrip("/"):
            problems.append(f"{address}: PREFECT_API_URL is {probe['api_url']}, the flow uses {api_url}")
        elif not probe["reachable"]:
            problems.append(f"{address}: cannot reach {probe['api_url']} ({probe['error']})")
    if problems:
        raise SpecError(
            "Dask workers not fit to run Prefect tasks:\n  " + "\n  ".join(problems)
            + f"\nStart each worker with PREFECT_API_URL={api_url} in its environment "
            "(see README, 'Running on your own cluster')."
        )
    return probes


def worker_layout(client: Any) -> list[dict[str, Any]]:
    info = client.scheduler_info(n_workers=-1)
    return [
        {"address": addr, "nthreads": w.get("nthreads", 1), "memory_limit": w.get("memory_limit")}
        for addr, w in sorted(info["workers"].items())
    ]


# --------------------------------------------------------------------------- the whole runtime


@dataclass
class Runtime:
    """What a run needs from its environment, and what the report says about it."""

    api_url: str
    scheduler_address: str
    client: Any  # distributed.Client, for the reference strategies and the checks
    worker_threads: int
    profile: str
    settings: dict[str, str]
    layout: list[dict[str, Any]]
    startup: dict[str, Any] = field(default_factory=dict)

    def task_runner(self) -> Any:
        """A DaskTaskRunner on this runtime's cluster, for a flow about to run."""
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=self.scheduler_address)

    def submitting(self) -> contextlib.AbstractContextManager[None]:
        """Wrap a flow call: task submits follow this runtime's profile (lean or stock)."""
        return lean_task_context(self.profile)

    def describe(self) -> dict[str, Any]:
        return {
            "api_url": self.api_url,
            "scheduler_address": self.scheduler_address,
            "worker_threads": self.worker_threads,
            "profile": self.profile,
            "settings": self.settings,
            "workers": self.layout,
            "startup": self.startup,
        }


@contextlib.contextmanager
def lean_task_context(profile: str) -> Iterator[None]:
    """While active, DaskTaskRunner submits leave Prefect's settings out of each task's context.

    prefect-dask calls `serialize_context` (a module global) once per submit; we swap it, so
    the stock path stays one argument away. Workers then use the settings of their own
    environment, which `check_workers` has verified.
    """
    if profile == "stock":
        yield
        return
    import prefect_dask.client as dask_client

    stock = dask_client.serialize_context
    dask_client.serialize_context = serialize_context_without_settings
    try:
        yield
    finally:
        dask_client.serialize_context = stock


def serialize_context_without_settings(asset_ctx_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """`prefect.context.serialize_context` (Prefect 3.9) minus the settings object.

    Dumping the settings is most of the flow's CPU per submit (~65 ms of 80 under cProfile
    here); the worker then rebuilds nothing and uses the settings of its own environment.
    Kept line for line with Prefect's function otherwise; the `stock` profile measures theirs.
    """
    from prefect.context import (
        AssetContext,
        EngineContext,
        TagsContext,
        TaskRunContext,
        _deployment_id,
        _deployment_parameters,
    )

    flow_run_context = EngineContext.get()
    task_run_context = TaskRunContext.get()
    tags_context = TagsContext.get()
    deployment_id = _deployment_id.get()
    return {
        "flow_run_context": flow_run_context.serialize() if flow_run_context else {},
        "task_run_context": task_run_context.serialize() if task_run_context else {},
        "tags_context": tags_context.serialize() if tags_context else {},
        "settings_context": {},
        "asset_context": AssetContext.from_task_and_inputs(**asset_ctx_kwargs).serialize()
        if asset_ctx_kwargs
        else {},
        "deployment_id": str(deployment_id) if deployment_id else None,
        "deployment_parameters": _deployment_parameters.get(),
    }


@contextlib.contextmanager
def open_runtime(cluster: ClusterSpec, profile: str = "lean") -> Iterator[Runtime]:
    """Start (or connect to) the Prefect API and the Dask cluster; tear down what we started."""
    if profile not in PROFILES:
        raise SpecError(f"--profile: found {profile!r}, expected one of {', '.join(PROFILES)}")
    with contextlib.ExitStack() as stack:
        stack.enter_context(_quiet_loggers())  # first in, last out: quiet through teardown too
        startup: dict[str, Any] = {}
        api_url = os.environ.get("PREFECT_API_URL", "")
        if api_url:
            if not _health_ok(api_url):
                raise SpecError(f"PREFECT_API_URL={api_url}: no Prefect API answers at {api_url}/health")
            startup["prefect_server"] = "existing"
        else:
            server = start_prefect_server()
            stack.callback(server.stop)
            api_url = server.api_url
            startup["prefect_server"] = "started"
            startup["prefect_server_s"] = round(server.startup_s, 3)
            startup["prefect_server_seeded_db"] = server.seeded_from_template

        settings = client_settings(api_url)
        # The flow process: environment for anything that reads it later (and LocalCluster
        # workers, which inherit it), plus a settings context for Prefect already imported.
        saved_env = {k: os.environ.get(k) for k in settings}
        os.environ.update(settings)
        stack.callback(_restore_env, saved_env)
        stack.enter_context(_prefect_settings(settings))

        import dask
        import distributed

        # Dask keeps the last `low-level-log-length` (default 1,000) messages of every batched
        # stream for debugging, each compute-task message with its task's parameters: with the
        # scheduler in this process that held every item of the last 1,000 tasks (+27 MB per
        # run of 50,000 items here, growing to ~1 GB over large.toml). 16 keeps a short log.
        stack.enter_context(dask.config.set({"distributed.admin.low-level-log-length": LOW_LEVEL_LOG_LENGTH}))

        started = time.perf_counter()
        address = cluster.address
        if address:
            try:
                client = stack.enter_context(
                    distributed.Client(address, timeout=SCHEDULER_CONNECT_TIMEOUT_S, set_as_default=False)
                )
            except (OSError, TimeoutError) as exc:
                raise SpecError(f"[cluster] address / --dask-address: cannot reach a Dask scheduler at {address} ({exc})") from None
            startup["dask_cluster"] = "existing"
        else:
            local = stack.enter_context(
                distributed.LocalCluster(
                    n_workers=cluster.workers,
                    threads_per_worker=cluster.threads_per_worker,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                    # dashboard_address=None still opens the scheduler's HTTP server on 8787;
                    # a free loopback port avoids clashing with another cluster on the machine.
                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                    env={**settings, "DASK_DISTRIBUTED__ADMIN__LOW_LEVEL_LOG_LENGTH": str(LOW_LEVEL_LOG_LENGTH)},
                    silence_logs=40,  # logging.ERROR: the run's output is the report, not Dask's chatter
                )
            )
            client = stack.enter_context(distributed.Client(local, set_as_default=False))
            address = local.scheduler_address
            startup["dask_cluster"] = "started"
        startup["dask_cluster_s"] = round(time.perf_counter() - started, 3)

        started = time.perf_counter()
        check_workers(client, api_url)
        startup["worker_check_s"] = round(time.perf_counter() - started, 3)
        layout = worker_layout(client)
        yield Runtime(
            api_url=api_url,
            scheduler_address=address,
            client=client,
            worker_threads=sum(w["nthreads"] for w in layout),
            profile=profile,
            settings={**settings, **({} if startup["prefect_server"] == "existing" else SERVER_SETTINGS)},
            layout=layout,
            startup=startup,
        )


def _restore_env(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# Loggers already configured by the time the settings apply: a benchmark's console output is
# its progress and its report, not a line per flow run and per Dask life-cycle event.
QUIET_LOGGERS = ("prefect", "distributed")


@contextlib.contextmanager
def _quiet_loggers() -> Iterator[None]:
    import logging

    import distributed  # noqa: F401  (creates its loggers, some with levels of their own)

    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in QUIET_LOGGERS]
    names += list(QUIET_LOGGERS)
    saved = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.WARNING)
    # Injected faults fail tasks on purpose; each is counted in runs.csv, not logged as an ERROR.
    names.append("prefect.task_runs")
    saved.setdefault("prefect.task_runs", logging.getLogger("prefect.task_runs").level)
    logging.getLogger("prefect.task_runs").setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def _prefect_settings(settings: dict[str, str]) -> Iterator[None]:
    import prefect.settings as ps

    updates = {getattr(ps, name): value for name, value in settings.items()}
    with ps.temporary_settings(updates=updates):
        yield
