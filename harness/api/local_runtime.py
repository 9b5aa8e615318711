"""`local_runtime()`: the CLI's Prefect API and Dask cluster for a script or a notebook
(docs/api.md)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LocalRuntime:
    """What `local_runtime()` yields: run a flow with `flow.with_options(task_runner=rt.task_runner)`."""

    task_runner: Any  # a prefect_dask.DaskTaskRunner bound to `client`'s cluster
    client: Any  # distributed.Client
    api_url: str
    dashboard_link: str | None
    scheduler_address: str
    worker_threads: int
    profile: str
    runtime: Any  # the harness.runtime.Runtime underneath (what a report records)


@contextlib.contextmanager
def local_runtime(
    workers: int = 2,
    threads_per_worker: int = 1,
    *,
    address: str | None = None,
    profile: str = "stock",
    allow_setting_loss: bool = False,
) -> Iterator[LocalRuntime]:
    """A Prefect API and a Dask cluster for flows run from this process; stopped on exit.

    Joins an existing Prefect API when one is configured (PREFECT_API_URL, as Prefect resolves
    it: environment or active profile), else starts a loopback `prefect server` on SQLite.
    Joins the Dask scheduler at `address` when given (its workers need PREFECT_API_URL: docs/prefect-and-dask.md,
    "Running on your own cluster"), else starts a LocalCluster of `workers` processes with
    `threads_per_worker` threads each. Whatever it started is stopped on exit, also on an
    exception; while it is open, this process runs with the client settings the harness's
    own runs use (docs/runtime-notes.md), restored on exit.

    `profile`: "stock" (default) ships Prefect's settings with every task as prefect-dask does,
    so what a flow sets (`temporary_settings` around a submit, a setting only this process
    has) reaches its tasks. "lean" is an opt-in that drops that per-task copy for a lower
    cost per task: tasks then read the settings of the workers' own environment, and any
    setting the flow changes at run time (e.g. PREFECT_TASKS_REFRESH_CACHE,
    PREFECT_LOGGING_TO_API_ENABLED, PREFECT_API_KEY set only here) does not reach them.
    Under "lean" the workers' settings are compared with this process's before the first task
    and at every submit: a difference is refused (SpecError naming it) unless
    `allow_setting_loss`. It applies to every DaskTaskRunner submit in this process while the
    runtime is open; `profile` on the yielded object says which one is in force (stock when
    the installed Prefect cannot run lean).
    """
    from harness.runtime import open_runtime
    from harness.workload.spec import ClusterSpec

    cluster = ClusterSpec(workers=workers, threads_per_worker=threads_per_worker, address=address or "")
    with contextlib.ExitStack() as stack:
        stack.enter_context(_api_url_from_prefect())
        runtime = stack.enter_context(open_runtime(cluster, profile, allow_setting_loss=allow_setting_loss))
        stack.enter_context(runtime.submitting())
        yield LocalRuntime(
            task_runner=runtime.task_runner(),
            client=runtime.client,
            api_url=runtime.api_url,
            dashboard_link=getattr(runtime.client, "dashboard_link", None),
            scheduler_address=runtime.scheduler_address,
            worker_threads=runtime.worker_threads,
            profile=runtime.profile,
            runtime=runtime,
        )


@contextlib.contextmanager
def _api_url_from_prefect() -> Iterator[None]:
    """PREFECT_API_URL in os.environ while open, when Prefect's settings have one (a profile)
    and the environment does not: the runtime joins what Prefect would use, never a second API."""
    if os.environ.get("PREFECT_API_URL"):
        yield
        return
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        yield
        return
    os.environ["PREFECT_API_URL"] = url
    try:
        yield
    finally:
        os.environ.pop("PREFECT_API_URL", None)
