"""The harness under hostile input (issue 16): damaged run folders are named, not crashed on;
bad --out, oversized files and workloads that do not fit the machine are refused before
anything starts; an unexpected failure is one line with a log; a lost worker is noted for a
static run; start-up and per_item submissions show on the progress line."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import SpecError
from harness.measure.admission import check_memory, check_out, memory_need
from harness.measure.records import read_run_folder
from harness.measure.run_folder import run_folder
from harness.workload.spec import MAX_WORKLOAD_FILE_BYTES, load_spec
from run_fixture import TRUE_WALL_S, make_env, make_runs, write_run


@pytest.fixture(autouse=True)
def _keep_signal_handlers(keep_signal_handlers):
    """main() installs signal handlers for the CLI process (conftest.keep_signal_handlers)."""


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Logs of unexpected failures go to this test's own cache folder."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))


def _good_run(folder: Path) -> Path:
    env = {**make_env(), "strategies": list(TRUE_WALL_S)}
    return write_run(folder, env=env)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """`folder` (with what it holds) on a read-only file system: chmod is no barrier to root,
    so as root a tmpfs is mounted and remounted read-only; skipped where mounting is refused."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for p in modes:
            p.chmod(0o555 if p.is_dir() else 0o444)
        try:
            yield folder
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    saved = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True)
    if mount.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.decode().strip()}")
    try:
        for name, data in saved.items():
            (folder / name).write_bytes(data)
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, capture_output=True)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False, capture_output=True)


# --- damaged run folders: report, compare and table name the file and the damage ----------


def _header_only(folder: Path) -> str:
    path = folder / "runs.csv"
    path.write_text(path.read_text().splitlines()[0] + "\n")
    return "runs.csv: found a header and no rows"


def _broken_env(folder: Path) -> str:
    (folder / "env.json").write_text('{"python": "3.11", "strategies": [')
    return "env.json: not valid JSON"


def _cut_mid_line(folder: Path) -> str:
    path = folder / "runs.csv"
    text = path.read_text()
    path.write_text(text[: len(text) - 40])
    return "runs.csv: line"


def _rows_dropped(folder: Path) -> str:
    """Truncated on a line boundary: the last strategy's rows of the last repeat are gone."""
    path = folder / "runs.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))
    return "runs.csv: found no rows for adaptive repeat 4"


def _row_duplicated(folder: Path) -> str:
    """A row written twice: named as the duplicate it is, not as rows missing everywhere else."""
    path = folder / "runs.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines + [lines[3]]))
    return f"runs.csv: line {len(lines) + 1} duplicates line 4: "


DAMAGES = {"header-only": _header_only, "broken-env": _broken_env, "cut-mid-line": _cut_mid_line,
           "rows-dropped": _rows_dropped, "row-duplicated": _row_duplicated}


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("command", ["report", "compare", "table"])
def test_damaged_folder_is_named_and_a_good_report_is_kept(tmp_path, capsys, damage, command):
    good = _good_run(tmp_path / "good")
    run = _good_run(tmp_path / "run")
    assert main(["report", str(run)]) == 0
    before = {name: (run / name).read_bytes() for name in ("report.md", "report.html")}
    capsys.readouterr()
    named = DAMAGES[damage](run)
    argv = {"report": ["report", str(run)], "compare": ["compare", str(good), str(run)],
            "table": ["table", str(good), str(run)]}[command]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err.startswith(f"harness: error: {run}/"), err
    assert named in err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2
    assert {name: (run / name).read_bytes() for name in before} == before  # never overwritten


def test_an_env_json_without_the_report_s_keys_is_refused_and_the_report_kept(tmp_path, capsys):
    """`{}` is valid JSON and an object, but a report from it would read "Python None, 0
    workers": refused naming the file and the keys, the good report.md byte-identical."""
    run = _good_run(tmp_path / "run")
    assert main(["report", str(run)]) == 0
    before = {name: (run / name).read_bytes() for name in ("report.md", "report.html")}
    capsys.readouterr()
    (run / "env.json").write_text("{}")
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"harness: error: {run}/env.json: found no python, platform, cpu_count, memory_gb, "
                          "packages, runtime, repeats, warm_up_s, started_at, finished_at"), err
    assert len(err.splitlines()) == 1
    assert {name: (run / name).read_bytes() for name in before} == before


def test_a_complete_folder_reads_whole(tmp_path):
    folder = read_run_folder(_good_run(tmp_path / "run"))
    assert set(folder.runs["strategy"]) == set(TRUE_WALL_S)
    assert folder.env["strategies"] == list(TRUE_WALL_S)


def test_report_on_a_read_only_folder_is_refused(tmp_path, capsys):
    run = _good_run(tmp_path / "run")
    with read_only(run):
        assert main(["report", str(run)]) == 2
        err = capsys.readouterr().err
        assert f"{run}: not writable" in err
        assert not (run / "report.md").exists()


# --- refused before anything starts -------------------------------------------------------


def _run_quietly(argv: list[str]) -> subprocess.CompletedProcess:
    """`harness ...` in a child that reports whether Prefect or Dask were imported."""
    code = textwrap.dedent(f"""\
        import sys
        from harness.cli import main
        code = main({argv!r})
        print("imported:", sorted(m for m in ("prefect", "distributed") if m in sys.modules))
        sys.exit(code)
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)


def test_dev_zero_is_refused_before_it_is_read(tmp_path):
    proc = _run_quietly(["run", "/dev/zero", "--out", str(tmp_path / "out")])
    assert proc.returncode == 2, proc.stderr
    assert "/dev/zero: cannot read the workload file: found a device" in proc.stderr
    assert "imported: []" in proc.stdout
    assert not (tmp_path / "out").exists()


def test_an_oversized_workload_file_is_refused(tmp_path, make_toml):
    path = tmp_path / "big.toml"
    path.write_text(make_toml() + "#" * MAX_WORKLOAD_FILE_BYTES)
    with pytest.raises(SpecError, match=f"expected a workload TOML file of at most {MAX_WORKLOAD_FILE_BYTES:,} bytes"):
        load_spec(path)


def _bad_out_cases(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    return {
        "a file": (["--out", str(a_file)], f"{a_file} is a file, expected a folder"),
        "a file on the way": (["--out", str(a_file / "below")], f"{a_file} is a file, expected a folder"),
    }


@pytest.mark.parametrize("case", ["a file", "a file on the way"])
def test_bad_out_exits_2_before_starting_anything(tmp_path, make_toml, case):
    workload = tmp_path / "w.toml"
    workload.write_text(make_toml())
    args, named = _bad_out_cases(tmp_path)[case]
    proc = _run_quietly(["run", str(workload), *args])
    assert proc.returncode == 2, proc.stderr
    assert named in proc.stderr
    assert "imported: []" in proc.stdout


def test_a_name_over_the_file_system_limit_exits_2(tmp_path, make_toml, capsys):
    workload = tmp_path / "w.toml"
    workload.write_text(make_toml(name="n" * 300))
    out = tmp_path / "out"
    assert main(["run", str(workload), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "is 300 bytes, expected a name of at most 255 bytes" in err
    assert not out.exists()


def test_a_read_only_out_exits_2(tmp_path, make_toml, capsys):
    workload = tmp_path / "w.toml"
    workload.write_text(make_toml())
    out = tmp_path / "ro"
    out.mkdir()
    with read_only(out):
        assert main(["run", str(workload), "--out", str(out)]) == 2
        assert f"--out {out}: {out} is not writable" in capsys.readouterr().err
        assert list(out.iterdir()) == []


def test_a_batch_size_beyond_the_platform_exits_2(tmp_path, make_toml, capsys):
    workload = tmp_path / "w.toml"
    workload.write_text(make_toml(strategies=("per_item", f"static:{sys.maxsize + 1}")))
    assert main(["run", str(workload), "--out", str(tmp_path / "out")]) == 2
    assert f"the batch size must be at most {sys.maxsize:_}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_workload_that_does_not_fit_the_machine_is_refused_naming_the_figure(tmp_path, make_toml, capsys):
    text = make_toml(count=10_000_000, strategies=("static:1000000",)).replace(
        "payload_bytes = 32", f"payload_bytes = {16 * 2**20}")
    workload = tmp_path / "w.toml"
    workload.write_text(text)
    spec = load_spec(workload)
    need = memory_need(spec)
    assert need.strategy == "static:1000000"
    assert main(["run", str(workload), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"needs about {need.bytes / 2**30:,.2f} GiB of memory" in err and "available" in err
    assert not (tmp_path / "out").exists()


def test_a_small_workload_fits(make_spec, tmp_path):
    spec = make_spec(count=40)
    assert check_memory(spec).bytes < 2**31
    check_out(tmp_path / "out", spec.name)  # creates nothing
    assert not (tmp_path / "out").exists()


# --- memory: the window in bytes, the estimate from that same window, the refusal ----------

MiB = 2**20


def test_memory_need_counts_the_window_the_strategy_keeps(make_spec):
    """The issue's measurement: static:1024 over 100,000 items of 64 KiB on 2 threads held 16
    tasks (1 GiB); now one batch (64 MiB) is over half the budget, so the window is its least,
    3 tasks, and the estimate counts those plus the one being read, from the same function."""
    from harness.measure.admission import (ITEM_OVERHEAD_BYTES, PAYLOAD_COPIES_IN_FLIGHT, RUNTIME_BASE_BYTES,
                                           WORKER_PROCESS_BYTES)
    from harness.strategies import Stage
    from harness.strategies.base import submit_window
    from harness.work.synthetic import Workload

    spec = make_spec(count=100_000, payload_bytes=64 * 1024, strategies=("static:1024",))
    window = Stage(Workload(spec), None, "cpu", 0, 2).submit_window(1024)  # what static.execute asks for
    assert window == submit_window(2, 1024, 64 * 1024)
    assert (window.tasks, window.limit) == (3, "least")
    need = memory_need(spec)
    assert need.in_flight_items == (window.tasks + 1) * 1024
    assert need.bytes == (need.in_flight_items * (64 * 1024 * PAYLOAD_COPIES_IN_FLIGHT + ITEM_OVERHEAD_BYTES)
                          + RUNTIME_BASE_BYTES + 2 * WORKER_PROCESS_BYTES)
    assert window.describe() in need.detail and "over the 128 MiB budget" in need.detail


def test_memory_need_counts_every_item_for_joblib_and_the_full_window_for_adaptive(make_spec):
    from harness.policy.controller import full_window
    from harness.strategies.base import ADAPTIVE_MAX_BATCH_BYTES

    joblib = memory_need(make_spec(count=5_000, payload_bytes=MiB, strategies=("joblib_auto",)))
    assert joblib.in_flight_items == 5_000 and "joblib bounds no bytes in flight" in joblib.detail
    adaptive = memory_need(make_spec(count=5_000, payload_bytes=MiB, strategies=("adaptive",)))
    assert adaptive.in_flight_items == full_window(2) * (ADAPTIVE_MAX_BATCH_BYTES // MiB)


def test_a_workload_whose_least_window_does_not_fit_memory_is_refused_with_what_fits(make_spec):
    spec = make_spec(count=100_000, payload_bytes=64 * 1024, strategies=("per_item", "static:1024"))
    need = memory_need(spec)
    available = 3 * 2**30 // 2  # 1.5 GiB: not even static:1024's 3 tasks (+1) of 64 MiB fit
    assert need.strategy == "static:1024" and need.bytes > available
    with pytest.raises(SpecError) as refused:
        check_memory(spec, available)
    message = str(refused.value)
    assert f"needs about {need.bytes / 2**30:,.2f} GiB of memory but the machine has 1.50 GiB available" in message
    assert "the least that keeps 2 worker threads busy plus one queued" in message
    fits = re.search(r"would fit: static:(\d+), or \[items\] payload_bytes = ([\d,]+) with static:1024, "
                     r"or leave static:1024 out of \[run\] strategies$", message)
    assert fits, message
    size, payload = int(fits[1]), int(fits[2].replace(",", ""))
    assert check_memory(make_spec(count=100_000, payload_bytes=64 * 1024, strategies=(f"static:{size}",)), available)
    assert check_memory(make_spec(count=100_000, payload_bytes=payload, strategies=("static:1024",)), available)
    with pytest.raises(SpecError):  # the largest: one byte more does not fit
        check_memory(make_spec(count=100_000, payload_bytes=payload + 1, strategies=("static:1024",)), available)


def test_a_run_whose_least_window_does_not_fit_the_memory_exits_2_naming_what_fits(tmp_path, make_toml, capsys):
    text = make_toml(count=1_000_000, strategies=("static:100000",)).replace(
        "payload_bytes = 32", f"payload_bytes = {16 * MiB}")
    workload = tmp_path / "w.toml"
    workload.write_text(text)
    need = memory_need(load_spec(workload))
    assert main(["run", str(workload), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"needs about {need.bytes / 2**30:,.2f} GiB of memory" in err
    assert "3 tasks in flight, the least that keeps 2 worker threads busy plus one queued" in err
    assert re.search(r"would fit: static:\d+, or \[items\] payload_bytes = [\d,]+ with static:100000", err), err
    assert not (tmp_path / "out").exists()


def test_a_sampled_stage_makes_its_items_payload_one_at_a_time(make_spec):
    """per_item over a sample took every sampled item at once: 500 items of 1 MiB in the flow
    process before the window held any. Now an item's payload is made when the window takes it."""
    import tracemalloc

    from harness.strategies import Stage
    from harness.work.synthetic import Workload

    workload = Workload(make_spec(count=1_000, payload_bytes=MiB))
    sample = workload.sample_indices(200)
    stage = Stage(workload, sample, "cpu", 0, 2)
    tracemalloc.start()
    try:
        items = stage.iter_items()
        first = next(items)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MiB  # a few copies of one item's payload, not 200 MiB
    assert [first, *items] == workload.take(sample)


@pytest.mark.cluster
@pytest.mark.parametrize(("name", "payload"), [("per_item", 16 * MiB), ("static:2", 8 * MiB), ("raw_dask:2", 8 * MiB)])
def test_payload_bytes_bound_the_tasks_in_flight(runtime, make_spec, name, payload):
    """Tasks of 16 MiB of payload on the session's 2 threads: the byte budget, not 8 tasks per
    thread, sets the window, the strategy never holds more, and the estimate counts that window."""
    from harness.patterns import run_pattern
    from harness.strategies import Stage
    from harness.strategies.base import IN_FLIGHT_MAX_BYTES, SUBMIT_WINDOW_PER_THREAD
    from harness.work.synthetic import Workload
    from harness.workload.vocabulary import Strategy

    strategy = Strategy.parse(name)
    batch = strategy.batch_size or 1
    window_tasks = IN_FLIGHT_MAX_BYTES // (16 * MiB)
    count = 2 * window_tasks * batch  # two windows' worth: the window fills
    spec = make_spec(name="bytes-in-flight", count=count, payload_bytes=payload, kind="sleep", mean_ms=1.0,
                     strategies=(name,))
    stage = Stage(Workload(spec), None, "sleep", 0, runtime.worker_threads, runtime.client)
    window = stage.submit_window(batch)
    assert window.limit == "bytes" and window.tasks == window_tasks < SUBMIT_WINDOW_PER_THREAD * runtime.worker_threads
    result = run_pattern(spec, strategy, stage, runtime)
    assert result.tally.items_ok == count and result.tasks == 2 * window_tasks
    assert result.timings.peak_in_flight == window.tasks  # filled, never more
    assert f"window bounded by payload bytes: {window.describe()}" in result.notes
    assert memory_need(spec).in_flight_items == (window.tasks + 1) * batch


def test_adaptive_batches_are_capped_in_bytes(make_spec):
    from harness.strategies import Stage
    from harness.strategies.base import ADAPTIVE_MAX_BATCH_BYTES
    from harness.work.synthetic import Workload

    spec = make_spec(count=40, payload_bytes=2**20)
    stage = Stage(Workload(spec), None, "cpu", 0, 2)
    assert stage.max_batch_size == ADAPTIVE_MAX_BATCH_BYTES // 2**20
    assert Stage(Workload(make_spec(count=40, payload_bytes=0)), None, "cpu", 0, 2).max_batch_size is None


def test_controller_holds_every_batch_to_its_max():
    from harness.policy.controller import BatchObservation, Controller

    controller = Controller(100_000, 2, max_batch_size=7, prior_overhead_s=0.05)
    t = 0.0
    for _ in range(40):
        decision = controller.decide(50_000, 0)
        assert decision.batch_size <= 7
        controller.submitted(decision)
        controller.observe(BatchObservation(decision.batch_size, decision.batch_size, t, t + 0.06,
                                            0.0001 * decision.batch_size, decision.batch_size, 0,
                                            decision.strategy))
        t += 0.06
    assert "max_batch_size" in decision.reason


# --- a failed run leaves nothing; an unexpected failure is one line and a log -------------


def test_a_failed_run_leaves_no_empty_workload_folder(tmp_path):
    out = tmp_path / "results"
    with pytest.raises(RuntimeError), run_folder(out, "w") as (partial, _final):
        (partial / "runs.csv").write_text("half")
        raise RuntimeError("the run failed")
    assert not out.exists()


def test_a_column_of_non_numbers_is_damage(tmp_path, capsys):
    run = _good_run(tmp_path / "run")
    make_runs().assign(items="x").to_csv(run / "runs.csv", index=False)
    assert main(["report", str(run)]) == 2
    assert f"{run}/runs.csv: column items holds values that are not numbers" in capsys.readouterr().err


def test_an_unexpected_failure_is_one_line_with_the_log_path(tmp_path, capsys, monkeypatch):
    """A full disk while the report is written (injected: mounting a full file system needs
    privileges): one line naming the failure and the log, the previous report kept whole."""
    import errno

    import harness.report.run_report

    run = _good_run(tmp_path / "run")
    assert main(["report", str(run)]) == 0
    before = (run / "report.md").read_bytes()
    capsys.readouterr()

    def disk_full(report):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(harness.report.run_report, "render_markdown", disk_full)
    assert main(["report", str(run)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2, lines
    assert lines[0] == f"harness: error: report failed: OSError: [Errno {errno.ENOSPC}] {os.strerror(errno.ENOSPC)}"
    log = Path(lines[1].split("the traceback is in ")[1].split(";")[0])
    assert log.parent == tmp_path / "cache" / "logs"
    assert "Traceback" in log.read_text() and "disk_full" in log.read_text()
    assert (run / "report.md").read_bytes() == before
    assert not list(run.glob(".*.tmp"))


# --- progress: start-up stages and per_item submissions -----------------------------------


def test_start_up_stages_show_on_the_progress_line():
    import io

    from harness.report.progress import ProgressDisplay

    with ProgressDisplay(io.StringIO(), force=True) as display:
        display.startup("Prefect API server")
        assert display.rows[0]["name"] == "start-up: Prefect API server"
        display.startup("Dask cluster")
        assert [r["name"] for r in display.rows] == ["start-up: Dask cluster"]
        line = display.stage("per_item 1/1", 10)
        line.submitted(4)
        assert display.rows[0]["rate"] == "4 sent" and display.rows[0]["completed"] == 0


@pytest.mark.cluster
def test_per_item_counts_submissions_before_results(runtime, make_spec):
    from harness.patterns import run_pattern
    from harness.workload.vocabulary import Strategy
    from harness.strategies import Stage
    from harness.work.synthetic import Workload

    spec = make_spec(name="submitted", count=40, kind="sleep", mean_ms=20.0)
    sent: list[int] = []
    done: list[int] = []
    stage = Stage(Workload(spec), None, "sleep", 0, runtime.worker_threads, runtime.client,
                  on_progress=done.append, on_submitted=sent.append)
    result = run_pattern(spec, Strategy.parse("per_item"), stage, runtime)
    assert result.tally.items == 40 and result.tasks == 40
    assert sent[:3] == [1, 2, 3] and sent == sorted(sent)
    assert done[-1] == 40


# --- a lost worker is noted, here in a static stage ---------------------------------------


@pytest.mark.cluster
def test_a_worker_killed_mid_stage_is_noted_for_a_static_run(runtime, make_spec):
    """A worker process SIGKILLed while static:4 runs: the stage still accounts for every item,
    and the watch notes the lost worker (its own 2-worker cluster, so the session's is untouched)."""
    import dataclasses
    import signal

    from harness.patterns import run_pattern
    from harness.runtime.client_env import client_settings
    from harness.runtime.cluster import open_cluster, worker_layout
    from harness.workload.spec import ClusterSpec
    from harness.workload.vocabulary import Strategy
    from harness.strategies import Stage
    from harness.measure.worker_watch import WorkerWatch
    from harness.work.synthetic import Workload

    spec = make_spec(name="lost-worker", count=120, kind="sleep", mean_ms=30.0, strategies=("static:4",))
    with contextlib.ExitStack() as stack:
        client, address = open_cluster(ClusterSpec(workers=2, threads_per_worker=1),
                                       client_settings(runtime.api_url), stack, {})
        own = dataclasses.replace(runtime, scheduler_address=address, client=client,
                                  worker_threads=sum(w["nthreads"] for w in worker_layout(client)))
        pids = client.run(os.getpid)
        victim = sorted(pids)[0]
        killed = threading.Event()

        def kill_once(done: int) -> None:
            if done and not killed.is_set():
                killed.set()
                os.kill(pids[victim], signal.SIGKILL)

        stage = Stage(Workload(spec), None, "sleep", 0, own.worker_threads, client, on_progress=kill_once)
        with WorkerWatch(client) as watch:
            result = run_pattern(spec, Strategy.parse("static:4"), stage, own)
        assert killed.is_set()
        assert result.tally.items == 120
        notes = watch.notes()
        assert any(note.startswith(f"worker {victim} lost") for note in notes), notes


# --- a damaged Prefect database under the results folder ----------------------------------

# Real runs started here keep the session's template cache (the per-test cache of _own_cache
# would make each server migrate a fresh database: seconds longer, nothing more tested).
_SHARED_CACHE = os.environ.get("HARNESS_CACHE_DIR")


def _user_env() -> dict[str, str]:
    """The environment of a user's shell: none of the session's PREFECT_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    if _SHARED_CACHE:
        env["HARNESS_CACHE_DIR"] = _SHARED_CACHE
    else:
        env.pop("HARNESS_CACHE_DIR", None)
    return env


@pytest.fixture
def session_cache(monkeypatch):
    """The cache the session's runtime started with (its workers' settings name files in it):
    a run on that runtime from a test with _own_cache's would lose those settings under lean."""
    if _SHARED_CACHE:
        monkeypatch.setenv("HARNESS_CACHE_DIR", _SHARED_CACHE)
    else:
        monkeypatch.delenv("HARNESS_CACHE_DIR", raising=False)


GARBAGE = b"this is not an SQLite database\n" * 64


def test_ui_on_a_damaged_database_names_it_and_the_way_out(tmp_path, capsys):
    db = tmp_path / "results" / ".prefect" / "prefect.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(GARBAGE)
    assert main(["ui", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("harness: error:")]
    assert len(lines) == 1 and lines[0].startswith(f"harness: error: {db}: not a sound SQLite database"), err
    assert f"mv {db} {db}.damaged" in lines[0] and f"--out {tmp_path / 'results'}" in lines[0]
    assert db.read_bytes() == GARBAGE  # `ui` only reads


# `harness run` over a damaged database in its results folder (set aside, a fresh one started and
# served by `harness ui`): tests/test_prefect_ui.py's run, which starts its own server anyway.


# --- every item failed: no speed verdict --------------------------------------------------


@pytest.mark.cluster
def test_a_run_whose_every_item_failed_gets_no_speed_verdict(runtime, session_cache, tmp_path, make_toml, capsys):
    """permanent_rate = 1.0: every item fails under every strategy. The headline says what
    failed (how many, the error) and no ratio is printed as a speed, in report.md and results.json."""
    import json

    workload = tmp_path / "doomed.toml"
    workload.write_text(make_toml("doomed", count=40, permanent_rate=1.0, retries=0,
                                  strategies=("per_item", "static:10", "adaptive")))
    out = tmp_path / "results"
    code = main(["run", str(workload), "--out", str(out), "--repeats", "1", "--dask-address", runtime.scheduler_address])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    folder = Path(stdout.rstrip("\n").splitlines()[-1])
    report = (folder / "report.md").read_text()
    results = json.loads((folder / "results.json").read_text())
    expected = "No speed verdict: every item failed under every strategy ("
    assert expected in report and results["headline"].startswith(expected), results["headline"]
    assert "40 items failed after retries (40 PermanentFault)" in results["headline"]
    speeds = [line for line in report.splitlines() if not line.startswith("wall: ")]  # the legend explains columns
    assert not [line for line in speeds if "faster than" in line or "the wall time of" in line or "Fastest" in line]
    assert "Near-optimal static batch sizes" not in report
    assert results["references"] == [] and results["oracle"] is None
    assert "No item succeeded under per_item, static:10, adaptive" in report


def test_a_strategy_with_no_item_succeeding_is_compared_with_nothing(tmp_path):
    """per_item's items all failed, the others' did not: the headline judges adaptive against
    the best static alone and says why per_item is left out; no × per_item figure anywhere."""
    from harness.report.run_report import read_report

    runs = make_runs()
    failed = runs["strategy"] == "per_item"
    runs.loc[failed, "items_failed"] = runs.loc[failed, "items"]
    runs.loc[failed, "items_ok"] = 0
    report = read_report(write_run(tmp_path / "run", runs=runs, env=make_env()))
    assert report.headline.startswith("adaptive was ") and "than per_item" not in report.headline
    assert report.headline.endswith("per_item had no item succeed and is compared with nothing "
                                     "(per_item: 500 items failed).")
    assert [c for c in report.references.rows if c.against == "per_item"] == []
    assert {row["× per_item"] for row in report.strategies.records()} == {"—"}


# --- a worker killed on the default LocalCluster ------------------------------------------


@pytest.mark.cluster
def test_a_worker_killed_on_the_local_cluster_is_noted_in_the_report_and_results_json(tmp_path, make_toml):
    """`harness run` on its own LocalCluster; one worker process SIGKILLed once the first stage
    has reported (its nanny restarts it): every item is still counted once with the same
    checksum, and the report's notes and results.json's say a worker was lost."""
    import json
    import signal

    import pandas as pd
    import psutil

    workload = tmp_path / "lost.toml"
    # three stages of ~1-2 s of sleeping items after the first: time for the kill to land in one
    workload.write_text(make_toml("lost-local", count=200, kind="sleep", mean_ms=20.0,
                                  strategies=("static:4", "static:8"), repeats=2))
    out = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", str(workload), "--out", str(out)],
                            env=_user_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    err_lines = []
    for line in proc.stderr:
        err_lines.append(line)
        if killed is None and line.startswith("[harness] repeat 1/2"):
            # the workers: the harness's spawned children (the nanny runs in the harness process)
            workers = [c for c in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(c.cmdline())]
            killed = workers[0].pid
            os.kill(killed, signal.SIGKILL)
    stdout = proc.stdout.read()
    assert proc.wait(timeout=240) == 0, "".join(err_lines)[-4000:]
    assert killed is not None
    folder = Path(stdout.rstrip("\n").splitlines()[-1])
    runs = pd.read_csv(folder / "runs.csv", dtype={"checksum": str})
    assert (runs["items"] == 200).all() and (runs["items_ok"] == 200).all()
    assert runs["checksum"].nunique() == 1
    notes = [n for said in json.loads((folder / "results.json").read_text())["environment"]["strategy_notes"].values()
             for n in said]
    assert any(" lost: " in n and n.startswith("worker tcp://") for n in notes), notes
    assert " lost: " in (folder / "report.md").read_text()


# --- a full disk: refused up front, or the measurements kept ---------------------------------


@contextlib.contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    """`folder` on a tmpfs of `size` (a real file system that fills: ENOSPC as a full disk gives
    it); as root only, skipped elsewhere or where mounting is refused."""
    if os.geteuid() != 0:
        pytest.skip("a small file system needs root to mount")
    folder.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if mount.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False, capture_output=True)


def test_a_run_whose_disk_cannot_hold_its_rounds_is_refused_before_anything_starts(tmp_path, make_toml, capsys):
    """Disk full at start: one line naming --out, the figure needed and free, exit 2, nothing
    written (before, a 34-line Prefect server log with "database or disk is full" 30 lines down)."""
    from harness.measure.admission import DISK_BASE_BYTES, check_disk, disk_need

    path = tmp_path / "tiny.toml"
    path.write_text(make_toml("tiny", count=40, strategies=("per_item", "static:8")))
    spec = load_spec(path)
    need = disk_need(spec)
    # the file's repeats x (40 per_item task runs + 5 of static:8)
    assert need.task_runs == spec.run.repeats * (40 + 5) and need.bytes > DISK_BASE_BYTES
    with pytest.raises(SpecError, match=r"needs about \d+ MiB of disk there but its file system has 1 MiB free"):
        check_disk(spec, tmp_path, free=2**20)
    assert check_disk(spec, tmp_path, free=need.bytes) == need
    with small_disk(tmp_path / "small", "2m") as out:
        code = main(["run", str(path), "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and f"--out {out}" in err and "MiB free" in err
        assert len(err.strip().splitlines()) == 1
        assert list(out.iterdir()) == []


def test_a_disk_that_fills_while_the_records_are_written_keeps_what_was_measured(tmp_path):
    """Disk full after measuring: the partial folder is kept as `<run id>.incomplete`, holding
    each record written whole (none cut short), and the error names it, what it holds and what
    is missing (before, the folder and every measurement in it were removed)."""
    from harness.errors import RunError
    from harness.measure.run_folder import run_folder, write_json, written

    with small_disk(tmp_path / "small", "1m") as out:
        with pytest.raises(RunError) as raised:
            with run_folder(out, "tiny") as (tmp, final):
                with written(tmp / "runs.csv") as part:
                    part.write_text("workload,strategy,repeat,wall_s\ntiny,per_item,0,1.0\n")
                write_json(tmp / "env.json", {"python": "3.11"})
                with written(tmp / "trace.csv") as part:
                    part.write_bytes(b"x" * 2 * 2**20)  # more than the disk holds
        [kept] = [p for p in (out / "tiny").iterdir() if p.name != "latest"]
        assert kept.name == f"{final.name}.incomplete" and not final.exists()
        assert sorted(p.name for p in kept.iterdir()) == ["env.json", "runs.csv"]  # no .part left
        message = str(raised.value)
        assert message.startswith(f"{kept}: the disk is full")
        assert "kept the measurements written: runs.csv, env.json" in message
        assert "missing: trace.csv, tasks.csv, results.json" in message
        assert f"harness report {kept}" in message and "\n" not in message
