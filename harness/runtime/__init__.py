"""The machinery a run stands on: a Prefect API server, a Dask cluster, and the settings that
join them.

By default the harness starts both itself (a loopback `prefect server start` on SQLite and a
Dask LocalCluster) and stops them at the end, even on error or Ctrl-C; a SIGKILLed harness
takes them with it. The server keeps its database under the results folder (`harness ui`). An
API named by Prefect's own settings (PREFECT_API_URL in the environment, a .env file or the
active profile), or a scheduler address, is used instead, and then the harness changes no
Prefect logging setting unless asked (`quiet_prefect`).

Each setting applied cuts Prefect's per-task cost without changing what a task does; why each
is there, and the command that shows it, is in docs/runtime-notes.md. Every report records
them. One module per job:

  server         the Prefect API: join PREFECT_API_URL or start a server subprocess
  template_db    the migrated-database template new servers are seeded from
  certs          the one-certificate PEM for a plain-http loopback API
  client_env     the flow's and workers' settings, and applying them to this process
  cluster        join a Dask scheduler (tls:// with a Security) or start a LocalCluster; its dashboard
  diagnostics    what Dask saw of a stage (its task stream) and its performance report
  preflight      every worker reaches the API before the first task
  prefect_patch  the profiles: `stock`, and `lean` (Prefect's settings left out of each task's
                 context), chosen by what the installed Prefect offers
  settings_check under `lean`, every Prefect setting compared between the flow and the workers
  logs           quieter Prefect and Dask loggers, injected faults unlogged on the workers
  orphans        servers a killed harness left behind, stopped by the next run
  server_entry   the server subprocess's entry point: it dies with its parent
  ui             `harness ui`: the Prefect UI over a results folder's database
  learned_store  where adaptive_map keeps what a run learned: a cache file or a Prefect Variable
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import SpecError
from harness.runtime.cache import cache_dir
from harness.runtime.client_env import CLIENT_SETTINGS, applied, client_settings, logging_settings
from harness.runtime.cluster import (
    LOW_LEVEL_LOG_LENGTH,
    SCHEDULER_CONNECT_TIMEOUT_S,
    TASK_STREAM_LENGTH,
    WORKER_WAIT_TIMEOUT_S,
    check_address,
    dashboard_link,
    open_cluster,
    probe_scheduler,
    security,
    wait_for_workers,
    worker_layout,
)
from harness.runtime.logs import INJECTED_FAULT_PLUGIN, QUIET_LOGGERS, QuietInjectedFaults, quiet_loggers
from harness.runtime.orphans import reap_orphaned_servers
from harness.runtime.preflight import check_workers
from harness.runtime.prefect_patch import (
    LEAN,
    PROFILES,
    STOCK,
    Profile,
    lean_task_context,
    lean_unavailable,
    serialize_context_without_settings,
)
from harness.runtime.server import (
    SERVER_SETTINGS,
    SERVER_START_TIMEOUT_S,
    PrefectServer,
    configured_api_url,
    existing_api,
    free_port,
    open_api,
    start_prefect_server,
)
from harness.runtime.settings_check import SettingsCheck, check_settings
from harness.workload.spec import ClusterSpec

EventSink = Callable[[str], None]

__all__ = [
    "CLIENT_SETTINGS",
    "LEAN",
    "LOW_LEVEL_LOG_LENGTH",
    "PROFILES",
    "QUIET_LOGGERS",
    "SCHEDULER_CONNECT_TIMEOUT_S",
    "SERVER_SETTINGS",
    "SERVER_START_TIMEOUT_S",
    "STOCK",
    "WORKER_WAIT_TIMEOUT_S",
    "PrefectServer",
    "Profile",
    "Runtime",
    "SettingsCheck",
    "TASK_STREAM_LENGTH",
    "cache_dir",
    "check_address",
    "check_settings",
    "check_workers",
    "client_settings",
    "dashboard_link",
    "configured_api_url",
    "free_port",
    "lean_task_context",
    "lean_unavailable",
    "open_runtime",
    "probe_scheduler",
    "reap_orphaned_servers",
    "security",
    "serialize_context_without_settings",
    "start_prefect_server",
    "worker_layout",
]


@dataclass
class Runtime:
    """What a run needs from its environment, and what the report says about it."""

    api_url: str
    scheduler_address: str
    client: Any  # distributed.Client, for the reference strategies and the checks
    worker_threads: int
    profile: Profile  # the profile in force: `stock` when `lean` was asked for but unavailable
    settings: dict[str, str]
    layout: list[dict[str, Any]]
    startup: dict[str, Any] = field(default_factory=dict)
    # Under `lean`, the preflight's verdict on every Prefect setting; checked again per submit.
    settings_check: SettingsCheck | None = None
    notes: list[str] = field(default_factory=list)  # e.g. "lean unavailable on Prefect X: stock used"
    dashboard: str | None = None  # the scheduler's dashboard link; None when it serves none
    security: Any = None  # distributed.Security for a tls:// scheduler, else None
    run_id: str = ""  # the run folder's name, tagged on every flow run ("" outside `harness run`)

    def task_runner(self) -> Any:
        """A DaskTaskRunner on this runtime's cluster, for a flow about to run."""
        from prefect_dask import DaskTaskRunner

        if self.security is None:
            return DaskTaskRunner(address=self.scheduler_address)
        return DaskTaskRunner(address=self.scheduler_address, client_kwargs={"security": self.security})

    def submitting(self) -> contextlib.AbstractContextManager[None]:
        """Wrap a flow call: task submits follow this runtime's profile (lean or stock)."""
        return lean_task_context(self.profile, self.settings_check)

    def describe(self) -> dict[str, Any]:
        return {
            "api_url": self.api_url,
            "scheduler_address": self.scheduler_address,
            "worker_threads": self.worker_threads,
            "profile": self.profile,
            "profile_notes": self.notes,
            "settings_check": self.settings_check.describe() if self.settings_check
            else "not needed: stock ships the flow's settings with every task",
            "settings": self.settings,
            "workers": self.layout,
            "startup": self.startup,
            "dashboard": self.dashboard,
            "tls": self.security is not None,
            "run_id": self.run_id,
        }


def _checked_before_start(cluster: ClusterSpec, profile: Profile, worker_timeout_s: float | None,
                          connect_timeout_s: float) -> tuple[Any, tuple[str, str] | None]:
    """The profile, the cluster's address and security, a Prefect API the settings name, and an
    existing scheduler's workers, checked before anything starts: bad input costs no server
    start-up. Returns the Security for tls:// (None: none given) and the existing API, if any."""
    if profile not in PROFILES:
        raise SpecError(f"--profile: found {profile!r}, expected one of {', '.join(PROFILES)}")
    tls = security(cluster)  # refused for an address that is not tls://
    if cluster.address:
        check_address(cluster.address, tls)
    existing = existing_api()
    if cluster.address:
        wait_for_workers(cluster.address, WORKER_WAIT_TIMEOUT_S if worker_timeout_s is None else worker_timeout_s,
                         tls, connect_timeout_s)
    return tls, existing


@contextlib.contextmanager
def open_runtime(cluster: ClusterSpec, profile: Profile, *, allow_setting_loss: bool = False,
                 on_event: EventSink | None = None, worker_timeout_s: float | None = None,
                 connect_timeout_s: float | None = None, results_dir: Path | None = None, run_id: str = "",
                 quiet_prefect: bool = False,
                 on_stage: Callable[[str], None] | None = None) -> Iterator[Runtime]:
    """Start (or connect to) the Prefect API and the Dask cluster; tear down what we started.

    `profile` is how Prefect context reaches the workers (PROFILES says what each keeps and
    drops); a user's own flow should pass STOCK unless it opts into LEAN. Under `lean` every
    Prefect setting of the flow process is compared with every worker's before the first task:
    a SpecError names each that differs, unless `allow_setting_loss`, which records them instead.
    If the installed Prefect cannot run `lean`, `stock` is used and `notes` says so.

    Every wait is bounded and ends in a SpecError naming the peer. Servers an earlier, killed
    harness left running are stopped first, and said through `on_event`. `worker_timeout_s`
    (default WORKER_WAIT_TIMEOUT_S): how long an existing scheduler may have no workers;
    `connect_timeout_s` (default SCHEDULER_CONNECT_TIMEOUT_S): how long it may take to answer.

    A server we start keeps its database under `results_dir` (a scratch one without it) and
    `run_id` tags the flow runs. Logging: `quiet_prefect` applies QUIET_LOGGING on any API; else
    the harness's own server gets OWN_SERVER_LOGGING and a user's API none (client_env.py).
    `on_stage(name)` is called as each start-up stage begins (for the progress line).
    """
    connect_timeout_s = SCHEDULER_CONNECT_TIMEOUT_S if connect_timeout_s is None else connect_timeout_s
    tls, existing = _checked_before_start(cluster, profile, worker_timeout_s, connect_timeout_s)
    say = on_event or (lambda message: None)
    for line in reap_orphaned_servers():
        say(line)
    notes: list[str] = []
    if profile == LEAN and (why := lean_unavailable()):
        profile = STOCK
        notes.append(why)
    stage = on_stage or (lambda name: None)
    with contextlib.ExitStack() as stack:
        stack.enter_context(quiet_loggers(("distributed",)))  # first in, last out: through teardown too
        startup: dict[str, Any] = {}
        stage("Prefect API server")
        api_url = open_api(stack, startup, on_event, existing, results_dir, run_id)
        own_server = startup["prefect_server"] == "started"
        if own_server or quiet_prefect:  # on a user's API, Prefect's loggers are theirs
            stack.enter_context(quiet_loggers(("prefect",)))
        settings = client_settings(api_url, logging_settings(own_server, quiet_prefect))
        stack.enter_context(applied(settings))

        stage("Dask cluster")
        started = time.perf_counter()
        client, address = open_cluster(cluster, settings, stack, startup, connect_timeout_s)
        startup["dask_cluster_s"] = round(time.perf_counter() - started, 3)

        stage("worker check")
        started = time.perf_counter()
        check_workers(client, api_url)
        settings_check = check_settings(client, allow_setting_loss) if profile == LEAN else None
        startup["worker_check_s"] = round(time.perf_counter() - started, 3)
        # Left on an existing cluster when the run ends: another run may be using it at the same
        # time, and it drops only the log records of the harness's own injected faults.
        client.register_plugin(QuietInjectedFaults(), name=INJECTED_FAULT_PLUGIN)
        layout = worker_layout(client)
        yield Runtime(
            api_url=api_url,
            scheduler_address=address,
            client=client,
            worker_threads=sum(w["nthreads"] for w in layout),
            profile=profile,
            settings={**settings, **(SERVER_SETTINGS if own_server else {})},
            layout=layout,
            startup=startup,
            settings_check=settings_check,
            notes=notes,
            dashboard=dashboard_link(client),
            security=tls,
            run_id=run_id,
        )
