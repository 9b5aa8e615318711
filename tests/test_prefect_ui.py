"""A run as a Prefect user sees it: flow runs named and tagged by workload, strategy, repeat and
run id, task runs named by their items, the report's artifacts pointing at the committed folder,
and `harness ui` serving all of it from the database the run left under its results folder.

One real `harness run` subprocess (its own server and cluster, as a user types it), then one
real `harness ui` subprocess over its folder, read back with Prefect's client and walked in a
headless Chromium (tests/browser.py; skipped only where chromium is absent and CI is not set).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import NamedTuple

import pytest
from browser import CHROMIUM, Browser

from harness.patterns.labels import RunLabel, shown_parameters
from harness.report.artifacts import artifact_key, report_link
from harness.runtime import free_port
from harness.strategies.tasks import Opaque, batch_run_name, item_run_name
from harness.work.synthetic import Item

WORKLOAD = "ui-check"
STRATEGIES = ("per_item", "static:8", "adaptive")
ITEMS = 24
RUN_TIMEOUT_S = 300
# `prefect server start` with the UI on copies the UI's files first: a loaded machine gets
# several times the ~10 s it takes here.
UI_START_TIMEOUT_S = 120
UI_STOP_TIMEOUT_S = 30
# Prefect's default port: the one the UI's pages asked when they did not ask the server.
PREFECT_DEFAULT_PORT = 4200


# ---------------------------------------------------------------- pure: names, tags, parameters


def test_labels_name_and_tag_a_measured_run_its_warm_up_and_its_subflows():
    label = RunLabel("small", "static:64", 2, "20261201-021535-00b1")
    assert label.flow_run_name == "small/static:64/r2"
    assert label.tags == ["harness", "workload:small", "strategy:static:64", "repeat:2", "run:20261201-021535-00b1"]
    warm = RunLabel("small", "static:1", run_id="x", warm_up=True)
    assert warm.flow_run_name == "small/static:1/warm-up" and "warm-up" in warm.tags
    assert not any(t.startswith("repeat:") for t in warm.tags)
    twin = RunLabel("sub", "adaptive", 0, "x", "twin").child("load:csv")
    assert twin.flow_run_name == "sub/adaptive/r0/twin/load:csv" and "variant:twin" in twin.tags
    assert shown_parameters("static:64", 200, 64) == {"strategy": "static:64", "items": 200, "batch_size": 64}


def _items(*indices: int) -> Opaque:
    return Opaque([Item(i, 1.0, 0, False, b"") for i in indices])


def test_task_run_names_say_which_items():
    assert item_run_name({"item": Item(17, 1.0, 0, False, b"")}) == "item 17"
    assert batch_run_name({"items": _items(*range(4096))}) == "batch 0-4095"
    assert batch_run_name({"items": _items(9)}) == "batch 9"
    assert batch_run_name({"items": _items(3, 50, 997)}) == "batch 3-997 (3 items)"


# ---------------------------------------------------------------- a real run, then `harness ui`


def _env() -> dict[str, str]:
    """The user's environment without the session's Prefect settings: the run starts its own server."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}


# What the results folder holds where the database belongs before the run: not SQLite. The run
# sets it aside and starts a fresh database, which `harness ui` then serves (one own-server run
# proves both: each such run costs a server's and a cluster's start).
GARBAGE = b"this is not an SQLite database\n" * 64


class KeptRun(NamedTuple):
    out: Path  # the results folder
    folder: Path  # the run folder
    stderr: str


@pytest.fixture(scope="module")
def kept_run(tmp_path_factory) -> KeptRun:
    """One small run on the harness's own server, into a results folder whose database is damaged."""
    base = tmp_path_factory.mktemp("ui")
    workload = base / "ui.toml"
    # Items of 20 ms make adaptive submit tasks; every task on its batched path fails (injected),
    # so the fault-injecting task runs at least once.
    listed = ", ".join(f'"{s}"' for s in STRATEGIES)
    workload.write_text(textwrap.dedent(f"""\
        name = "{WORKLOAD}"
        seed = 5
        [items]
        count = {ITEMS}
        [cost]
        kind = "cpu"
        mean_ms = 20.0
        [faults]
        path_failure_rate = 1.0
        path = "batched"
        [cluster]
        workers = 2
        threads_per_worker = 1
        [run]
        strategies = [{listed}]
        repeats = 1
        """))
    out = base / "results"
    (out / ".prefect").mkdir(parents=True)
    (out / ".prefect" / "prefect.db").write_bytes(GARBAGE)
    proc = subprocess.run([sys.executable, "-m", "harness", "run", str(workload), "--out", str(out)],
                          env=_env(), cwd=base, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return KeptRun(out, Path(proc.stdout.rstrip("\n").splitlines()[-1]), proc.stderr)


def _health(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(api_url + "/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


class UI(NamedTuple):
    proc: subprocess.Popen
    api_url: str
    url: str  # the address `harness ui` prints


@pytest.fixture(scope="module")
def ui(kept_run):
    """`harness ui RESULTS_DIR --port P` running on a free port other than Prefect's default.
    Stopped at the end."""
    out = kept_run.out
    port = free_port()
    assert port != PREFECT_DEFAULT_PORT  # free_port() picks from the ephemeral range, above it
    proc = subprocess.Popen([sys.executable, "-m", "harness", "ui", str(out), "--port", str(port)],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    api_url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + UI_START_TIMEOUT_S
        while not _health(api_url):
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, f"harness ui did not answer in {UI_START_TIMEOUT_S} s"
            time.sleep(0.5)
        printed = proc.stdout.readline()  # printed once the server answers
        assert printed.startswith(f"Prefect UI: http://127.0.0.1:{port}  "), printed
        yield UI(proc, api_url, printed.split()[2])
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(UI_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _read(api_url: str, reader):
    """Run `reader(client)` against the API at `api_url` with Prefect's client."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def go():
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            async with get_client() as client:
                return await reader(client)

    return asyncio.run(go())


def _flow_runs(api_url: str, run_id: str) -> list:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    return _read(api_url, lambda c: c.read_flow_runs(
        flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"run:{run_id}"])), limit=200))


def _task_runs(api_url: str, flow_run_id) -> list:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    return _read(api_url, lambda c: c.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])), limit=200))


@pytest.mark.cluster
def test_the_run_keeps_its_database_under_the_results_folder(kept_run):
    out, folder, _ = kept_run
    runtime = json.loads((folder / "env.json").read_text())["runtime"]
    assert runtime["run_id"] == folder.name
    assert runtime["startup"]["prefect_server"] == "started"
    assert Path(runtime["startup"]["prefect_database"]) == out / ".prefect" / "prefect.db"
    assert (out / ".prefect" / "prefect.db").is_file()
    # what the harness set on its own server is listed; the run's server keeps its UI off
    assert runtime["settings"]["PREFECT_SERVER_UI_ENABLED"] == "false"
    assert runtime["settings"]["PREFECT_LOGGING_TO_API_ENABLED"] == "true"


@pytest.mark.cluster
def test_the_run_sets_a_damaged_database_aside_and_starts_fresh(kept_run):
    """Garbage in <out>/.prefect/prefect.db: `harness run` renames it prefect.db.damaged-<time>,
    says so in one line, and runs on a fresh database (which `ui` serves below)."""
    from harness.runtime.template_db import database_damage

    db = kept_run.out / ".prefect" / "prefect.db"
    aside = list(db.parent.glob("prefect.db.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == GARBAGE
    said = [line for line in kept_run.stderr.splitlines() if "not a sound SQLite database" in line]
    assert said == [f"[harness] {db}: not a sound SQLite database (file is not a database); set aside as "
                    f"{aside[0].name} and starting a fresh one (the runs it held are no longer in `harness ui`; "
                    "their run folders are untouched)"], kept_run.stderr[-4000:]
    assert database_damage(db) is None


@pytest.mark.cluster
def test_ui_serves_flow_runs_named_and_tagged_by_strategy_and_repeat(kept_run, ui):
    folder = kept_run.folder
    api_url = ui.api_url
    run_id = folder.name
    flow_runs = _flow_runs(api_url, run_id)
    by_name: dict[str, list] = {}
    for flow_run in flow_runs:
        by_name.setdefault(flow_run.name, []).append(flow_run)
    measured = {f"{WORKLOAD}/{s}/r0" for s in STRATEGIES}
    probes = f"{WORKLOAD}/adaptive/warm-up/probe"  # the adaptive controller's priors (harness.strategies.probe)
    assert set(by_name) == measured | {f"{WORKLOAD}/static:1/warm-up", probes, f"{WORKLOAD}/report"}, sorted(by_name)
    assert len(by_name[f"{WORKLOAD}/static:1/warm-up"]) == 2  # the warm-up's two passes
    (probe_run,) = by_name[probes]
    assert "warm-up" in probe_run.tags and f"run:{run_id}" in probe_run.tags
    for strategy in STRATEGIES:
        (flow_run,) = by_name[f"{WORKLOAD}/{strategy}/r0"]
        assert sorted(flow_run.tags) == sorted(["harness", f"workload:{WORKLOAD}", f"strategy:{strategy}",
                                                "repeat:0", f"run:{run_id}"])
        assert flow_run.state_type.value == "COMPLETED"
        assert flow_run.parameters["items"] == ITEMS and flow_run.parameters["strategy"] == strategy
        expected_size = {"per_item": 1, "static:8": 8, "adaptive": None}[strategy]
        assert flow_run.parameters["batch_size"] == expected_size
    for flow_run in by_name[f"{WORKLOAD}/static:1/warm-up"]:
        assert "warm-up" in flow_run.tags and not any(t.startswith("repeat:") for t in flow_run.tags)


@pytest.mark.cluster
def test_ui_serves_task_runs_named_by_their_items(kept_run, ui):
    folder = kept_run.folder
    api_url = ui.api_url
    flow_runs = {r.name: r for r in _flow_runs(api_url, folder.name)}
    names = {s: sorted(t.name for t in _task_runs(api_url, flow_runs[f"{WORKLOAD}/{s}/r0"].id)) for s in STRATEGIES}
    assert names["per_item"] == sorted(f"item {i}" for i in range(ITEMS))
    assert names["static:8"] == ["batch 0-7", "batch 16-23", "batch 8-15"]
    injected = [n for n in names["adaptive"] if "injected fault" in n]
    assert injected and all(n.startswith("batch ") for n in names["adaptive"]), names["adaptive"]


@pytest.mark.cluster
def test_ui_serves_the_report_artifacts_linking_the_committed_folder(kept_run, ui):
    folder = kept_run.folder
    api_url = ui.api_url
    (report_run,) = [r for r in _flow_runs(api_url, folder.name) if r.name == f"{WORKLOAD}/report"]
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    artifacts = _read(api_url, lambda c: c.read_artifacts(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[report_run.id]))))
    (markdown,) = [a for a in artifacts if a.type == "markdown"]
    link = str(folder.resolve() / "report.html")
    assert link in markdown.data and ".partial" not in markdown.data
    assert Path(link).is_file()
    with urllib.request.urlopen(api_url.removesuffix("/api") + "/", timeout=10) as resp:  # the UI is on
        assert resp.status == 200 and b"<html" in resp.read().lower()


def _ui_entries(ui_url: str) -> list[str]:
    """Where to start walking each UI the server has: the address `harness ui` prints (it opens
    the server's default UI), then the Runs page of any other (Prefect 3.9 serves its older UI
    beside the new one, behind "Switch to V1 UI"; 3.6 has only the one)."""
    with urllib.request.urlopen(ui_url + "/ui-settings", timeout=10) as resp:
        settings = json.load(resp)
    others = [v for v in settings.get("available_uis", []) if v != settings.get("default_ui")]
    return [ui_url] + [ui_url + settings[f"{v}_base_url"].rstrip("/") + "/runs" for v in others]


@pytest.mark.cluster
@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                    reason="chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
# The run and the UI's start (the module's fixtures, ~2 min here) and two walks of ~30 s each on
# a loaded machine: twice the suite's 300 s.
@pytest.mark.timeout(600)
def test_the_ui_a_user_opens_shows_the_runs_their_task_runs_and_the_report(kept_run, ui, tmp_path):
    """The pages a user opens, in a real browser, walked by following the links a user clicks.

    The UI's JavaScript asks the server which API to call (/ui-settings); a server on a port other
    than Prefect's default once answered 4200, and every page said "Can't connect to Server API"
    while the client-side checks above passed."""
    folder = kept_run.folder
    runs = {r.name: r for r in _flow_runs(ui.api_url, folder.name)}
    static, report = runs[f"{WORKLOAD}/static:8/r0"], runs[f"{WORKLOAD}/report"]
    browser = Browser(tmp_path / "profile")
    try:
        for entry in _ui_entries(ui.url):
            browser.open(entry)
            # Prefect 3.6's UI greets a first visit with a dialog over the page, drawn with the
            # sidebar and its Settings link: skipped as a user skips it.
            if "Join the Prefect Community" in browser.wait_for("Settings"):
                browser.click("Skip")
            browser.follow("Runs")
            browser.wait_for(*(f"{WORKLOAD}/{s}/r0" for s in STRATEGIES), report.name, at="/runs")
            assert f"/runs/flow-run/{static.id}" in browser.follow(static.name, at="/runs")
            browser.click_for("Task Runs", "batch 0-7", "batch 8-15", "batch 16-23", at=f"/runs/flow-run/{static.id}")
            browser.follow("Runs", at=f"/runs/flow-run/{static.id}")
            assert f"/runs/flow-run/{report.id}" in browser.follow(report.name, at="/runs")
            browser.click_for("Artifacts", artifact_key(WORKLOAD, "headline"), at=f"/runs/flow-run/{report.id}")
            browser.follow(artifact_key(WORKLOAD, "headline"), at=f"/runs/flow-run/{report.id}")
            browser.wait_for("Full report: " + report_link(folder), at="/artifacts/artifact/")
    finally:
        browser.close()


@pytest.mark.cluster
def test_ui_stops_on_ctrl_c(ui):
    ui.proc.send_signal(signal.SIGINT)
    assert ui.proc.wait(UI_STOP_TIMEOUT_S) == 0
    with contextlib.suppress(OSError):
        assert not _health(ui.api_url)


def test_ui_on_a_folder_without_a_database_is_bad_input(tmp_path, capsys, keep_signal_handlers):
    from harness.cli import main

    (tmp_path / "results").mkdir()
    assert main(["ui", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert "found no Prefect database" in err and str(tmp_path / "results") in err


def test_a_second_run_into_the_folder_keeps_a_database_of_its_own(tmp_path):
    """Two servers writing one SQLite file contend for its one write lock: the folder's
    database is held by one run at a time, another meanwhile gets its own under runs/<run id>."""
    from harness.runtime.server import results_db_dir

    with contextlib.ExitStack() as first, contextlib.ExitStack() as second:
        assert results_db_dir(tmp_path, "a", first) == tmp_path / ".prefect"
        assert results_db_dir(tmp_path, "b", second) == tmp_path / ".prefect" / "runs" / "b"
    with contextlib.ExitStack() as third:  # released with its run: the next run shares it again
        assert results_db_dir(tmp_path, "c", third) == tmp_path / ".prefect"


def test_a_failed_run_leaves_no_database_it_created(tmp_path):
    """A run that fails or is interrupted writes nothing (README, exit codes): the database it
    created under --out goes with it; one that held earlier runs stays."""
    from harness.runtime.server import results_db_dir

    out = tmp_path / "results"
    with pytest.raises(KeyboardInterrupt), contextlib.ExitStack() as stack:
        (results_db_dir(out, "a", stack) / "prefect.db").write_bytes(b"runs")
        raise KeyboardInterrupt
    assert not out.exists()
    with contextlib.ExitStack() as stack:  # a sound database: a damaged one would be set aside
        with contextlib.closing(sqlite3.connect(results_db_dir(out, "b", stack) / "prefect.db")) as db:
            db.execute("CREATE TABLE flow_run (id TEXT)")
    held = (out / ".prefect" / "prefect.db").read_bytes()
    with pytest.raises(RuntimeError), contextlib.ExitStack() as stack:
        results_db_dir(out, "c", stack)
        raise RuntimeError("the run failed")
    assert (out / ".prefect" / "prefect.db").read_bytes() == held
