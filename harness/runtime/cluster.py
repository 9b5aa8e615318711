"""The Dask cluster a run uses: a scheduler address to join (tls:// with a security
configuration), or a LocalCluster we start; and where its dashboard is."""

from __future__ import annotations

import contextlib
from typing import Any

from harness.errors import SpecError
from harness.spec import ClusterSpec

# A scheduler that does not answer in this long is not going to: say so (exit 2) rather than hang.
SCHEDULER_CONNECT_TIMEOUT_S = 10.0
# Dask keeps the last `low-level-log-length` (default 1,000) messages of every batched stream
# for debugging, each compute-task message with its task's parameters, so with the scheduler
# in this process it held every item of the last 1,000 tasks (docs/runtime-notes.md, "Dask's
# low-level log length"). 16 lines are enough to debug a stream, too few to hold a run's items.
LOW_LEVEL_LOG_LENGTH = 16
# The scheduler's task-stream buffer (Dask's default: the last 100,000 tasks; the dashboard keeps
# it whenever bokeh is installed), each record with its start/stop times, ~0.6 KB measured with
# tracemalloc. run.py reads one stage's records at a time (harness.runtime.diagnostics), at most
# DASK_TASK_BUDGET (5,000) tasks for a sampled strategy: twice that holds a stage whole, and caps
# what a LocalCluster's scheduler (in the flow process) keeps at ~6 MB instead of ~60 MB.
TASK_STREAM_LENGTH = 10_000


def security(cluster: ClusterSpec) -> Any:
    """The distributed.Security for `cluster`'s address: None for a local cluster or tcp://;
    from `[cluster] security` (or --dask-security) for tls://, encryption required.
    A SpecError when one is given without the other."""
    tls = cluster.address.startswith("tls://")
    if cluster.security is None:
        if tls:
            raise SpecError(f"[cluster] address / --dask-address: found {cluster.address!r}, a tls:// scheduler, "
                            "but no security configuration: give [cluster] security = {ca_file, cert, key} "
                            "or --dask-security FILE (README, \"Running on your own cluster\")")
        return None
    if not tls:
        raise SpecError(f"[cluster] security / --dask-security: given, but the scheduler address "
                        f"{cluster.address or '(none: a local cluster)'} is not tls://; expected a tls:// "
                        "address, or no security configuration")
    from distributed.security import Security

    return Security(tls_ca_file=cluster.security.ca_file, tls_client_cert=cluster.security.cert,
                    tls_client_key=cluster.security.key, require_encryption=True)


def open_cluster(
    cluster: ClusterSpec, settings: dict[str, str], stack: contextlib.ExitStack, startup: dict[str, Any]
) -> tuple[Any, str]:
    """A distributed.Client and its scheduler address; `stack` closes what we opened.

    A started LocalCluster's workers get `settings` in their environment; a joined cluster's
    workers must already have them (open_runtime checks). Records in `startup` which it was.
    """
    import dask
    import distributed

    tls = security(cluster)
    stack.enter_context(dask.config.set({
        "distributed.admin.low-level-log-length": LOW_LEVEL_LOG_LENGTH,
        "distributed.scheduler.dashboard.tasks.task-stream-length": TASK_STREAM_LENGTH,
    }))
    address = cluster.address
    if address:
        try:
            client = stack.enter_context(
                distributed.Client(address, timeout=SCHEDULER_CONNECT_TIMEOUT_S, set_as_default=False,
                                   **({"security": tls} if tls is not None else {}))
            )
        except (OSError, TimeoutError) as exc:
            raise SpecError(f"[cluster] address / --dask-address: cannot reach a Dask scheduler at {address} ({exc})") from None
        startup["dask_cluster"] = "existing"
        return client, address
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
    startup["dask_cluster"] = "started"
    return client, local.scheduler_address


def dashboard_link(client: Any) -> str | None:
    """The scheduler's dashboard ("http://127.0.0.1:PORT/status"), or None when it serves none
    (Dask serves it only with bokeh installed, and a user's scheduler may run without it)."""
    try:
        return client.dashboard_link or None
    except (KeyError, TypeError, AttributeError):  # no "dashboard" among the scheduler's services
        return None


def worker_layout(client: Any) -> list[dict[str, Any]]:
    """Each worker's address, threads and memory limit, sorted by address (for the report)."""
    info = client.scheduler_info(n_workers=-1)
    return [
        {"address": addr, "nthreads": w.get("nthreads", 1), "memory_limit": w.get("memory_limit")}
        for addr, w in sorted(info["workers"].items())
    ]
