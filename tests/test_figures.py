"""Figures that mean what they say (README, "Where the overhead goes", "Choosing a batch size"):
the per-task overhead split from tasks.csv, each strategy's own memory, the near-optimal band of
batch sizes, the sweep plot's legend; and tasks.csv as a real small run writes it.

The pure parts run on synthetic rows with known answers; one real run on the session's Prefect
server and LocalCluster checks what a run writes.
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest
from run_fixture import FLOW_LAG_S, TRUE_WALL_S, make_runs, make_tasks, write_run

from harness.report import advice

from harness.analysis import overhead, stats
from harness.report.plots import sweep_figure
from harness.measure.memory import RssSampler
from harness.measure.records import RUN_COLUMNS, TASKS_COLUMNS
from harness.report.run_report import read_report, render_markdown, write_report

# ---------------------------------------------------------------- the overhead split (pure)


@pytest.mark.parametrize(("fixed_s", "transfer_s"), [(0.020, 50e-6), (0.002, 5e-6), (0.040, 0.0)])
def test_fit_recovers_known_fixed_and_transfer_costs(fixed_s, transfer_s):
    """busy - compute = o + t·b with 20 % lognormal noise and 1 task in 13 twenty times too slow:
    the robust fit finds o and t to within a few per cent of the largest task's overhead."""
    tasks = make_tasks(fixed_s, transfer_s, sizes=(1, 5, 50, 500, 2000), per_size=60)
    cost = overhead.fit(tasks, "Prefect")
    assert cost.identified and cost.sizes == 5 and cost.tasks == len(tasks)
    scale = fixed_s + transfer_s * 2000
    assert abs(cost.fixed_s - fixed_s) < 0.08 * scale
    assert abs(cost.transfer_s - transfer_s) * 2000 < 0.08 * scale
    # each run's own fixed cost: the same o, from its tasks alone (t from the fit)
    for strategy, rows in tasks.groupby("strategy"):
        assert overhead.fixed_per_task(rows, cost) == pytest.approx(fixed_s, abs=0.1 * scale), strategy


def test_one_size_cannot_tell_fixed_from_transfer():
    tasks = make_tasks(0.002, 1e-6, sizes=(50,), runtime="Dask alone")
    cost = overhead.fit(tasks, "Dask alone")
    assert not cost.identified and math.isnan(cost.transfer_s) and cost.sizes == 1
    assert cost.fixed_s == pytest.approx(0.002 + 50e-6, rel=0.1)  # o and t x 50 together


def test_flow_lag_is_what_the_split_leaves_so_the_parts_add_up_to_the_mixed_overhead():
    runs = make_runs()
    lag = overhead.flow_lag_ms_per_task(runs)
    for r, lag_ms in zip(runs.itertuples(), lag):
        if r.strategy == "joblib_auto":  # no per-task timings: nothing to split
            assert math.isnan(lag_ms)
            continue
        runtime = "Dask alone" if r.strategy.startswith("raw_dask") else "Prefect"
        assert lag_ms == pytest.approx(FLOW_LAG_S[runtime] * 1000, abs=1e-9), r.strategy
        parts = r.fixed_ms_per_task + r.transfer_us_per_item / 1000 * r.items / r.tasks + lag_ms \
            + r.idle_s / r.tasks * 1000
        assert parts == pytest.approx(r.overhead_per_task_ms, rel=1e-9), r.strategy
    split = overhead.per_strategy(runs)
    assert split.loc["static:50", "flow_lag_ms_per_task"] == pytest.approx(3.0)


def test_a_strategy_whose_tasks_were_all_seen_late_gets_its_runtimes_fixed_cost():
    """per_item on fine work: every task already done when the flow looked, so none has a finish
    time; its fixed cost is the runtime's o, fitted over the tasks the flow waited for."""
    tasks = make_tasks(0.020, 5e-6, sizes=(5, 50, 500), per_size=40)
    cost = overhead.fit(tasks, "Prefect")
    late = make_tasks(0.020, 5e-6, sizes=(1,), per_size=40).assign(seen_late=True, finish_s=lambda t: t["finish_s"] + 1)
    assert overhead.fit(pd.concat([tasks, late]), "Prefect").fixed_s == pytest.approx(cost.fixed_s)
    assert overhead.fixed_per_task(late, cost) == cost.fixed_s
    # two tasks the flow waited for (the cold first one, say) are too few for a median of its own
    cold = late.assign(seen_late=[False, False] + [True] * (len(late) - 2))
    assert overhead.fixed_per_task(cold, cost) == cost.fixed_s


def test_replayed_queue_busy_and_tail_idle():
    """Two threads, three tasks submitted at 0: A (1 s), B (3 s, the straggler), C (1 s, waits for
    A's thread). Busy 5 s of 2 x 3 s: 1 s idle, all of it after the last start (C at 1 s)."""
    submit = np.zeros(3)
    finish = np.array([1.0, 3.0, 2.0])
    starts = overhead.replayed_starts(submit, finish, threads=2)
    assert list(starts) == [0.0, 0.0, 1.0]
    tasks = pd.DataFrame({"task": [0, 1, 2], "submit_s": submit, "finish_s": finish, "start_s": starts})
    assert overhead.idle(tasks, wall_s=3.0, threads=2) == pytest.approx((1.0, 1.0))
    # a queue deeper than the threads: each task waits for the completion that frees its thread
    finish = np.arange(1.0, 7.0)  # six 1 s tasks on one thread, all submitted at 0
    assert list(overhead.replayed_starts(np.zeros(6), finish, threads=1)) == [0, 1, 2, 3, 4, 5]


def test_a_start_replayed_from_a_completion_seen_late_is_unknown_too():
    """One thread, three tasks submitted at 0: B waits for A's completion, C for B's. A was seen
    late (done before the flow looked), so B's start is unknown; C's start is B's completion,
    seen in time, so C is timed. The first task started at its submit: its start is known."""
    tasks = pd.DataFrame({"task": [0, 1, 2], "submit_s": [0.0, 0.0, 0.0], "finish_s": [1.0, 2.0, 3.0],
                          "seen_late": [True, False, False]})
    out = overhead.with_starts(tasks, threads=1)
    assert list(out["start_s"]) == [0.0, 1.0, 2.0]
    assert list(out["seen_late"]) == [True, True, False]
    # a task submitted after the late completion started at its submit: known
    later = tasks.assign(submit_s=[0.0, 1.5, 2.5])
    assert list(overhead.with_starts(later, threads=1)["seen_late"]) == [True, False, False]


def test_thinned_keeps_an_even_spread_within_the_bound():
    tasks = pd.DataFrame({"task": range(10_000)})
    kept = overhead.thinned(tasks, 2_000)
    assert len(kept) == 2_000 and kept["task"].iloc[0] == 0 and kept["task"].iloc[-1] == 9_999
    assert overhead.thinned(tasks.head(10), 2_000).equals(tasks.head(10))


# ---------------------------------------------------------------- memory


def test_rss_sampler_measures_the_runs_own_peak_above_its_start():
    hold = 80 * 2**20
    with RssSampler() as rss:
        block = bytearray(hold)  # zero-filled by the allocator: touch it so the pages are resident
        block[::4096] = b"x" * len(block[::4096])
        rss._sample()
        del block
    assert rss.own_growth_mb >= 0.9 * hold / 2**20
    assert rss.peak_mb >= rss.own_peak_mb  # the process's high-water mark includes the start


# ---------------------------------------------------------------- what the report says to do


def _report_text(tmp_path, walls):
    folder = write_run(tmp_path / "run", runs=make_runs(walls))
    return render_markdown(read_report(folder))


def test_near_optimal_band_and_no_edge_warning(tmp_path):
    walls = {**TRUE_WALL_S, "static:500": 4.1}  # 2.5 % above static:50, the best
    table = stats.summarize(make_runs(walls))
    found = advice.batch_advice(table)
    assert found.best == 50 and found.band == (50, 500) and found.edge == ""
    md = _report_text(tmp_path, walls)
    section = md.split("## Choosing a batch size")[1].split("\n## ")[0]
    assert "within 5% of the best (static:50, 4.000 s): 50 (4.000 s), 500 (4.100 s)" in section
    assert "Warning" not in section
    assert "Through Prefect (tasks of a flow on the Dask task runner): per_item, static:5, static:50, static:500, adaptive." in section
    assert "Without Prefect (Dask alone, the references): raw_dask:50, joblib_auto." in section


@pytest.mark.parametrize(("walls", "edge", "size", "way"), [
    ({"per_item": 50.0, "static:5": 9.0, "static:50": 5.0, "static:500": 3.0, "adaptive": 3.1}, "largest", 500, "larger"),
    ({"per_item": 50.0, "static:5": 3.0, "static:50": 5.0, "static:500": 9.0, "adaptive": 3.1}, "smallest", 5, "smaller"),
])
def test_a_best_size_at_the_edge_of_the_sweep_is_warned_about(tmp_path, walls, edge, size, way):
    assert advice.batch_advice(stats.summarize(make_runs(walls))).edge == edge
    md = _report_text(tmp_path, walls)
    assert (f"Warning: the best static size, {size}, is the {edge} one tried (5, 50, 500): a {way} size may be "
            f"faster still. Add {way} sizes to [run] sweep") in md


def test_overhead_section_and_memory_column_come_from_the_new_columns(tmp_path):
    runs = make_runs()
    folder = write_run(tmp_path / "run", runs=runs)
    report = read_report(folder)
    rows = {r[0]: dict(zip(report.overhead.table.columns, r)) for r in report.overhead.table.rows}
    assert rows["static:50"]["fixed ms/task"] == "20.0" and rows["static:50"]["transfer µs/item"] == "5.00"
    assert rows["raw_dask:50"]["Prefect"] == "no" and rows["raw_dask:50"]["fixed ms/task"] == "2.0"
    assert rows["joblib_auto"]["fixed ms/task"] == "—"  # no per-task timings
    mine = runs[runs["strategy"] == "static:500"]
    idle_ms = (mine["idle_s"] / mine["tasks"] * 1000).median()
    assert rows["static:500"]["idle ms/task"] == f"{idle_ms:,.1f}"
    memory = dict(zip(report.strategies.frame()["strategy"], report.strategies.frame()["memory MB"]))
    for strategy in TRUE_WALL_S:
        assert memory[strategy] == f"{runs.loc[runs['strategy'] == strategy, 'peak_rss_above_start_mb'].max():,.0f}"
    assert "peak RSS MB" not in render_markdown(report)


def test_sweep_plot_legend_names_adaptive_and_keeps_per_item_off_the_scale():
    walls = {**TRUE_WALL_S, "per_item": 3269.0}  # large.toml's per_item against ~4 s batches
    table = stats.summarize(make_runs(walls))
    fig = sweep_figure(table, band=(50,))
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "adaptive (median batch 64)" in legend
    assert any(t.startswith("per_item (3,269 s, off the scale)") for t in legend)
    assert "static sizes within 5 % of the best" in legend
    assert ax.get_ylim()[1] < 3269.0 / 10  # per_item does not squash the others to the bottom
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    # within a factor 10 of the rest, per_item is a labelled reference line
    near = sweep_figure(stats.summarize(make_runs()), band=(50,))
    assert "per_item (120 s)" in [t.get_text() for t in near.axes[0].get_legend().get_texts()]


# ---------------------------------------------------------------- a real run writes tasks.csv


@pytest.fixture(scope="module")
def real_run(runtime, make_spec, tmp_path_factory):
    """A small real run: per_item, two static sizes, adaptive and two raw_dask sizes, 2 repeats.
    Items of 20 ms make tasks the flow waits for: with 1 ms items nearly every task of a size
    finished while the flow was still submitting, was seen late, and a size could drop out of
    the fit."""
    from harness.measure.run import run_workload
    from harness.workload.spec import with_overrides

    spec = with_overrides(make_spec(name="figures", count=60, mean_ms=20.0, payload_bytes=64, repeats=2,
                                    strategies=("per_item", "static:5", "static:20", "adaptive", "raw_dask:5",
                                                "raw_dask:20")), address=runtime.scheduler_address)
    return run_workload(spec, tmp_path_factory.mktemp("figures") / "results")


@pytest.mark.cluster
def test_a_real_run_writes_tasks_csv_and_the_split_columns(real_run):
    runs = pd.read_csv(real_run / "runs.csv")
    assert list(runs.columns) == list(RUN_COLUMNS)
    tasks = pd.read_csv(real_run / "tasks.csv")
    assert list(tasks.columns) == list(TASKS_COLUMNS)
    for r in runs.itertuples():
        mine = tasks[(tasks["strategy"] == r.strategy) & (tasks["repeat"] == r.repeat)]
        assert len(mine) == r.tasks, r.strategy  # every task (60 items: far below the bound)
        if not r.tasks:  # adaptive may run a workload this small inline, in the flow process
            continue
        assert mine["items"].sum() == r.items - (0 if r.strategy != "adaptive" else _inline_items(real_run, r.repeat))
        assert (mine["submit_s"] <= mine["start_s"]).all() and (mine["start_s"] <= mine["finish_s"]).all()
        assert (mine["finish_s"] <= r.wall_s + 1e-6).all()
        assert set(mine["runtime"]) == {"Dask alone" if r.strategy.startswith("raw_dask") else "Prefect"}
        assert math.isfinite(r.fixed_ms_per_task) and math.isfinite(r.transfer_us_per_item)  # 3 sizes / 2 sizes
        assert math.isfinite(r.idle_s) and 0 <= r.tail_idle_s <= max(r.idle_s, 0) + 1e-6
        assert r.peak_rss_above_start_mb >= 0 and r.peak_rss_mb >= r.peak_rss_above_start_mb
    # The runtime's t is one number for all its rows; each row's o is its own.
    for _, rows in runs.groupby(runs["strategy"].str.startswith("raw_dask")):
        assert rows["transfer_us_per_item"].nunique() == 1
    report = write_report(real_run).read_text()
    assert "## Where the overhead goes" in report and "fitted over" in report


def _inline_items(folder, repeat: int) -> int:
    """Items adaptive ran inline in the flow process in `repeat` (not tasks: not in tasks.csv)."""
    trace = pd.read_csv(folder / "trace.csv")
    mine = trace[(trace["strategy"] == "adaptive") & (trace["repeat"] == repeat) & (trace["mode"] == "inline")]
    return int(mine["items"].sum())


# ---------------------------------------------------------------- history across commits


@pytest.mark.cluster
def test_history_over_runs_of_two_commits(real_run, tmp_path, capsys, keep_signal_handlers):
    """`harness history RESULTS_DIR` over the real run (this commit) and the same run as an older
    commit had it, plus a fixture workload whose third run is 40 % slower: one row per run in
    start order, the real run's ratios those of its report, the planted step marked as compare
    would mark it, and index.html with one trend plot per workload."""
    import json
    import shutil

    from harness.cli import main
    from harness.report.history import frame, history
    from run_fixture import make_env, scaled

    results = tmp_path / "results"
    real = shutil.copytree(real_run, results / "figures" / real_run.name)
    older = shutil.copytree(real_run, results / "figures" / "19990101-000000-0000")
    env = json.loads((older / "env.json").read_text())
    env.update(git_commit="0" * 40, started_at="1999-01-01T00:00:00+0000")
    (older / "env.json").write_text(json.dumps(env))
    (results / "figures" / "latest").symlink_to(real.name)  # listed once, under its own name
    for i, (commit, factor) in enumerate([("a" * 40, 1.0), ("b" * 40, 1.0), ("c" * 40, 1.4)]):
        env = make_env() | {"git_commit": commit, "started_at": f"2026-11-2{7 + i}T02:00:00+0000"}
        write_run(results / "fixture" / f"run{i}", runs=scaled(make_runs(), factor), env=env)

    h = history(results)
    table = frame(h)
    assert list(table["workload"]) == ["figures", "figures", "fixture", "fixture", "fixture"]
    assert list(table["commit"])[:2] == ["0" * 10, json.loads((real / "env.json").read_text())["git_commit"][:10] or "?"]
    assert table["date"].iloc[0] == "1999-01-01 00:00"
    report = read_report(real)
    by_role = {c.against: c for c in report.references.rows}
    for column, role in (("adaptive / oracle", "best static"), ("adaptive / per_item", "per_item")):
        assert table[column].iloc[1] == by_role[role].estimate  # the report's figure, from harness.analysis.stats
    steps = list(table["step changes (compare with the previous run)"])
    assert steps[2] == "—" and steps[3] == "none"
    assert "static:50 +40.0% REGRESSION" in steps[4] and "adaptive +40.0% REGRESSION" in steps[4]
    assert steps[1]  # the real pair: compare's verdicts, or why compare would not judge them

    assert main(["history", str(results)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == str(results / "index.html") and any("static:50 +40.0% REGRESSION" in line for line in out)
    page = (results / "index.html").read_text()
    for workload in ("figures", "fixture"):
        assert f'src="history_{workload}.png"' in page
        assert (results / f"history_{workload}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_note_names_the_repeats_it_was_made_in_counting_from_1():
    from harness.measure.run import which_repeats

    assert which_repeats("3 batches ran inline", [1], of=3) == "3 batches ran inline (repeat 2)"
    assert which_repeats("retried", [0, 2, 2], of=3) == "retried (repeats 1, 3)"
    assert which_repeats("joblib reports batch counts", [0, 1, 2], of=3) == "joblib reports batch counts"


def test_history_skips_a_damaged_run_folder_naming_it(tmp_path, capsys, keep_signal_handlers):
    """One damaged run does not hide the others: left out with a one-line note naming it and
    why; a results folder with nothing readable is refused."""
    from harness.cli import main

    write_run(tmp_path / "results" / "fixture" / "good")
    bad = tmp_path / "results" / "fixture" / "bad"
    bad.mkdir()
    (bad / "runs.csv").write_text("")
    (bad / "env.json").write_text("{}")
    assert main(["history", str(tmp_path / "results")]) == 0
    out, err = capsys.readouterr()
    note = [line for line in err.splitlines() if str(bad) in line]
    assert len(note) == 1 and note[0].startswith(f"[harness] skipped {bad}: runs.csv: found an empty file"), err
    assert "good" in out and " bad " not in out
    assert (tmp_path / "results" / "index.html").is_file()
    shutil.rmtree(tmp_path / "results" / "fixture" / "good")
    (tmp_path / "results" / "index.html").unlink()
    assert main(["history", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert "found no readable run folders (1 damaged" in err and str(bad) in err
    assert not (tmp_path / "results" / "index.html").exists()
    assert main(["history", str(tmp_path / "nowhere")]) == 2
    assert "no such results folder" in capsys.readouterr().err


def test_a_lone_remainder_batch_does_not_make_a_slope():
    """static:N's last, smaller batch is one task: a line through it and the full batches is
    noise, so one well-populated size stays unidentified, as a single size does."""
    full = make_tasks(0.025, 0.0, sizes=(4096,), per_size=48, runtime="Dask alone")
    # one remainder per repeat: five tasks of 3,392 items, each a little quicker than the rest
    remainder = full.iloc[:5].assign(items=3392, finish_s=full["finish_s"].iloc[:5] - 0.09)
    cost = overhead.fit(pd.concat([full, remainder], ignore_index=True), "Dask alone")
    assert not cost.identified and cost.sizes == 1
    assert cost.fixed_s == pytest.approx(0.025, rel=0.25)
