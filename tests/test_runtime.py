"""harness.runtime: the preflight check of Dask workers, the lean task context, the client
settings, and the session runtime itself.

The worker check runs against a separate one-worker LocalCluster started without
PREFECT_API_URL, so the session's cluster (which has it) is never disturbed.
"""

from __future__ import annotations

import os
import ssl

import pytest

from harness.errors import SpecError
from harness.runtime import (
    CLIENT_SETTINGS,
    check_workers,
    client_settings,
    free_port,
    lean_task_context,
    open_runtime,
    serialize_context_without_settings,
)
from harness.workload.spec import ClusterSpec

# ---------------------------------------------------------------- pure: no server, no cluster


def test_lean_task_context_swaps_and_restores_serialize_context():
    import prefect_dask.client as dask_client

    stock = dask_client.serialize_context
    with lean_task_context("lean"):
        assert dask_client.serialize_context is serialize_context_without_settings
    assert dask_client.serialize_context is stock


def test_lean_task_context_restores_on_error():
    import prefect_dask.client as dask_client

    stock = dask_client.serialize_context
    with pytest.raises(RuntimeError, match="boom"), lean_task_context("lean"):
        assert dask_client.serialize_context is serialize_context_without_settings
        raise RuntimeError("boom")
    assert dask_client.serialize_context is stock


def test_stock_profile_leaves_serialize_context_alone():
    import prefect_dask.client as dask_client

    stock = dask_client.serialize_context
    with lean_task_context("stock"):
        assert dask_client.serialize_context is stock
    assert dask_client.serialize_context is stock


@pytest.mark.parametrize("url", ["http://127.0.0.1:4200/api", "http://localhost:4200/api", "http://127.0.0.2/api"])
def test_client_settings_loopback_http_gets_a_one_certificate_pem(url, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    settings = client_settings(url)
    assert settings["PREFECT_API_URL"] == url
    for key, value in CLIENT_SETTINGS.items():
        assert settings[key] == value
    pem = settings["PREFECT_API_SSL_CERT_FILE"]
    assert os.path.dirname(pem) == str(tmp_path)
    text = open(pem).read()
    assert text.count("-----BEGIN CERTIFICATE-----") == 1
    assert text.count("-----END CERTIFICATE-----") == 1
    ssl.create_default_context(cafile=pem)  # a valid certificate file, as Prefect will load it


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1:4200/api",  # https: certificates are checked, never swap the bundle
        "https://api.prefect.cloud/api/accounts/a/workspaces/w",
        "http://10.0.0.5:4200/api",  # plain http but not loopback
        "http://127.0.0.1.example.com/api",  # looks like loopback, is not
        "http://localhost.example.com:4200/api",
    ],
)
def test_client_settings_other_urls_keep_the_ca_bundle(url, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    settings = client_settings(url)
    assert settings["PREFECT_API_URL"] == url
    assert "PREFECT_API_SSL_CERT_FILE" not in settings
    assert settings["PREFECT_SERVER_EPHEMERAL_ENABLED"] == "false"


def test_open_runtime_rejects_unknown_profile():
    with pytest.raises(SpecError, match="--profile"), open_runtime(ClusterSpec(), profile="fast"):
        pass


def test_open_runtime_names_an_api_url_that_does_not_answer(monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}/api"
    monkeypatch.setenv("PREFECT_API_URL", dead)
    with pytest.raises(SpecError, match="no Prefect API answers") as info, open_runtime(ClusterSpec(), "stock"):
        pass
    assert dead in str(info.value)
    assert os.environ["PREFECT_API_URL"] == dead  # nothing of ours was left behind


# ---------------------------------------------------------------- real server and clusters


def _worker_env(key: str) -> str | None:
    return os.environ.get(key)


def _set_worker_env(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


@pytest.fixture(scope="module")
def bare_cluster(runtime):
    """One worker process whose environment has no PREFECT_API_URL (the mistake check_workers
    exists to catch). LocalCluster workers inherit os.environ, which the session runtime has
    filled, so the variable is taken out while the worker starts."""
    import distributed

    saved = os.environ.pop("PREFECT_API_URL", None)
    try:
        cluster = distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, silence_logs=40,
        )
    finally:
        if saved is not None:
            os.environ["PREFECT_API_URL"] = saved
    with cluster, distributed.Client(cluster, set_as_default=False) as client:
        yield client


@pytest.mark.cluster
def test_check_workers_rejects_a_worker_without_api_url(runtime, bare_cluster):
    assert bare_cluster.run(_worker_env, "PREFECT_API_URL") == {
        w: None for w in bare_cluster.scheduler_info(n_workers=-1)["workers"]
    }
    with pytest.raises(SpecError) as info:
        check_workers(bare_cluster, runtime.api_url)
    message = str(info.value)
    assert "PREFECT_API_URL is not set" in message
    assert next(iter(bare_cluster.scheduler_info(n_workers=-1)["workers"])) in message  # names the worker
    assert f"PREFECT_API_URL={runtime.api_url}" in message  # says what to do


@pytest.mark.cluster
def test_check_workers_rejects_a_worker_on_another_api(runtime, bare_cluster):
    other = f"http://127.0.0.1:{free_port()}/api"
    bare_cluster.run(_set_worker_env, "PREFECT_API_URL", other)
    try:
        with pytest.raises(SpecError, match="the flow uses") as info:
            check_workers(bare_cluster, runtime.api_url)
        assert other in str(info.value) and runtime.api_url in str(info.value)
        # and when the flow itself points there too, the check reaches for it and says it cannot
        with pytest.raises(SpecError, match="cannot reach"):
            check_workers(bare_cluster, other)
    finally:
        bare_cluster.run(_set_worker_env, "PREFECT_API_URL", None)


@pytest.mark.cluster
def test_check_workers_accepts_a_worker_that_reaches_the_api(runtime, bare_cluster):
    bare_cluster.run(_set_worker_env, "PREFECT_API_URL", runtime.api_url)
    try:
        probes = check_workers(bare_cluster, runtime.api_url)
    finally:
        bare_cluster.run(_set_worker_env, "PREFECT_API_URL", None)
    (probe,) = probes.values()
    assert probe["reachable"] and probe["api_url"] == runtime.api_url


@pytest.mark.cluster
def test_session_runtime(runtime):
    import urllib.request

    assert runtime.worker_threads == 2
    assert len(runtime.layout) == 2 and all(w["nthreads"] == 1 for w in runtime.layout)
    assert runtime.profile == "lean"
    assert runtime.settings["PREFECT_API_URL"] == runtime.api_url
    assert os.environ["PREFECT_API_URL"] == runtime.api_url
    with urllib.request.urlopen(runtime.api_url + "/health", timeout=5) as resp:
        assert resp.status == 200
    described = runtime.describe()
    assert described["startup"]["dask_cluster"] == "started"
    assert described["startup"]["prefect_server"] in ("started", "existing")
    assert set(check_workers(runtime.client, runtime.api_url)) == {w["address"] for w in runtime.layout}
