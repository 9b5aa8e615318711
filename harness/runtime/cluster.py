"""The Dask cluster a run uses: a scheduler address to join, or a LocalCluster we start."""

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


def open_cluster(
    cluster: ClusterSpec, settings: dict[str, str], stack: contextlib.ExitStack, startup: dict[str, Any]
) -> tuple[Any, str]:
    """A distributed.Client and its scheduler address; `stack` closes what we opened.

    A started LocalCluster's workers get `settings` in their environment; a joined cluster's
    workers must already have them (open_runtime checks). Records in `startup` which it was.
    """
    import dask
    import distributed

    stack.enter_context(dask.config.set({"distributed.admin.low-level-log-length": LOW_LEVEL_LOG_LENGTH}))
    address = cluster.address
    if address:
        try:
            client = stack.enter_context(
                distributed.Client(address, timeout=SCHEDULER_CONNECT_TIMEOUT_S, set_as_default=False)
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


def worker_layout(client: Any) -> list[dict[str, Any]]:
    """Each worker's address, threads and memory limit, sorted by address (for the report)."""
    info = client.scheduler_info(n_workers=-1)
    return [
        {"address": addr, "nthreads": w.get("nthreads", 1), "memory_limit": w.get("memory_limit")}
        for addr, w in sorted(info["workers"].items())
    ]
