"""The harness on a cluster it did not start: a real `dask scheduler` and `dask worker`
processes on loopback (the commands of README's "Running on your own cluster"), a Prefect
API server started apart from the harness, workers set up wrongly, and a worker lost mid-run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from processes import stop_groups

from harness.cli import main
from harness.runtime import client_settings, free_port, start_prefect_server
from harness.workload.spec import parse_spec
from harness.work.synthetic import Workload

pytestmark = pytest.mark.cluster

DASK = str(Path(sys.executable).with_name("dask"))
# A scheduler or worker process imports dask and distributed (~2 s here); a loaded 2-core
# machine gets ten times that before the fixture gives up.
START_TIMEOUT_S = 60
SUBPROCESS_TIMEOUT_S = 240


@pytest.fixture(autouse=True)
def _keep_signal_handlers(keep_signal_handlers):
    """main() installs signal handlers for the CLI process (conftest.keep_signal_handlers)."""


class ExternalCluster:
    """`dask scheduler` + `dask worker` subprocesses, each in its own process group."""

    def __init__(self, log_dir: Path, cwd: Path | None = None) -> None:
        self.log_dir = log_dir
        self.cwd = cwd  # the processes' working directory (None: this one's)
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.scheduler = self._start("scheduler", [
            DASK, "scheduler", "--host", "127.0.0.1", "--port", self.address.rsplit(":", 1)[1],
            "--dashboard-address", "127.0.0.1:0"], os.environ.copy())

    def _start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(self.log_dir / f"{name}.log", "wb") as log:
            return subprocess.Popen(cmd, env=env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)

    def add_worker(self, name: str, env: dict[str, str]) -> None:
        self.workers[name] = self._start(f"worker-{name}", [
            DASK, "worker", self.address, "--nthreads", "1", "--name", name,
            "--host", "127.0.0.1", "--no-dashboard"], env)

    def client(self):
        import distributed

        return distributed.Client(self.address, timeout=START_TIMEOUT_S, set_as_default=False)

    def wait_for_workers(self) -> dict[str, str]:
        """Wait until every worker started has joined; returns {name: address}."""
        with self.client() as client:
            client.wait_for_workers(len(self.workers), timeout=START_TIMEOUT_S)
            return {w["name"]: addr for addr, w in client.scheduler_info(n_workers=-1)["workers"].items()}

    def kill_worker(self, name: str) -> None:
        """SIGKILL the worker and its nanny: a machine gone, not a clean shutdown."""
        os.killpg(self.workers[name].pid, signal.SIGKILL)

    def close(self) -> None:
        stop_groups([*self.workers.values(), self.scheduler])


@pytest.fixture
def external_cluster(tmp_path, runtime):
    """A factory: an empty scheduler; tests add the workers they need. `runtime` (the session's
    API server) has put PREFECT_API_URL and the other client settings into os.environ."""
    cluster = ExternalCluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def good_cluster(tmp_path_factory, runtime):
    """A scheduler and two workers set up as README tells users, shared by the tests that only
    run on it (a cluster's three processes take seconds to start): the tests that set workers up
    wrongly or kill one have an `external_cluster` of their own."""
    cluster = ExternalCluster(tmp_path_factory.mktemp("good-cluster"))
    try:
        for name in ("w0", "w1"):
            cluster.add_worker(name, good_worker_env(runtime.api_url))
        cluster.names = cluster.wait_for_workers()
        yield cluster
    finally:
        cluster.close()


def good_worker_env(api_url: str) -> dict[str, str]:
    """What README tells users to give their workers."""
    return {**os.environ, **client_settings(api_url)}


def bare_worker_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---------------------------------------------------------------- an existing Dask cluster


def test_runs_on_an_existing_cluster_by_option_and_by_file(good_cluster, runtime, tmp_path, make_toml, capsys):
    external_cluster, names = good_cluster, good_cluster.names
    toml = make_toml("external", count=40, mean_ms=0.5, strategies=("static:10", "adaptive"))
    by_option = tmp_path / "external.toml"
    by_option.write_text(toml)
    by_file = tmp_path / "external-file.toml"
    by_file.write_text(toml.replace("[cluster]\n", f'[cluster]\naddress = "{external_cluster.address}"\n'))

    # the file's address alone is enough (one strategy there: the layout is what is checked)
    for args in (["run", str(by_option), "--dask-address", external_cluster.address],
                 ["run", str(by_file), "--strategies", "static:10"]):
        code, out, err = _cli([*args, "--out", str(tmp_path / "results"), "--repeats", "1"], capsys)
        assert code == 0, err[-3000:]
        folder = Path(out.rstrip("\n").splitlines()[-1])
        env = json.loads((folder / "env.json").read_text())["runtime"]
        assert env["startup"]["dask_cluster"] == "existing" and env["startup"]["prefect_server"] == "existing"
        assert env["scheduler_address"] == external_cluster.address
        assert sorted(w["address"] for w in env["workers"]) == sorted(names.values())
        assert env["worker_threads"] == 2
        report = (folder / "report.md").read_text()
        assert external_cluster.address in report and all(a in report for a in names.values())
        runs = pd.read_csv(folder / "runs.csv", dtype={"checksum": str})
        assert (runs["items"] == 40).all() and runs["checksum"].nunique() == 1


def test_preflight_names_workers_without_the_api_and_writes_nothing(external_cluster, runtime, tmp_path,
                                                                   make_toml, capsys):
    dead_api = f"http://127.0.0.1:{free_port()}/api"
    external_cluster.add_worker("good", good_worker_env(runtime.api_url))
    external_cluster.add_worker("bare", bare_worker_env())
    external_cluster.add_worker("elsewhere", {**bare_worker_env(), **client_settings(dead_api)})
    names = external_cluster.wait_for_workers()
    path = tmp_path / "w.toml"
    path.write_text(make_toml("preflight", count=10))
    out = tmp_path / "results"

    code, _, err = _cli(["run", str(path), "--out", str(out), "--dask-address", external_cluster.address], capsys)
    assert code == 2, err[-3000:]
    assert f"{names['bare']}: PREFECT_API_URL is not set" in err
    assert f"{names['elsewhere']}: PREFECT_API_URL is {dead_api}, the flow uses {runtime.api_url}" in err
    assert names["good"] not in err
    assert "Running on your own cluster" in err
    assert not out.exists()


def test_lean_preflight_catches_an_api_key_only_the_flow_process_has(good_cluster, runtime, tmp_path,
                                                                     make_toml, capsys):
    """The user's flow process has PREFECT_API_KEY (here by temporary_settings, as a profile
    would give it); the workers do not. Under lean each task would run without it: exit 2,
    the setting named, its value never printed, nothing written. Allowed, it runs and env.json
    names the setting lost."""
    from prefect.settings import PREFECT_API_KEY, temporary_settings

    path = tmp_path / "w.toml"
    path.write_text(make_toml("api-key", count=10, strategies=("static:10",)))
    out = tmp_path / "results"
    args = ["run", str(path), "--out", str(out), "--dask-address", good_cluster.address, "--repeats", "1"]
    with temporary_settings(updates={PREFECT_API_KEY: "pnu_not_a_real_key"}):
        code, _, err = _cli(args, capsys)
        assert code == 2, err[-3000:]
        assert "PREFECT_API_KEY: flow process (secret), worker(s) (unset)" in err
        assert "pnu_not_a_real_key" not in err
        assert not out.exists()

        code, stdout, err = _cli([*args, "--allow-setting-loss"], capsys)
    assert code == 0, err[-3000:]
    folder = Path(stdout.rstrip("\n").splitlines()[-1])
    env_text = (folder / "env.json").read_text()
    assert "pnu_not_a_real_key" not in env_text
    check = json.loads(env_text)["runtime"]["settings_check"]
    assert set(check["lost"]) == {"PREFECT_API_KEY"} and "PREFECT_API_KEY" in check["verdict"]


def test_unreachable_api_on_every_worker_is_named(good_cluster, runtime, tmp_path, make_toml, capsys,
                                                  monkeypatch):
    """Flow and workers agree on an API URL nobody answers on... the flow notices first."""
    dead_api = f"http://127.0.0.1:{free_port()}/api"
    monkeypatch.setenv("PREFECT_API_URL", dead_api)
    path = tmp_path / "w.toml"
    path.write_text(make_toml("dead-api", count=10))
    code, _, err = _cli(["run", str(path), "--out", str(tmp_path / "results"),
                         "--dask-address", good_cluster.address], capsys)
    assert code == 2 and f"PREFECT_API_URL={dead_api}: no Prefect API answers" in err
    assert not (tmp_path / "results").exists()


# ---------------------------------------------------------------- a worker lost mid-run


def _expected(spec) -> tuple[int, int]:
    """Checksum and failed-item count of the workload, from its items alone."""
    from harness.work.outcomes import ItemOutcome, Tally

    tally = Tally()
    for item in Workload(spec).items():
        if item.permanent or item.transient_failures > spec.faults.retries:
            tally.add_failure(item.index, 1, "fault")
        else:
            tally.add(ItemOutcome(item.index, True, 0.0, 1, item.payload[::-1], ""))
    return tally.checksum, tally.items_failed


def test_a_worker_lost_mid_run_loses_and_doubles_no_item(external_cluster, runtime, tmp_path, make_toml):
    """SIGKILL one of two workers (nanny and all) while the adaptive run has tasks in flight."""
    from harness.measure.run import run_workload
    from harness.workload.spec import with_overrides

    for name in ("w0", "w1"):
        external_cluster.add_worker(name, good_worker_env(runtime.api_url))
    victim = external_cluster.wait_for_workers()["w1"]
    # 400 items waiting 15 ms each: ~3 s on two workers, long enough to lose one halfway.
    toml = make_toml("lost", count=400, kind="sleep", mean_ms=15.0, transient_rate=0.05,
                     permanent_rate=0.02, strategies=("adaptive",))
    spec = with_overrides(parse_spec(toml), address=external_cluster.address)
    checksum, failed = _expected(spec)
    killed = []

    def progress(label: str, items: int):
        def seen(done: int) -> None:  # called in the flow as results come in
            if label.startswith("adaptive") and done >= items // 4 and not killed:
                external_cluster.kill_worker("w1")
                killed.append(done)
        return seen

    from harness.report.run_report import write_report

    folder = run_workload(spec, tmp_path / "results", progress=progress, on_committed=write_report)
    assert killed, "the worker was never killed"

    (run,) = pd.read_csv(folder / "runs.csv", dtype={"checksum": str}).itertuples()
    assert run.items == 400 and run.items_ok + run.items_failed == 400
    assert run.items_failed == failed
    assert run.checksum == f"{checksum:016x}"  # every ok item exactly once: none lost, none doubled
    notes = "\n".join(json.loads((folder / "env.json").read_text())["strategy_notes"]["adaptive"])
    assert f"worker {victim} lost" in notes and "Dask re-ran" in notes
    assert f"worker {victim} lost" in (folder / "report.md").read_text()


# ---------------------------------------------------------------- an existing Prefect API


async def _flow_runs(api_url: str, flow_name: str) -> list:
    """The flow runs of `flow_name` that the API at `api_url` holds, read with Prefect's client."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        async with get_client() as client:
            return await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))


@pytest.fixture(scope="module")
def their_server():
    """A Prefect API server started apart from the harness, as a user's own; both ways of naming
    it below use this one (each run's flow runs carry a name of its own)."""
    server = start_prefect_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("given_by", ["environment", "profile"])
def test_uses_an_existing_prefect_api_and_starts_none(their_server, tmp_path, make_toml, given_by):
    """The API Prefect's own settings name, from PREFECT_API_URL or from the active profile of a
    profiles file (PREFECT_PROFILES_PATH): the harness starts no server, its flow runs land on
    that API, and it changes no logging setting there (no --quiet-prefect)."""
    import psutil

    server = their_server
    path = tmp_path / "api.toml"
    name = f"existing-api-{given_by}"
    path.write_text(make_toml(name, count=20, strategies=("static:10",)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    if given_by == "environment":
        env["PREFECT_API_URL"] = server.api_url
    else:
        profiles = tmp_path / "profiles.toml"
        profiles.write_text(f'active = "theirs"\n\n[profiles.theirs]\nPREFECT_API_URL = "{server.api_url}"\n'
                            '\n[profiles.other]\nPREFECT_API_URL = "http://127.0.0.1:9/api"\n')
        env["PREFECT_PROFILES_PATH"] = str(profiles)
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(path), "--out", str(tmp_path / "results"),
         "--repeats", "1"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started_servers = set()
    while proc.poll() is None:  # watch its children: no `prefect server` among them, ever
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if "server" in child.cmdline() and "prefect" in " ".join(child.cmdline()):
                        started_servers.add(child.pid)
        time.sleep(0.2)
    out, err = proc.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    assert proc.returncode == 0, err[-3000:]
    assert not started_servers
    folder = Path(out.rstrip("\n").splitlines()[-1])
    runtime_env = json.loads((folder / "env.json").read_text())["runtime"]
    assert runtime_env["startup"]["prefect_server"] == "existing"
    assert runtime_env["api_url"] == server.api_url
    assert not [k for k in runtime_env["settings"] if k.startswith("PREFECT_LOGGING_")]
    assert not (tmp_path / "results" / ".prefect").exists()  # no database of its own either

    runs = asyncio.run(_flow_runs(server.api_url, f"{name}-map"))
    # the measured static:10 and the warm-up's flow runs, all finished
    assert {run.name for run in runs} == {f"{name}/static:10/r0", f"{name}/static:1/warm-up"}
    assert all(run.state_type.value == "COMPLETED" for run in runs)
    assert all(f"run:{folder.name}" in run.tags for run in runs)


# ---------------------------------------------------------------- a user's task, its modules shipped

# The folder holding the `harness` package the tests import: the one thing the workers and the
# CLI get on PYTHONPATH (absolute: their working directories are elsewhere).
HARNESS_ROOT = str(Path(__file__).resolve().parent.parent)


@pytest.fixture
def cluster_elsewhere(tmp_path, runtime):
    """`dask scheduler` and workers started in a folder of their own, with only the harness on
    PYTHONPATH: they see nothing of the workload's folder, as on another machine."""
    home = tmp_path / "cluster-home"
    home.mkdir()
    cluster = ExternalCluster(tmp_path, cwd=home)
    try:
        yield cluster
    finally:
        cluster.close()


def _bare_worker_env(api_url: str) -> dict[str, str]:
    return {**good_worker_env(api_url), "PYTHONPATH": HARNESS_ROOT}


def _write_files(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def _harness_run(args: list[str], cwd: Path, pythonpath: list[str]) -> subprocess.CompletedProcess[str]:
    """The `harness` command line in a process of its own, as the user runs it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([HARNESS_ROOT, *pythonpath])}
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=SUBPROCESS_TIMEOUT_S)


def test_a_task_module_and_what_it_imports_beside_it_are_shipped_to_the_workers(cluster_elsewhere, runtime,
                                                                                  tmp_path):
    """The workload's module imports a helper module and a package beside it; the workers have
    neither. The run ships them (not an unimported module of the folder) and every item is ok;
    a worker that joins afterwards gets them too."""
    from test_user_task import plain_checksum

    # Run on the workers (defined here: cloudpickle sends them by value, the workers have no tests).
    def imported_from(name: str) -> str:
        import importlib

        return importlib.import_module(name).__file__

    def finds(name: str) -> bool:
        import importlib.util

        return importlib.util.find_spec(name) is not None

    project = tmp_path / "project"
    _write_files(project, {
        "ship_task.py": "import ship_helper\nfrom ship_pkg import scale\n\n"
                        "def work(x):\n    return ship_helper.square(x) * scale.FACTOR\n\n"
                        "def items():\n    return range(40)\n",
        "ship_helper.py": "def square(x):\n    return x * x\n",
        "ship_pkg/__init__.py": "",
        "ship_pkg/scale.py": "FACTOR = 3\n",
        "ship_unused.py": "raise RuntimeError('never imported')\n",
        "w.toml": 'name = "shipped"\n[task]\nfunction = "ship_task:work"\n[items]\nsource = "ship_task:items"\n'
                  '[run]\nstrategies = ["per_item", "static:8", "adaptive"]\n',
    })
    for name in ("w0", "w1"):
        cluster_elsewhere.add_worker(name, _bare_worker_env(runtime.api_url))
    cluster_elsewhere.wait_for_workers()
    with cluster_elsewhere.client() as client:
        assert not any(client.run(finds, "ship_task").values())  # nothing to import it from, yet

    out = tmp_path / "results"
    # lean: the shipping is the same under either profile, and per_item's 40 tasks cost ~35 ms
    # each instead of stock's ~280 (the workers have the flow's settings, as README says)
    done = _harness_run(["run", str(project / "w.toml"), "--dask-address", cluster_elsewhere.address, "--quick",
                         "--profile", "lean", "--out", str(out)], cwd=tmp_path, pythonpath=[])
    assert done.returncode == 0, done.stderr[-3000:]
    runs = pd.read_csv(Path(done.stdout.rstrip("\n").splitlines()[-1]) / "runs.csv", dtype={"checksum": str})
    assert set(runs["strategy"]) == {"per_item", "static:8", "adaptive"}
    assert (runs["items_ok"] == runs["items"]).all() and (runs["items_failed"] == 0).all()
    assert set(runs[~runs["sampled"]]["checksum"]) == {plain_checksum(lambda x: x * x * 3, range(40))}

    cluster_elsewhere.add_worker("late", _bare_worker_env(runtime.api_url))
    late = cluster_elsewhere.wait_for_workers()["late"]
    with cluster_elsewhere.client() as client:
        for name in ("ship_task", "ship_helper", "ship_pkg.scale"):
            files = client.run(imported_from, name)
            assert len(files) == 3 and all(".zip" in f and str(project) not in f for f in files.values()), files
        assert not any(client.run(finds, "ship_unused").values())
        assert late in files


def test_a_dependency_missing_on_the_workers_is_named_with_exit_2(cluster_elsewhere, runtime, tmp_path):
    """The module imports a package installed only where the harness runs: it is not shipped
    (not in the workload's folder), and the worker that lacks it is named with what to install."""
    project, site = tmp_path / "project", tmp_path / "installed-here"
    _write_files(project, {
        "ship_needs.py": "import ship_absent_dependency\n\n"
                         "def work(x):\n    return ship_absent_dependency.twice(x)\n\n"
                         "def items():\n    return range(10)\n",
        "w.toml": 'name = "missing-dependency"\n[task]\nfunction = "ship_needs:work"\n[items]\n'
                  'source = "ship_needs:items"\n',
    })
    _write_files(site, {"ship_absent_dependency.py": "def twice(x):\n    return 2 * x\n"})
    cluster_elsewhere.add_worker("w0", _bare_worker_env(runtime.api_url))
    worker = cluster_elsewhere.wait_for_workers()["w0"]

    out = tmp_path / "results"
    done = _harness_run(["run", str(project / "w.toml"), "--dask-address", cluster_elsewhere.address, "--quick",
                         "--out", str(out)], cwd=tmp_path, pythonpath=[str(site)])
    assert done.returncode == 2, done.stderr[-3000:]
    assert (f"w.toml: [task] function: worker {worker} cannot import ship_needs:work: ModuleNotFoundError: "
            f"No module named 'ship_absent_dependency'") in done.stderr
    assert f"the harness sent ship_needs.py from {project} to the workers" in done.stderr
    assert "module 'ship_absent_dependency' is not installed there: install the package" in done.stderr
    assert not any(out.glob("missing-dependency*"))  # no run folder
