"""The `lean` profile never loses a Prefect setting silently (issue 18), on any Prefect it runs on.

The patch itself is checked directly; the settings a task sees are checked on the session's
real Prefect API and its LocalCluster of two worker processes: Prefect's stock propagation
carries a `temporary_settings` around a submit to the task, and under `lean` the same flow is
refused, or with the loss allowed, the loss is recorded. The PREFECT_API_KEY case through the
command line is in tests/test_distributed.py (it needs workers started without the key).
"""

from __future__ import annotations

import os

import pytest

from harness.errors import SpecError
from harness.runtime import (
    LEAN,
    PROFILES,
    STOCK,
    SettingsCheck,
    check_settings,
    lean_task_context,
    lean_unavailable,
    serialize_context_without_settings,
)
from harness.runtime.settings_check import SECRET, differing, non_default_settings, settings_view

# ---------------------------------------------------------------- pure: no server, no cluster


def test_lean_is_available_on_the_installed_prefect():
    import prefect

    assert lean_unavailable() is None, f"Prefect {prefect.__version__}"


def test_lean_context_is_prefects_own_minus_the_settings():
    """Prefect's own serialize_context runs; only the settings are left out, and the settings
    context this thread sees afterwards is the one it saw before."""
    from prefect.context import SettingsContext, serialize_context

    before = SettingsContext.get()
    ours = serialize_context_without_settings()
    theirs = serialize_context()
    assert SettingsContext.get() is before
    assert set(ours) == set(theirs)
    assert ours["settings_context"] == {}
    assert theirs["settings_context"]  # what the lean profile saves shipping per task
    assert {k: v for k, v in ours.items() if k != "settings_context"} == {
        k: v for k, v in theirs.items() if k != "settings_context"
    }


def test_the_profiles_say_what_they_keep_and_drop():
    assert set(PROFILES) == {STOCK, LEAN}
    assert "temporary_settings" in PROFILES[LEAN] and "PREFECT_API_KEY" in PROFILES[LEAN]


def test_an_unknown_profile_is_refused():
    with pytest.raises(ValueError, match="fast"), lean_task_context("fast"):  # type: ignore[arg-type]
        pass


def test_lean_with_a_check_swaps_in_a_checking_serializer_and_restores_it():
    import prefect_dask.client as dask_client

    stock = dask_client.serialize_context
    check = SettingsCheck(workers={}, allow_loss=False)
    with lean_task_context(LEAN, check):
        assert dask_client.serialize_context not in (stock, serialize_context_without_settings)
    assert dask_client.serialize_context is stock


def test_a_secret_is_compared_by_digest_and_never_shown():
    from prefect.settings import PREFECT_API_KEY, temporary_settings

    with temporary_settings(updates={PREFECT_API_KEY: "pnu_not_a_real_key"}):
        view = settings_view()
        given = non_default_settings()
    assert "pnu_not_a_real_key" not in repr(view) and "pnu_not_a_real_key" not in repr(given)
    assert view["PREFECT_API_KEY"].startswith("sha256:")
    assert given["PREFECT_API_KEY"] == SECRET
    lost = differing(view, {"tcp://w:1": {k: v for k, v in view.items() if k != "PREFECT_API_KEY"}})
    assert lost == {"PREFECT_API_KEY": {"flow": SECRET, "workers": {"tcp://w:1": "(unset)"}}}


def test_differing_names_each_setting_and_each_worker_that_differs():
    flow = {"A": "1", "B": "2", "C": "3"}
    workers = {"tcp://w:2": {"A": "1", "B": "9", "C": "3"}, "tcp://w:1": {"A": "1", "B": "2", "D": "4"}}
    assert differing(flow, workers) == {
        "B": {"flow": "2", "workers": {"tcp://w:2": "9"}},
        "C": {"flow": "3", "workers": {"tcp://w:1": "(unset)"}},
        "D": {"flow": "(unset)", "workers": {"tcp://w:1": "4"}},
    }
    assert differing(flow, {"tcp://w:1": dict(flow)}) == {}


def test_a_setting_only_flow_runs_read_is_never_a_loss():
    """The heartbeat frequency (unset in the harness's own flow runs) is read by no task."""
    flow = {"A": "1"}
    assert differing(flow, {"tcp://w:1": {"A": "1", "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "180"}}) == {}


# ---------------------------------------------------------------- real server and process workers


def _refresh_cache_flow(runtime):
    """A flow on the session's cluster whose one task, submitted inside temporary_settings,
    reports PREFECT_TASKS_REFRESH_CACHE as it sees it, and the process it ran in."""
    from prefect import flow, task
    from prefect.settings import PREFECT_TASKS_REFRESH_CACHE, temporary_settings

    @task
    def seen() -> tuple[bool, int]:
        from prefect.settings import PREFECT_TASKS_REFRESH_CACHE

        return PREFECT_TASKS_REFRESH_CACHE.value(), os.getpid()

    @flow(task_runner=runtime.task_runner())
    def refresh_cache_probe() -> tuple[bool, int]:
        with temporary_settings(updates={PREFECT_TASKS_REFRESH_CACHE: True}):
            future = seen.submit()
        return future.result()

    return refresh_cache_probe


@pytest.mark.cluster
def test_session_runtime_records_the_settings_lean_assumed(runtime):
    described = runtime.describe()
    assert described["profile"] == LEAN and described["profile_notes"] == []
    check = described["settings_check"]
    assert check["lost"] == {} and check["compared"] > 0
    assert f"all {check['compared']}" in check["verdict"]
    # what the harness sets, the same on both sides, is assumed and never reported lost
    assert check["assumed"]["PREFECT_API_URL"] == runtime.api_url
    assert check["assumed"]["PREFECT_SERVER_EPHEMERAL_ENABLED"] == "False"


@pytest.mark.cluster
def test_stock_carries_temporary_settings_around_a_submit_to_the_task(runtime):
    probe = _refresh_cache_flow(runtime)
    with lean_task_context(STOCK):
        refresh_cache, pid = probe()
    assert pid != os.getpid()  # ran in a worker process
    assert refresh_cache is True


@pytest.mark.cluster
def test_lean_refuses_a_submit_whose_settings_the_workers_lack(runtime):
    probe = _refresh_cache_flow(runtime)
    with pytest.raises(SpecError, match="PREFECT_TASKS_REFRESH_CACHE") as info, runtime.submitting():
        probe()
    message = str(info.value)
    assert "at a submit inside the flow" in message and "--allow-setting-loss" in message
    assert "flow process True, worker(s) False" in message


@pytest.mark.cluster
def test_lean_with_the_loss_allowed_records_it(runtime):
    check = check_settings(runtime.client, allow_loss=True)
    assert check.lost == {}
    probe = _refresh_cache_flow(runtime)
    with lean_task_context(LEAN, check):
        refresh_cache, pid = probe()
    assert pid != os.getpid()
    assert refresh_cache is False  # the worker's own value: the loss lean exists to name
    described = check.describe()
    assert set(described["lost"]) == {"PREFECT_TASKS_REFRESH_CACHE"}
    assert described["lost"]["PREFECT_TASKS_REFRESH_CACHE"]["flow"] == "True"
    assert "PREFECT_TASKS_REFRESH_CACHE" in described["verdict"]


@pytest.mark.cluster
def test_preflight_catches_an_api_key_only_the_flow_process_has(runtime):
    from prefect.settings import PREFECT_API_KEY, temporary_settings

    with temporary_settings(updates={PREFECT_API_KEY: "pnu_not_a_real_key"}):
        with pytest.raises(SpecError, match="PREFECT_API_KEY") as info:
            check_settings(runtime.client, allow_loss=False)
        allowed = check_settings(runtime.client, allow_loss=True)
    assert info.value.exit_code == 2
    assert "pnu_not_a_real_key" not in str(info.value)
    assert f"PREFECT_API_KEY: flow process {SECRET}, worker(s) (unset)" in str(info.value)
    assert set(allowed.lost) == {"PREFECT_API_KEY"}
    assert "pnu_not_a_real_key" not in repr(allowed.describe())


def test_lean_unavailable_names_the_prefect_release(monkeypatch):
    """A prefect-dask that no longer calls Prefect's serialize_context: the patch would do nothing."""
    import prefect
    import prefect_dask.client as dask_client

    monkeypatch.setattr(dask_client, "serialize_context", lambda *args, **kwargs: {})
    why = lean_unavailable()
    assert why == (f"lean unavailable on Prefect {prefect.__version__}: prefect-dask does not call "
                   "prefect.context.serialize_context; stock used")


@pytest.mark.cluster
def test_open_runtime_falls_back_to_stock_where_lean_cannot_apply(runtime, monkeypatch):
    import prefect_dask.client as dask_client

    from harness.runtime import open_runtime
    from harness.workload.spec import ClusterSpec

    monkeypatch.setattr(dask_client, "serialize_context", lambda *args, **kwargs: {})
    with open_runtime(ClusterSpec(workers=1, threads_per_worker=1), LEAN) as rt:
        described = rt.describe()
    assert rt.profile == STOCK and rt.settings_check is None
    assert described["profile"] == STOCK
    assert described["profile_notes"] == [lean_unavailable()]
    assert described["settings_check"].startswith("not needed")


@pytest.mark.cluster
def test_the_harness_flows_run_without_a_heartbeat_and_lean_accepts_it(runtime):
    """Inside without_flow_heartbeat a flow run has no heartbeat (on a Prefect that has one), and
    a lean submit from it is not refused as a setting loss."""
    import prefect.settings as ps
    from prefect import flow, task

    from harness.runtime.client_env import without_flow_heartbeat

    @task
    def pid() -> int:
        return os.getpid()

    @flow(task_runner=runtime.task_runner())
    def heartbeat_probe() -> tuple[object, int]:
        frequency = ps.get_current_settings().flows.heartbeat_frequency if hasattr(
            ps, "PREFECT_FLOWS_HEARTBEAT_FREQUENCY") else None
        return frequency, pid.submit().result()

    with without_flow_heartbeat(), runtime.submitting():
        frequency, worker_pid = heartbeat_probe()
    assert frequency is None and worker_pid != os.getpid()
