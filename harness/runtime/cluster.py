"""The Dask cluster a run uses: a scheduler address to join (tls:// with a security
configuration), or a LocalCluster we start; and where its dashboard is."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from harness.errors import SpecError
from harness.workload.spec import ClusterSpec

# A scheduler that does not answer in this long is not going to: say so (exit 2) rather than hang.
# Dask's own default connect timeout is 30 s; a scheduler on a LAN answers in milliseconds, one
# across a slow VPN in a few seconds. `--connect-timeout` overrides it.
SCHEDULER_CONNECT_TIMEOUT_S = 10.0
# An existing scheduler with no workers yet gets this long for one to register: workers started
# alongside a scheduler register within seconds; none after half a minute means none are
# coming, and the first stage would wait for them forever. `--worker-timeout` overrides it.
WORKER_WAIT_TIMEOUT_S = 30.0
WORKER_POLL_INTERVAL_S = 0.5  # one identity call: nothing to the scheduler, prompt to notice
# Address schemes Dask reaches from here: tcp, and tls with a TLS configuration. inproc only
# reaches a scheduler in this very process; ucx needs UCX hardware and its own packages.
TLS_CONFIG_KEYS = ("distributed.comm.tls.ca-file", "distributed.comm.tls.client.cert")
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
    """The distributed.Security from `[cluster] security` (or --dask-security), encryption
    required; None when there is none (a tls:// address then needs Dask's own TLS configuration:
    check_address). A SpecError when it is given for an address that is not tls://."""
    if cluster.security is None:
        return None
    if not cluster.address.startswith("tls://"):
        raise SpecError(f"[cluster] security / --dask-security: given, but the scheduler address "
                        f"{cluster.address or '(none: a local cluster)'} is not tls://; expected a tls:// "
                        "address, or no security configuration")
    from distributed.security import Security

    return Security(tls_ca_file=cluster.security.ca_file, tls_client_cert=cluster.security.cert,
                    tls_client_key=cluster.security.key, require_encryption=True)


def check_address(address: str, security: Any = None) -> None:
    """A SpecError unless Dask can reach `address` with `security` (see `security()`) or this
    process's Dask configuration (no I/O)."""
    import dask.config

    scheme = address.partition("://")[0] if "://" in address else "tcp"
    where = f"[cluster] address / --dask-address: {address}"
    if scheme == "tcp":
        return
    if scheme == "tls":
        if security is not None or any(dask.config.get(key, None) for key in TLS_CONFIG_KEYS):
            return
        raise SpecError(f"{where}: a tls:// scheduler needs a TLS configuration (none is given: "
                        "[cluster] security = {ca_file, cert, key} or --dask-security FILE, README "
                        "\"Running on your own cluster\"; or Dask's own distributed.comm.tls.ca-file and "
                        "client.cert/key, e.g. DASK_DISTRIBUTED__COMM__TLS__CA_FILE), or use tcp://")
    raise SpecError(f"{where}: the {scheme}:// scheme cannot be used; expected tcp://host:port "
                    "(or tls:// with a Dask TLS configuration)")


def _connection_args(address: str, security: Any) -> dict[str, Any]:
    """What distributed.comm.connect needs for `address`: for tls://, the client's TLS context
    from `security`, else from Dask's configuration (Security() reads it)."""
    if not address.startswith("tls://"):
        return {}
    from distributed.security import Security

    return (security or Security()).get_connection_args("client")


async def _identity(address: str, timeout: float, security: Any = None) -> dict[str, Any]:
    from distributed.comm import connect

    # OSError if nothing accepts within `timeout`
    comm = await connect(address, timeout=timeout, **_connection_args(address, security))
    try:
        await comm.write({"op": "identity", "reply": True})
        return await asyncio.wait_for(comm.read(), timeout)  # the handshake: TimeoutError
    finally:
        comm.abort()


def probe_scheduler(address: str, timeout: float = SCHEDULER_CONNECT_TIMEOUT_S,
                    security: Any = None) -> dict[str, Any]:
    """The scheduler's identity, or a SpecError: connect and handshake both within `timeout`.

    distributed.Client(timeout=...) bounds the connect only; an address that accepts TCP but
    never speaks Dask (a silent listener, a Prefect server's port) would hang it forever.
    """
    where = "[cluster] address / --dask-address"
    try:
        # The outer bound covers a write that never completes, too.
        answer = asyncio.run(asyncio.wait_for(_identity(address, timeout, security), 2 * timeout))
    except (TimeoutError, asyncio.TimeoutError):
        raise SpecError(f"{where}: {address} accepts connections, but no Dask scheduler answered there "
                        f"within {timeout:g} s (--connect-timeout; what listens is not a Dask scheduler)") from None
    except Exception as exc:  # noqa: BLE001 - refused, reset, garbage: all mean "not a scheduler"
        raise SpecError(f"{where}: cannot reach a Dask scheduler at {address} ({type(exc).__name__}: {exc})") from None
    if not isinstance(answer, dict) or answer.get("type") != "Scheduler":
        raise SpecError(f"{where}: what answers at {address} is not a Dask scheduler")
    return answer


def wait_for_workers(address: str, timeout: float, security: Any = None,
                     connect_timeout: float = SCHEDULER_CONNECT_TIMEOUT_S) -> int:
    """The number of workers on the scheduler at `address` once it has at least one, or a
    SpecError after `timeout` s without any (it asks the scheduler, no Client needed);
    `security` for a tls:// address (see `security()`); `connect_timeout` for each ask."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        workers = probe_scheduler(address, connect_timeout, security).get("n_workers", 0)
        if workers:
            return workers
        if time.monotonic() >= deadline:
            raise SpecError(f"[cluster] address / --dask-address: the Dask scheduler at {address} has no "
                            f"workers; none registered within {timeout:g} s (--worker-timeout). Start "
                            f"workers with `dask worker {address}` and PREFECT_API_URL in their environment")
        time.sleep(min(WORKER_POLL_INTERVAL_S, max(0.0, deadline - time.monotonic())))


def open_cluster(
    cluster: ClusterSpec, settings: dict[str, str], stack: contextlib.ExitStack, startup: dict[str, Any],
    connect_timeout: float = SCHEDULER_CONNECT_TIMEOUT_S,
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
    if address:  # open_runtime has checked it answers and has workers before starting anything
        try:
            client = stack.enter_context(
                distributed.Client(address, timeout=connect_timeout, set_as_default=False,
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
