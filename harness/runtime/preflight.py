"""The check every Dask worker passes before the first task: it reaches the API the flow uses.

A worker without PREFECT_API_URL would start its own temporary server for each task run, at
a large cost per task and with task runs the real API never sees (docs/runtime-notes.md,
"Workers need PREFECT_API_URL; no ephemeral server").
"""

from __future__ import annotations

import asyncio
from typing import Any

from harness.errors import SpecError

# Each worker's probe waits at most 5 s for the API (below) plus its Prefect import; a worker
# that has not answered the check in this long is stuck, and the run would be stuck with it.
WORKER_CHECK_TIMEOUT_S = 60.0


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
    """Every worker's probe, or a SpecError naming each worker that cannot reach `api_url`."""
    try:
        probes = client.sync(asyncio.wait_for, client._run(_probe_worker, api_url), WORKER_CHECK_TIMEOUT_S)
    except (TimeoutError, asyncio.TimeoutError):
        raise SpecError(f"Dask workers of {client.scheduler.address}: not every worker answered the API check "
                        f"within {WORKER_CHECK_TIMEOUT_S:.0f} s") from None
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
