"""The cross-run table (`python -m harness table`) from made-up run folders with known ratios."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness.report.bench_table import COLUMNS, render, run_line, table
from harness.cli import main
from harness.errors import SpecError

WALLS = {  # strategy -> wall per repeat (seconds)
    "adaptive": [1.00, 1.02, 0.98, 1.01, 0.99],
    "static:10": [2.00, 2.04, 1.96, 2.02, 1.98],
    "static:100": [0.90, 0.91, 0.89, 0.905, 0.895],  # the oracle
    "per_item": [40.0, 40.5, 39.5, 40.2, 39.8],
    "raw_dask:100": [0.80, 0.81, 0.79, 0.805, 0.795],
    "raw_dask:10": [1.60, 1.61, 1.59, 1.605, 1.595],
    "joblib_auto": [2.50, 2.52, 2.48, 2.51, 2.49],
}


def make_run(folder: Path, name: str = "bench-x", repeats: int = 5) -> Path:
    rows = []
    for strategy, all_walls in WALLS.items():
        walls = all_walls[:repeats]
        for repeat, wall in enumerate(walls):
            rows.append({"workload": name, "strategy": strategy, "repeat": repeat, "wall_s": wall, "items": 1000,
                         "items_ok": 1000, "items_failed": 0, "tasks": 10, "retries": 0, "batch_size_median": 100,
                         "ideal_s": 0.5, "peak_rss_mb": 200.0, "items_total": 1000, "sampled": False,
                         "projected_wall_s": wall, "overhead_per_task_ms": 5.0})
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "runs.csv", index=False)
    env = {"workload": {"name": name, "items": 1000, "cost": {"kind": "cpu", "distribution": "lognormal", "mean_ms": 0.5}}}
    (folder / "env.json").write_text(json.dumps(env))
    return folder


def test_a_line_carries_the_known_ratios(tmp_path):
    line = run_line(make_run(tmp_path / "a"))
    assert line["workload"] == "bench-x"
    assert line["work"] == "1,000 items, cpu lognormal 0.5 ms"
    assert line["best static N"] == "100"
    assert line["adaptive / best static"].startswith(f"{1.00 / 0.90:.2f}×")
    assert line["adaptive vs per_item"].startswith("40×") and line["adaptive vs per_item"].endswith("faster")
    assert line["adaptive / raw_dask (best N)"].startswith(f"{1.00 / 0.80:.2f}×")
    assert line["adaptive / raw_dask (best N)"].endswith("(100)")
    assert line["adaptive / joblib_auto"].startswith(f"{1.00 / 2.50:.2f}×")


def test_three_repeats_give_estimates_without_intervals(tmp_path):
    line = run_line(make_run(tmp_path / "a", repeats=3))
    assert line["adaptive / best static"] == f"{1.00 / 0.90:.2f}× (too few repeats, need ≥ 4)"
    assert line["adaptive vs per_item"] == "40× faster (too few repeats, need ≥ 4)"


def test_table_json_gives_each_runs_results_document(tmp_path, capsys):
    from harness.measure import results_file as results

    a, b = make_run(tmp_path / "a", "one"), make_run(tmp_path / "b", "two")
    assert main(["table", str(a), str(b), "--json"]) == 0
    documents = json.loads(capsys.readouterr().out)
    assert [d["workload"]["name"] for d in documents] == ["one", "two"]
    assert [d["run_dir"] for d in documents] == [str(a), str(b)]
    for d in documents:
        d.pop("run_dir")
        d["environment"] |= {"cpu_count": 2, "packages": {}}  # these hand-made env.json files leave them out
        results.validate(d)
    ratio = {r["role"]: r["ratio"] for r in documents[0]["references"]}["best static"]
    assert ratio["estimate"] == pytest.approx(1.00 / 0.90) and ratio["low"] > 1


def test_the_table_has_a_line_per_run_and_a_legend(tmp_path):
    frame = table([make_run(tmp_path / "a", "one"), make_run(tmp_path / "b", "two")])
    assert list(frame.columns) == list(COLUMNS)
    assert list(frame["workload"]) == ["one", "two"]
    text = render(frame)
    assert text.count("\n| one") == 1 and "distribution-free" in text


def test_missing_references_show_a_dash(tmp_path):
    folder = make_run(tmp_path / "a")
    runs = pd.read_csv(folder / "runs.csv")
    runs[~runs["strategy"].isin(["per_item", "joblib_auto", "raw_dask:10", "raw_dask:100"])].to_csv(
        folder / "runs.csv", index=False)
    line = run_line(folder)
    assert line["adaptive vs per_item"] == line["adaptive / joblib_auto"] == line["adaptive / raw_dask (best N)"] == "—"


def test_not_a_run_folder_is_bad_input(tmp_path, capsys):
    with pytest.raises(SpecError, match="not a run folder"):
        run_line(tmp_path)
    assert main(["table", str(tmp_path / "missing")]) == 2
    assert "not a run folder" in capsys.readouterr().err
