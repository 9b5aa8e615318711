"""The command line end to end: `harness.cli.main([...])` in this process, and one real
`python -m harness run` subprocess that starts (and stops) its own server and cluster.

Exit-2 cases fail on the workload or the options before anything starts: fast, no server.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.measure.records import TRACE_COLUMNS

# runs.csv's original minimum columns, in their order (README, "The run folder").
DESIGN_RUN_COLUMNS = [
    "workload", "strategy", "repeat", "wall_s", "items", "items_ok", "items_failed", "tasks",
    "retries", "batch_size_median", "ideal_s", "peak_rss_mb",
]
STRATEGIES = "per_item,static:10,raw_dask:10"
ITEMS = 40
EXPECTED_TASKS = {"per_item": ITEMS, "static:10": 4, "raw_dask:10": 4}
SUBPROCESS_TIMEOUT_S = 240


@pytest.fixture(autouse=True)
def _keep_signal_handlers(keep_signal_handlers):
    """main() installs signal handlers for the CLI process (conftest.keep_signal_handlers)."""


@pytest.fixture
def workload_file(tmp_path, make_toml) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(make_toml(
        "cli-tiny", count=ITEMS, mean_ms=0.5, transient_rate=0.1, permanent_rate=0.05, retries=2,
        strategies=("per_item",), repeats=3,  # overridden on the command line below
    ))
    return path


def check_run_folder(folder: Path, out: Path, workload: str, repeats: int = 1) -> dict:
    """Everything the README promises about a completed run folder; returns env.json."""
    assert folder.is_dir()
    assert folder.parent == out / workload
    for name in ("runs.csv", "trace.csv", "env.json", "report.md"):
        assert (folder / name).is_file(), name

    runs = pd.read_csv(folder / "runs.csv", dtype={"checksum": str})
    assert list(runs.columns[: len(DESIGN_RUN_COLUMNS)]) == DESIGN_RUN_COLUMNS
    strategies = STRATEGIES.split(",")
    assert len(runs) == len(strategies) * repeats  # one row per strategy x repeat
    assert sorted(zip(runs["strategy"], runs["repeat"])) == sorted(
        (s, r) for s in strategies for r in range(repeats))
    assert (runs["workload"] == workload).all()
    assert (runs["items"] == ITEMS).all()
    assert (runs["items_ok"] + runs["items_failed"] == runs["items"]).all()
    assert runs["checksum"].nunique() == 1
    assert runs["items_failed"].nunique() == 1 and runs["retries"].nunique() == 1
    assert (runs["wall_s"] > 0).all() and (runs["ideal_s"] > 0).all() and (runs["peak_rss_mb"] > 0).all()
    assert dict(zip(runs["strategy"], runs["tasks"])) == EXPECTED_TASKS
    assert dict(zip(runs["strategy"], runs["batch_size_median"])) == {"per_item": 1, "static:10": 10, "raw_dask:10": 10}

    trace = pd.read_csv(folder / "trace.csv")
    assert list(trace.columns[: len(TRACE_COLUMNS)]) == list(TRACE_COLUMNS)

    env = json.loads((folder / "env.json").read_text())
    assert env["packages"]["prefect"] and env["packages"]["distributed"]
    startup = env["runtime"]["startup"]
    assert {"prefect_server", "dask_cluster"} <= set(startup)
    assert env["strategies"] == strategies and env["repeats"] == repeats

    report = (folder / "report.md").read_text()
    assert report.startswith(f"# {workload}:")
    for strategy in strategies:
        assert strategy in report

    parent = folder.parent
    assert (parent / "latest").is_symlink()
    assert (parent / "latest").resolve() == folder.resolve()
    assert [p.name for p in parent.iterdir() if p.name.endswith(".partial")] == []
    assert sorted(p.name for p in parent.iterdir()) == sorted(["latest", folder.name])
    return env


# ---------------------------------------------------------------- bad input: exit 2, nothing written


def _run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_bad_input(code: int, err: str, out_dir: Path, *named: str) -> None:
    assert code == 2, err
    for text in named:
        assert text in err, f"{text!r} not in stderr: {err}"
    assert not out_dir.exists(), "bad input must write nothing"


def test_missing_workload_file(tmp_path, capsys):
    missing = tmp_path / "nope.toml"
    out = tmp_path / "results"
    code, _, err = _run_cli(["run", str(missing), "--out", str(out)], capsys)
    _assert_bad_input(code, err, out, str(missing), "no such workload file")


def test_bad_toml(tmp_path, capsys):
    path = tmp_path / "broken.toml"
    path.write_text('name = "broken"\n[items\ncount = 3\n')
    out = tmp_path / "results"
    code, _, err = _run_cli(["run", str(path), "--out", str(out)], capsys)
    _assert_bad_input(code, err, out, str(path), "invalid TOML")


def test_unknown_key(tmp_path, capsys, make_toml):
    path = tmp_path / "extra.toml"
    path.write_text(make_toml("extra").replace("[items]\n", "[items]\ncolour = 3\n"))
    out = tmp_path / "results"
    code, _, err = _run_cli(["run", str(path), "--out", str(out)], capsys)
    _assert_bad_input(code, err, out, str(path), "[items]", "colour", "unknown key")


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("per_item,bogus", "'bogus'"),
        ("static", "needs a batch size"),
        ("static:0", "integer >= 1"),
        ("per_item:4", "takes no batch size"),
    ],
)
def test_bad_strategies(workload_file, tmp_path, capsys, value, named):
    out = tmp_path / "results"
    code, _, err = _run_cli(["run", str(workload_file), "--out", str(out), "--strategies", value], capsys)
    _assert_bad_input(code, err, out, "--strategies", named)


@pytest.mark.parametrize("value", ["0", "-1", "three"])
def test_bad_repeats(workload_file, tmp_path, capsys, value):
    out = tmp_path / "results"
    code, _, err = _run_cli(["run", str(workload_file), "--out", str(out), "--repeats", value], capsys)
    _assert_bad_input(code, err, out, "--repeats", value)


def test_report_on_a_missing_folder(tmp_path, capsys):
    missing = tmp_path / "no-such-run"
    code, _, err = _run_cli(["report", str(missing)], capsys)
    assert code == 2
    assert str(missing) in err and "not a run folder" in err
    assert not missing.exists()


def test_usage_errors_exit_2(capsys):
    code, _, err = _run_cli(["frobnicate"], capsys)
    assert code == 2 and "invalid choice" in err
    code, _, err = _run_cli([], capsys)
    assert code == 2


# ---------------------------------------------------------------- a real run, in this process


@pytest.mark.cluster
def test_schema_accepts_every_bundled_workload_and_refuses_an_unknown_key(capsys):
    """`harness schema` is what an editor checks a workload file against (README)."""
    import tomllib

    import jsonschema

    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    validator = jsonschema.Draft202012Validator(schema)
    files = sorted((Path(__file__).resolve().parent.parent / "workloads").rglob("*.toml"))
    assert files
    for path in files:
        doc = tomllib.loads(path.read_text())
        assert not list(validator.iter_errors(doc)), path
    doc = tomllib.loads(files[0].read_text())
    doc["items"]["cnt"] = 3
    doc["pattern"] = {"kind": "nested_map", "groups": 0}
    errors = sorted(e.json_path for e in validator.iter_errors(doc))
    assert "$.items" in errors and "$.pattern" in errors


def test_an_interrupt_after_the_folder_is_written_names_it(runtime, workload_file, tmp_path, capsys, monkeypatch):
    """Ctrl-C while the report is drawn: the measurements are complete and kept, and the message
    says where and how to draw the report, not that no run folder was written."""
    import harness.report.run_report as run_report

    def interrupted(folder):
        raise KeyboardInterrupt
    monkeypatch.setattr(run_report, "write_report", interrupted)
    out = tmp_path / "results"
    code, _, err = _run_cli(["run", str(workload_file), "--out", str(out), "--strategies", "static:5",
                             "--repeats", "1", "--dask-address", runtime.scheduler_address], capsys)
    assert code == 130, err
    (folder,) = [p for p in (out / "cli-tiny").iterdir() if p.name != "latest"]
    assert (folder / "runs.csv").is_file() and (folder / "results.json").is_file()
    assert f"interrupted after the run folder was written: {folder}" in err
    assert f"harness report {folder}" in err and "no run folder was written" not in err


def test_run_in_process_on_the_session_runtime(runtime, workload_file, tmp_path, capsys):
    """`run` on the session's API (PREFECT_API_URL is set) and cluster (--dask-address): the
    harness starts neither and says so in env.json. Then `report` re-renders the folder."""
    out = tmp_path / "results"
    code, stdout, err = _run_cli(
        ["run", str(workload_file), "--out", str(out), "--strategies", STRATEGIES, "--repeats", "1",
         "--dask-address", runtime.scheduler_address],
        capsys,
    )
    assert code == 0, err
    folder = Path(stdout.rstrip("\n").splitlines()[-1])
    env = check_run_folder(folder, out, "cli-tiny")
    assert env["runtime"]["startup"]["prefect_server"] == "existing"
    assert env["runtime"]["startup"]["dask_cluster"] == "existing"
    assert env["runtime"]["api_url"] == runtime.api_url
    assert os.environ["PREFECT_API_URL"] == runtime.api_url  # the session's settings survive the run

    # report RUN_DIR: re-renders report.md from the CSVs alone
    rendered = (folder / "report.md").read_text()
    (folder / "report.md").unlink()
    code, stdout, err = _run_cli(["report", str(folder)], capsys)
    assert code == 0, err
    assert stdout.rstrip("\n").splitlines()[-1] == str(folder / "report.md")
    assert (folder / "report.md").read_text() == rendered


@pytest.mark.cluster
def test_a_failed_report_keeps_the_run_and_names_the_command_that_re_renders_it(
        runtime, workload_file, tmp_path, capsys, monkeypatch):
    """The report is drawn after the run folder is committed: when drawing it fails, the
    measurements stay complete under the folder's real name, the CLI says how to re-render
    and exits 1; that command then renders the report from the folder alone."""
    import harness.report.run_report

    def broken_report(run_dir: Path) -> Path:
        raise RuntimeError("planted report failure")

    monkeypatch.setattr(harness.report.run_report, "write_report", broken_report)
    out = tmp_path / "results"
    code, stdout, err = _run_cli(
        ["run", str(workload_file), "--out", str(out), "--strategies", "static:10", "--repeats", "1",
         "--dask-address", runtime.scheduler_address],
        capsys,
    )
    assert code == 1, err
    folder = Path(stdout.rstrip("\n").splitlines()[-1])
    assert folder.parent == out / "cli-tiny" and (folder.parent / "latest").resolve() == folder.resolve()
    for name in ("runs.csv", "trace.csv", "tasks.csv", "env.json"):
        assert (folder / name).is_file(), name
    assert not (folder / "report.md").exists()
    assert [p.name for p in folder.parent.iterdir() if p.name.endswith(".partial")] == []
    assert "planted report failure" in err and f"harness report {folder}" in err

    monkeypatch.undo()
    code, _, err = _run_cli(["report", str(folder)], capsys)
    assert code == 0, err
    assert (folder / "report.md").read_text().startswith("# cli-tiny:")


# ---------------------------------------------------------------- a real run, as a user runs it


def _port_open(url: str) -> bool:
    parsed = urllib.parse.urlparse(url)
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((parsed.hostname, parsed.port)) == 0


@pytest.mark.cluster
def test_run_subprocess_starts_and_stops_its_own_runtime(workload_file, tmp_path):
    """`python -m harness run` as a user types it, in an environment without the session's
    PREFECT_* settings: it starts its own server and cluster, writes the folder, prints its
    path last, exits 0, and leaves no server behind."""
    out = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(workload_file), "--out", str(out),
         "--strategies", STRATEGIES, "--repeats", "1"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    folder = Path(proc.stdout.rstrip("\n").splitlines()[-1])
    assert folder.is_absolute(), folder  # --out was absolute, so is the printed folder
    run_env = check_run_folder(folder, out, "cli-tiny")
    startup = run_env["runtime"]["startup"]
    assert startup["prefect_server"] == "started" and startup["prefect_server_s"] > 0
    assert startup["dask_cluster"] == "started"
    assert "[harness]" in proc.stderr  # progress goes to stderr, stdout is the report and the path
    # the server it started is gone (its port no longer answers)
    assert not _port_open(run_env["runtime"]["api_url"])


@pytest.mark.cluster
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_leaves_no_folder_and_no_processes(tmp_path, make_toml, signum):
    """Ctrl-C (or SIGTERM) in the middle of the measured runs: the harness stops the server and
    cluster it started and leaves no run folder, not even a partial one."""
    import psutil

    workload = tmp_path / "slow.toml"
    # per_item on 400 items of 5 ms keeps the run busy for several seconds after start-up.
    workload.write_text(make_toml("slow", count=400, mean_ms=5.0, strategies=("per_item",)))
    out = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(workload), "--out", str(out), "--repeats", "3"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        # wait until the runtime is up and the measured runs have begun
        for line in proc.stderr:
            if "runtime up" in line:
                break
        descendants = psutil.Process(proc.pid).children(recursive=True)
        assert any("prefect" in " ".join(p.cmdline()) for p in descendants)
        proc.send_signal(signum)
        proc.wait(timeout=SUBPROCESS_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, proc.stderr.read()[-2000:]
    _, alive = psutil.wait_procs(descendants, timeout=15)
    assert not alive, [p.cmdline() for p in alive]
    leftovers = list((out / "slow").iterdir()) if (out / "slow").exists() else []
    assert leftovers == [], leftovers  # no run folder, no .partial, no latest
