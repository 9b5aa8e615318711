"""What a stage sends the Prefect API server: task runs created, task-run state changes and HTTP
requests, counted on the client side in every process that sends them (the flow process and
each Dask worker), so the figures hold on any API, a user's own included.

What Prefect 3 sends (3.9 read for this; docs/reading-a-report.md, "What the Prefect server saw"):

- HTTP requests, from Prefect's httpx clients (PrefectHttpxSyncClient, PrefectHttpxAsyncClient):
  the flow run's creation and state changes, log batches (POST /logs/), reads. Counted on the
  wire: Prefect's retry loop calls httpx's `send` once per attempt, so a retry is one more.
- events over the events websocket (/events/in): a task run is created in the process that runs
  it, and its creation and every state change go out as one event `prefect.task-run.<State>`
  each, from which the server's task-run recorder writes a task_run row and one task_run_state
  row per event. Counted once the events client has sent it.
- older releases (and deferred tasks) create task runs and set their states over HTTP
  (POST /task_runs/, POST /task_runs/{id}/set_state): counted as task runs and state changes too.

Counting patches two methods per process, once (`install`): httpx's `send` (only Prefect's
clients' requests counted) and the events client's `emit`. The Dask workers get it through a
WorkerPlugin, so a worker that joins or restarts mid-run counts too. A stage's figures are the
difference of every process's totals after and before it (`count_stage`), each process first
settled: its queued events sent and its batched logs flushed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

# How long a process may take to send what it has queued (events, a log batch) before its totals
# are read. Seconds at most on a healthy API; past this the stage's figures are left unknown.
SETTLE_TIMEOUT_S = 60.0
API_CALLS_PLUGIN = "harness-api-calls"


@dataclass(frozen=True)
class ApiCalls:
    """What one process (or one stage, summed over processes) sent the Prefect API."""

    task_runs: int = 0  # task runs created: a task run's first state event (or POST /task_runs/)
    state_changes: int = 0  # task-run states written: every task-run state event (or set_state, create)
    requests: int = 0  # HTTP requests to the API, each retry one more
    events: int = 0  # every event sent over the events websocket, task-run state events among them

    def __add__(self, other: ApiCalls) -> ApiCalls:
        return ApiCalls(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))

    def __sub__(self, other: ApiCalls) -> ApiCalls:
        return ApiCalls(*(a - b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))


_lock = threading.Lock()
_totals = {field.name: 0 for field in dataclasses.fields(ApiCalls)}
_installed = False


def _add(**deltas: int) -> None:
    with _lock:
        for name, delta in deltas.items():
            _totals[name] += delta


def _count_request(request: Any) -> None:
    path, post = request.url.path.rstrip("/"), request.method == "POST"
    created = post and path.endswith("/task_runs")
    state_set = post and "/task_runs/" in path and path.endswith("/set_state")
    _add(requests=1, task_runs=int(created), state_changes=int(created or state_set))


def _count_event(event: Any) -> None:
    is_state = event.resource.id.startswith("prefect.task-run.") and "prefect.state-type" in event.resource
    created = is_state and (event.payload or {}).get("initial_state") is None
    _add(events=1, task_runs=int(created), state_changes=int(is_state))


def install() -> None:
    """Count, from now on, what this process sends the Prefect API (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        import httpx
        from prefect.client.base import PrefectHttpxAsyncClient, PrefectHttpxSyncClient
        from prefect.events.clients import PrefectEventsClient

        sync_send, async_send, emit = httpx.Client.send, httpx.AsyncClient.send, PrefectEventsClient.emit

        @functools.wraps(sync_send)
        def send(self: httpx.Client, request: httpx.Request, *args: Any, **kwargs: Any) -> httpx.Response:
            if isinstance(self, PrefectHttpxSyncClient):
                _count_request(request)
            return sync_send(self, request, *args, **kwargs)

        @functools.wraps(async_send)
        async def asend(self: httpx.AsyncClient, request: httpx.Request, *args: Any, **kwargs: Any) -> httpx.Response:
            if isinstance(self, PrefectHttpxAsyncClient):
                _count_request(request)
            return await async_send(self, request, *args, **kwargs)

        @functools.wraps(emit)
        async def counted_emit(self: PrefectEventsClient, event: Any) -> None:
            await emit(self, event)
            _count_event(event)  # sent: an emit that gave up after its reconnection attempts raised

        httpx.Client.send = send  # type: ignore[method-assign]
        httpx.AsyncClient.send = asend  # type: ignore[method-assign]
        PrefectEventsClient.emit = counted_emit  # type: ignore[method-assign]
        _installed = True


def _settle() -> None:
    """Send what this process has queued for the API: events waiting in its events worker, logs
    in its log worker's batch (a drained log worker is replaced with the next log)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    # Every running Prefect service, whatever its class (Prefect keeps them in one registry).
    for service in list(getattr(EventsWorker, "_instances", {}).values()):
        if isinstance(service, APILogWorker):
            service.drain()
        elif isinstance(service, EventsWorker):
            service.wait_until_empty()


def snapshot() -> tuple[str, ApiCalls | None]:
    """This process's key (host:pid) and its totals once settled; None when it could not settle
    within SETTLE_TIMEOUT_S. Run in its own thread: Prefect's drain returns an awaitable, not a
    result, when called on a running event loop (a Dask worker's)."""
    install()
    settler = threading.Thread(target=_settle, name="harness-api-calls-settle", daemon=True)
    settler.start()
    settler.join(SETTLE_TIMEOUT_S)
    with _lock:
        totals = ApiCalls(**_totals)
    return f"{socket.gethostname()}:{os.getpid()}", None if settler.is_alive() else totals


class CountApiCalls(WorkerPlugin):
    """A Dask worker plugin: every worker, present and future, counts what it sends the API."""

    name = API_CALLS_PLUGIN

    def setup(self, worker: object) -> None:
        install()


def count_everywhere(client: Any) -> None:
    """Count in this process and on every Dask worker of `client`'s cluster, present and future
    (left on an existing cluster, as the harness's other plugin: the count costs a lock per request)."""
    install()
    client.register_plugin(CountApiCalls(), name=API_CALLS_PLUGIN)


@dataclass
class StageCalls:
    """Filled in when the stage ends: what it sent the API, None when a process could not say."""

    seen: ApiCalls | None = None


def _totals_everywhere(client: Any) -> dict[str, ApiCalls | None]:
    """Every process's totals by host:pid: this one's, and each worker's (a threaded worker in
    this process answers with the same key, counted once); a worker that fails to answer is None."""
    answers = {"flow": snapshot(), **client.run(snapshot, on_error="return")}
    # A worker that failed to answer (lost mid-stage: client.run returns its exception) is
    # unknown under its address; the others under host:pid.
    return {answer[0] if isinstance(answer, tuple) else f"unanswered {address}":
            answer[1] if isinstance(answer, tuple) else None for address, answer in answers.items()}


@contextlib.contextmanager
def count_stage(client: Any) -> Iterator[StageCalls]:
    """What the block (one stage) sent the API, from every process's totals before and after it.
    Its reading waits for queued events and logs to be sent, outside any time the block measures."""
    stage = StageCalls()
    before = _totals_everywhere(client)
    yield stage
    after = _totals_everywhere(client)
    if any(v is None for v in after.values()) or any(before.get(k, ApiCalls()) is None for k in after):
        return  # unknown rather than short: a process did not settle or answer
    stage.seen = sum((v - (before.get(k) or ApiCalls()) for k, v in after.items() if v is not None), ApiCalls())
