"""The settings of the flow process and of every Dask worker, and how they are applied."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from harness.runtime.certs import is_loopback_http, one_certificate_file

CLIENT_SETTINGS = {
    # Benchmark runs: no log shipping to the API, only warnings on the console.
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_LOGGING_TO_API_ENABLED": "false",
    # Without an API URL Prefect silently starts a temporary server per process, and its task
    # runs never reach the real API: make that an error instead (docs/runtime-notes.md,
    # "Workers need PREFECT_API_URL; no ephemeral server").
    "PREFECT_SERVER_EPHEMERAL_ENABLED": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def client_settings(api_url: str) -> dict[str, str]:
    """Environment for the flow process and the Dask workers, given the API they talk to."""
    settings = {"PREFECT_API_URL": api_url, **CLIENT_SETTINGS}
    if is_loopback_http(api_url):
        # Safe only because nothing is verified over plain http (never for a remote https API).
        settings["PREFECT_API_SSL_CERT_FILE"] = str(one_certificate_file())
    return settings


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
