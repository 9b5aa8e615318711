"""The settings of the flow process and of every Dask worker, and how they are applied."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from harness.runtime.certs import is_loopback_http, one_certificate_file

CLIENT_SETTINGS = {
    # Without an API URL Prefect silently starts a temporary server per process, and its task
    # runs never reach the real API: make that an error instead (docs/runtime-notes.md,
    # "Workers need PREFECT_API_URL; no ephemeral server").
    "PREFECT_SERVER_EPHEMERAL_ENABLED": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


# Logging, the user's to choose: on an API of their own the harness sets none of it unless asked
# (`--quiet-prefect`: these, the leanest). Each log record shipped to the API is work in the
# worker that measures it.
QUIET_LOGGING = {
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_LOGGING_TO_API_ENABLED": "false",
}
# On the harness's own server: warnings and errors (failed task runs) reach the API, so that
# `harness ui` shows them; the INFO line per task run stays off, it would cost a log record per task.
OWN_SERVER_LOGGING = {
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_LOGGING_TO_API_ENABLED": "true",
}


def logging_settings(own_server: bool, quiet: bool) -> dict[str, str]:
    """The logging settings the harness applies: QUIET_LOGGING when asked, OWN_SERVER_LOGGING on
    its own server, none on the user's."""
    if quiet:
        return dict(QUIET_LOGGING)
    return dict(OWN_SERVER_LOGGING) if own_server else {}


def client_settings(api_url: str, logging: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the flow process and the Dask workers, given the API they talk to (and
    the logging settings to apply, see `logging_settings`)."""
    settings = {"PREFECT_API_URL": api_url, **CLIENT_SETTINGS, **(logging or {})}
    if is_loopback_http(api_url):
        # Safe only because nothing is verified over plain http (never for a remote https API).
        settings["PREFECT_API_SSL_CERT_FILE"] = str(one_certificate_file())
    return settings


@contextlib.contextmanager
def without_flow_heartbeat() -> Iterator[None]:
    """The flows run in this context send no flow-run heartbeat (Prefect releases that have one).

    A flow run's heartbeat thread lets a server mark a run whose process died as crashed; it
    sleeps in 1 s steps and is joined when the flow ends, so every flow call ends with 0-1 s of
    waiting that has nothing to do with the work (docs/runtime-notes.md, "The heartbeat join at
    every flow exit"). The harness's own flow runs are watched by the harness itself, which runs
    tens of them per workload: without it a run spends that much less time between its stages,
    and `flow_s` loses noise. Only an unset frequency turns it off, and only a settings context
    can unset it (the environment variable cannot say "none"). A user's own flows
    (`adaptive_map`, `local_runtime`) keep theirs."""
    import prefect.settings as ps

    setting = getattr(ps, "PREFECT_FLOWS_HEARTBEAT_FREQUENCY", None)
    if setting is None:  # a release without the heartbeat (3.6): nothing to turn off
        yield
        return
    with ps.temporary_settings(updates={setting: None}):
        yield


@contextlib.contextmanager
def applied(settings: dict[str, str]) -> Iterator[None]:
    """The flow process runs with `settings`: in os.environ, for anything that reads it later
    (LocalCluster workers inherit it), and as a settings context for Prefect already imported.
    Both are restored on exit."""
    import prefect.settings as ps

    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        with ps.temporary_settings(updates={getattr(ps, name): value for name, value in settings.items()}):
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
