"""`python -m harness compare RUN_A RUN_B`: exit 1 on a significant slow-down beyond the
threshold, 0 otherwise, 2 on bad input; run B is built by scaling run A's wall times."""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from run_fixture import TRUE_WALL_S, make_env, make_runs, scaled, write_run

from harness.measure import machine_load

from harness.analysis import settle, stats
from harness.cli import main
from harness.report.compare import compare_runs, judge
from harness.errors import SpecError


@pytest.fixture
def run_a(tmp_path):
    return write_run(tmp_path / "a")


def test_a_planted_30_percent_slowdown_exits_1(tmp_path, run_a, capsys):
    run_b = write_run(tmp_path / "b", runs=scaled(make_runs(), 1.3))
    assert main(["compare", str(run_a), str(run_b)]) == 1
    out = capsys.readouterr().out
    assert out.count("REGRESSION") == len(TRUE_WALL_S)
    assert "+30.0%" in out and "regressed: per_item" in out


def test_identical_runs_exit_0(run_a, capsys):
    assert main(["compare", str(run_a), str(run_a)]) == 0
    assert "no significant regression" in capsys.readouterr().out


def test_a_slowdown_within_the_threshold_exits_0(tmp_path, run_a):
    run_b = write_run(tmp_path / "b", runs=scaled(make_runs(), 1.3))
    assert main(["compare", str(run_a), str(run_b), "--threshold", "0.5"]) == 0


def test_a_speedup_is_not_a_regression(tmp_path, run_a):
    run_b = write_run(tmp_path / "b", runs=scaled(make_runs(), 0.7))
    result = compare_runs(run_a, run_b)
    assert not result.regressed
    assert all(c.verdict == "faster" and c.ratio.high < 1 for c in result.changes)


def test_noise_alone_is_not_a_regression(tmp_path, run_a):
    """B 30 % slower in its median but so noisy that the interval reaches below 1."""
    run_b = write_run(tmp_path / "b", runs=scaled(make_runs(spread=(-0.6, -0.4, 0.0, 0.4, 0.8)), 1.3))
    result = compare_runs(run_a, run_b)
    assert all(c.ratio.estimate == pytest.approx(1.3) for c in result.changes)
    assert not result.regressed


def test_strategies_in_one_run_only_are_listed_not_compared(tmp_path, run_a, capsys):
    walls = {s: w for s, w in TRUE_WALL_S.items() if s != "joblib_auto"} | {"static:64": 3.0}
    run_b = write_run(tmp_path / "b", runs=make_runs(walls))
    assert main(["compare", str(run_a), str(run_b)]) == 0
    out = capsys.readouterr().out
    assert "only in A (not compared): joblib_auto" in out and "only in B (not compared): static:64" in out


@pytest.mark.parametrize("case", ["missing folder", "no runs.csv", "not a csv"])
def test_bad_input_exits_2_and_names_the_folder(tmp_path, run_a, capsys, case):
    bad = tmp_path / "bad"
    if case != "missing folder":
        bad.mkdir()
    if case == "not a csv":
        (bad / "runs.csv").write_text("nothing,here\n")
    assert main(["compare", str(run_a), str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err
    with pytest.raises(SpecError):
        compare_runs(run_a, bad)


def test_a_negative_threshold_is_bad_input(run_a, capsys):
    assert main(["compare", str(run_a), str(run_a), "--threshold", "-0.1"]) == 2
    assert "--threshold" in capsys.readouterr().err


# ---------------------------------------------------------------- like for like, and enough repeats

UNLIKE = {
    "workload digest": lambda env: env | {"workload_digest": "0123456789ab"},
    "runtime profile": lambda env: env | {"runtime": env["runtime"] | {"profile": "stock"}},
    "cluster layout": lambda env: env | {"runtime": env["runtime"] | {"workers": [{"nthreads": 2}]}},
    "CPU count": lambda env: env | {"cpu_count": 8},
    "CPU model": lambda env: env | {"cpu_model": "Other CPU @ 9 GHz"},
    "package prefect": lambda env: env | {"packages": env["packages"] | {"prefect": "3.9.2"}},
    "Dask performance reports": lambda env: env | {"dask_report": True},
}


def _env_with_digest(digest: str = "feedfacecafe") -> dict:
    return make_env() | {"workload_digest": digest, "cpu_model": "Test CPU"}


@pytest.mark.parametrize("kind", list(UNLIKE))
def test_unlike_runs_are_refused_naming_the_difference(tmp_path, capsys, kind):
    a = write_run(tmp_path / "a", env=_env_with_digest())
    b = write_run(tmp_path / "b", env=UNLIKE[kind](_env_with_digest()))
    assert main(["compare", str(a), str(b)]) == 2
    captured = capsys.readouterr()
    assert kind in captured.err and "not like for like" in captured.err and "--force" in captured.err
    assert "REGRESSION" not in captured.out and "no significant regression" not in captured.out


def test_old_runs_without_a_digest_compare_the_recorded_workload_fields(tmp_path, capsys):
    a = write_run(tmp_path / "a", env=make_env() | {"workload": {"name": "small", "items": 200, "seed": 7}})
    b = write_run(tmp_path / "b", env=make_env() | {"workload": {"name": "large", "items": 200_000, "seed": 7}})
    assert main(["compare", str(a), str(b)]) == 2
    assert "workload (name, items, seed, cost)" in capsys.readouterr().err


def test_force_compares_anyway_and_lists_the_differences_above_the_table(tmp_path, capsys):
    a = write_run(tmp_path / "a", env=_env_with_digest())
    b = write_run(tmp_path / "b", env=UNLIKE["CPU count"](_env_with_digest()))
    assert main(["compare", str(a), str(b), "--force"]) == 0
    out = capsys.readouterr().out
    assert out.index("CPU count: A 2, B 8") < out.index("| strategy")


def test_too_few_repeats_exit_2_and_never_say_no_regression(tmp_path, capsys):
    a = write_run(tmp_path / "a", runs=make_runs(spread=(-0.01, 0.0, 0.01)))
    b = write_run(tmp_path / "b", runs=scaled(make_runs(spread=(-0.01, 0.0, 0.01)), 1.67))
    assert main(["compare", str(a), str(b)]) == 2
    captured = capsys.readouterr()
    assert "too few repeats for a verdict" in captured.err and "no significant regression" not in captured.out


def test_a_one_repeat_run_is_refused_not_passed(tmp_path, capsys):
    b = write_run(tmp_path / "b", runs=scaled(make_runs(spread=(0.0,)), 2.67))
    assert main(["compare", str(write_run(tmp_path / "a")), str(b)]) == 2
    assert "too few repeats" in capsys.readouterr().err


def test_other_work_is_flagged_by_its_cpu_share_and_the_harnesss_own_load_is_not(tmp_path, capsys):
    """A load average of 3-4 on 2 cores is the harness's own flow, workers and server: with
    other_cpu_pct recorded, only CPU time used by processes outside the harness warns."""
    own = make_runs().assign(load_before=3.8, load_after=3.5, cpu_idle_pct=0.0, cpu_steal_pct=0.0, other_cpu_pct=1.5)
    assert machine_load.load_warnings(own, 2) == []
    other = own.assign(other_cpu_pct=[35.0 if i % 2 else 1.0 for i in range(len(own))])
    [warning] = machine_load.load_warnings(other, 2)
    assert f"{len(other) // 2} of {len(other)} measured runs had processes outside the harness use more than 10 %" \
        in warning and "highest 35 %" in warning
    a, b = write_run(tmp_path / "a", runs=own), write_run(tmp_path / "b", runs=other)
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "warning: B:" in out and "outside the harness" in out and "warning: A:" not in out


# A process that burns one core until it is killed; it prints its pid once it is up, the signal
# the test waits for. The 600 s cap only ends it should this test itself be killed unawares.
BURN = "import os, time\nprint(os.getpid(), flush=True)\nt = time.monotonic()\nwhile time.monotonic() - t < 600: pass"
# CPU-seconds the burner uses inside each probe: the window lasts until it has, however busy the
# machine (at load average 10 on 2 cores it gets ~0.2 of a core).
BURN_CPU_S = 0.5
@pytest.fixture
def burner():
    """start(orphaned) -> the burning process, up and burning: this process's child, or one
    orphaned by a shell (outside this process's tree, as any unrelated program is). Each starts
    in a session of its own, and the whole process group is killed when the test ends."""
    import signal
    import subprocess
    import sys

    import psutil

    started: list[tuple[subprocess.Popen, psutil.Process | None]] = []

    def start(orphaned: bool) -> psutil.Process:
        command = (["sh", "-c", '"$0" -c "$1" &', sys.executable, BURN] if orphaned
                   else [sys.executable, "-c", BURN])
        popen = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
        started.append((popen, None))
        line = popen.stdout.readline()  # the burner's pid: it is up
        assert line.strip().isdigit(), f"the burner did not start (printed {line!r})"
        process = psutil.Process(int(line))
        started[-1] = (popen, process)
        if orphaned:
            popen.wait()  # the shell is gone: the burner is no longer in this process's tree
        return process

    yield start
    for popen, process in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)  # the group outlives the shell that led it
        popen.wait()
        popen.stdout.close()
        if process is not None:
            psutil.wait_procs([process], timeout=30)


def _tree_cpu_s() -> dict[int, float]:
    import psutil

    me = psutil.Process()
    out = {}
    for proc in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            out[proc.pid] = sum(proc.cpu_times()[:2])
    return out


def _probe_while(burning) -> tuple[float, float, float, set[int]]:
    """One LoadProbe over a window in which `burning` uses BURN_CPU_S, read around it by the test
    itself, in % of the machine over the window: what the probe counted as other work, what the
    machine used minus this process tree (the probe's definition of other work), and what the
    burner used; and the tree's pids. Percentages, not CPU-seconds: the test's window is a few
    ms wider than the probe's (on a loaded machine, a preemption between the reads), which
    moves a CPU-second total by as much as the burner but a rate by little."""
    import time

    import psutil

    burnt0 = sum(burning.cpu_times()[:2])
    tree0 = _tree_cpu_s()
    busy0, t0 = psutil.cpu_times(), time.monotonic()  # together, as the probe reads them
    with machine_load.LoadProbe() as probe:
        while sum(burning.cpu_times()[:2]) - burnt0 < BURN_CPU_S:
            assert burning.is_running(), "the burner ended"
            time.sleep(0.05)
    busy1, t1 = psutil.cpu_times(), time.monotonic()
    tree1 = _tree_cpu_s()
    burnt1 = sum(burning.cpu_times()[:2])
    span = (t1 - t0) * (psutil.cpu_count() or 1)
    busy_s = sum(getattr(busy1, f, 0.0) - getattr(busy0, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq"))
    tree_s = sum(cpu - tree0.get(pid, 0.0) for pid, cpu in tree1.items())  # as the probe: who is alive at the end
    return probe.other_cpu_pct, 100 * (busy_s - tree_s) / span, 100 * (burnt1 - burnt0) / span, set(tree1)


def test_the_load_probe_counts_a_foreign_process_as_other_work_and_its_own_child_not(burner):
    """A burning child of this process (a LocalCluster worker, the API server) is the harness's
    own; one outside its tree (orphaned by a shell) is other work. Judged on the probe's own
    window, so whatever else the machine runs meanwhile counts on both sides alike: the probe
    must agree with the test's reading to well within the burner's share, by which counting
    the burner on the wrong side would move it. (CPU time is counted in 10 ms ticks: BURN_CPU_S
    is 50 of them.)"""
    child = burner(orphaned=False)
    probed, expected, burnt, tree = _probe_while(child)
    assert child.pid in tree
    assert probed == pytest.approx(expected, abs=burnt / 2), "the child's CPU counted as other work"

    foreign = burner(orphaned=True)
    probed, expected, burnt, tree = _probe_while(foreign)
    assert foreign.pid not in tree
    assert probed == pytest.approx(expected, abs=burnt / 2), "the foreign CPU not counted as other work"


def test_a_run_under_load_is_flagged(tmp_path, capsys):
    busy = make_runs().assign(load_before=9.0, load_after=9.0, cpu_idle_pct=0.0, cpu_steal_pct=25.0)
    a, b = write_run(tmp_path / "a"), write_run(tmp_path / "b", runs=busy)
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "warning: B:" in out and "load average above" in out and "steal" in out


def test_compare_json_carries_every_verdict(tmp_path, capsys):
    a = write_run(tmp_path / "a")
    b = write_run(tmp_path / "b", runs=scaled(make_runs(), 1.3))
    assert main(["compare", str(a), str(b), "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["schema"] == "harness.compare/1" and document["regressed"]
    assert {c["strategy"] for c in document["changes"]} == set(TRUE_WALL_S)
    assert all(c["verdict"] == "REGRESSION" and c["ratio"]["low"] > 1 for c in document["changes"])


# ---------------------------------------------------------------- synthetic samples: calibrated verdicts

STRATEGIES = 7  # as many as small.toml and large.toml run
ROUNDS = 5  # what repeats = "auto" measures at least for 7 strategies (harness.analysis.settle.floor_rounds)


def _sigma(iqr: float) -> float:
    return math.log((1 + iqr / 2) / (1 - iqr / 2)) / (2 * 0.6745)


def _samples(rng, iqr: float, factor: float = 1.0) -> dict[str, np.ndarray]:
    return {f"s{i}": (10.0 + i) * factor * np.exp(rng.normal(0, _sigma(iqr), ROUNDS)) for i in range(STRATEGIES)}


def test_two_runs_of_the_same_commit_compare_clean_under_normal_noise():
    """Same distribution on both sides, IQR 10 % (this machine's usual noise): over 400 simulated
    pairs of runs, a regression is claimed in at most 5 % of them (Holm bounds the family)."""
    rng = np.random.default_rng(12)
    assert settle.floor_rounds(STRATEGIES) == ROUNDS
    flagged = sum(any(c.regressed for c in judge(_samples(rng, 0.10), _samples(rng, 0.10))) for _ in range(400))
    assert flagged / 400 <= stats.ALPHA + 3 * math.sqrt(stats.ALPHA * (1 - stats.ALPHA) / 400)


def test_a_planted_30_percent_slowdown_is_caught_from_synthetic_samples():
    rng = np.random.default_rng(13)
    caught = [all(c.regressed for c in judge(_samples(rng, 0.05), _samples(rng, 0.05, 1.3))) for _ in range(100)]
    assert sum(caught) >= 95


# ---------------------------------------------------------------- a user's task: the same function and data


@pytest.mark.cluster
def test_runs_over_an_edited_items_file_are_refused_naming_the_file(runtime, tmp_path, capsys, keep_signal_handlers):
    """Two real [task] runs, orders.csv edited in between: not like for like, and compare says
    which part differs; forced, it compares them (three repeats each, enough for a verdict)."""
    (tmp_path / "ut_cmp_orders.py").write_text("def total(row):\n    return row['quantity'] * row['unit_price']\n")
    orders = tmp_path / "orders.csv"
    orders.write_text("order_id,quantity,unit_price\n" + "".join(f"{i},{i % 4 + 1},{i / 2}\n" for i in range(24)))
    workload = tmp_path / "w.toml"
    workload.write_text('name = "cmp-task"\n[task]\nfunction = "ut_cmp_orders:total"\n[items]\npath = "orders.csv"\n')

    def run() -> str:
        assert main(["run", str(workload), "--out", str(tmp_path / "results"), "--strategies", "static:8",
                     "--repeats", "3", "--dask-address", runtime.scheduler_address]) == 0
        return capsys.readouterr().out.rstrip("\n").splitlines()[-1]

    a = run()
    orders.write_text(orders.read_text().replace("\n3,4,1.5\n", "\n3,4,2.5\n"))
    b = run()
    env_a = json.loads((Path(a) / "env.json").read_text())
    assert env_a["workload_parts"]["items"]["path"] == "orders.csv"
    assert main(["compare", a, b]) == 2
    err = capsys.readouterr().err
    assert "not like for like" in err and "workload digest" in err and "the items file orders.csv differs" in err
    assert "function" not in err.split("workload digest", 1)[1].splitlines()[0]  # the function did not change
    assert main(["compare", a, b, "--force"]) in (0, 1)  # 1 only if B happened to be slower
    out = capsys.readouterr().out
    assert "the items file orders.csv differs" in out and "static:8" in out
    assert any(verdict in out for verdict in ("REGRESSION", "slower", "faster", "no significant change"))
