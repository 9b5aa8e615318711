"""report.md / report.html / PNGs rendered from a fixed run folder (tests/run_fixture.py):
every section present, the numbers those of the CSVs, the images real PNGs."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import matplotlib.image
import pandas as pd
import pytest
from run_fixture import (
    ITEMS,
    TRUE_WALL_S,
    make_env,
    make_runs,
    make_trace,
    median_wall,
    write_run,
)

from harness.cli import main
from harness.report.run_report import PLOT_FILES, read_report, render_html, render_markdown, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SECTIONS = ("## adaptive against the references", "## Notes", "## Plots", "## Environment")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Rendered once for the module (matplotlib takes ~1 s per plot here); tests only read it."""
    folder = write_run(tmp_path_factory.mktemp("report") / "run")
    write_report(folder)
    return folder


def table_rows(markdown: str) -> dict[str, list[str]]:
    """The first markdown table's rows by strategy: cells stripped."""
    rows = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] in TRUE_WALL_S and cells[0] not in rows:
            rows[cells[0]] = cells
    return rows


def first_html_table(page: str) -> list[list[str]]:
    """The body rows of the page's first <table>, cell texts (stdlib parser: no lxml needed)."""

    class Cells(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.rows: list[list[str]] = []
            self.tables = 0
            self.cell: list[str] | None = None

        def handle_starttag(self, tag, attrs):
            if tag == "table":
                self.tables += 1
            elif self.tables == 1 and tag == "tr":
                self.rows.append([])
            elif self.tables == 1 and tag == "td":
                self.cell = []

        def handle_endtag(self, tag):
            if tag == "td" and self.cell is not None:
                self.rows[-1].append("".join(self.cell).strip())
                self.cell = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell.append(data)

    parser = Cells()
    parser.feed(page)
    return [row for row in parser.rows if row]


def test_markdown_has_headline_table_and_every_section(rendered):
    md = (rendered / "report.md").read_text()
    assert md.startswith(f"# fixture: {ITEMS:,} items on 2 worker threads")
    assert re.search(r"\*\*adaptive was 1\.05× \[[\d.]+, [\d.]+\] the wall time of static:50, the best static "
                     r"and 29× \[\d+, \d+\] faster than per_item\.\*\*", md)
    for section in SECTIONS:
        assert section in md
    assert "Dynamic vs static twin" not in md  # no variant column in this run
    assert "## Warnings" not in md  # 2 % spread is stable
    assert "- joblib_auto: joblib reports batch counts, not sizes" in md  # env.json strategy_notes
    assert "drift phases: from 50% of items 0.6 ms" in md
    assert "measured on an evenly spread sample" in md and "per_item (500 items)" in md
    assert "\\* measured on" in md  # escaped: a paragraph starting with * is not a list item


def test_table_numbers_are_those_of_the_csv(rendered):
    runs = pd.read_csv(rendered / "runs.csv")
    rows = table_rows((rendered / "report.md").read_text())
    assert list(rows) == list(TRUE_WALL_S)
    for strategy, cells in rows.items():
        mine = runs[runs["strategy"] == strategy]
        wall = median_wall(runs, strategy)
        assert cells[1] == str(len(mine))  # repeats
        assert cells[2].rstrip("*") == f"{wall:,.3f}"
        assert cells[2].endswith("*") == bool(mine["sampled"].any())
        q1, q3 = mine["projected_wall_s"].quantile([0.25, 0.75])
        assert cells[3] == f"{q1:,.3f}–{q3:,.3f}"
        assert cells[4] == f"{ITEMS / wall:,.0f}"
        assert cells[5] == f"{median_wall(runs, 'per_item') / wall:,.2f}"
        assert cells[6] == f"{wall / median_wall(runs, 'static:50'):,.2f}"
        assert cells[9] == f"{mine['tasks'].median():,.0f}"
        assert cells[11] == f"{mine['overhead_per_task_ms'].median():,.1f}"


def test_plots_are_valid_pngs_and_linked_from_both_reports(rendered):
    md = (rendered / "report.md").read_text()
    page = (rendered / "report.html").read_text()
    for name in PLOT_FILES.values():
        path = rendered / name
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        height, width, _ = matplotlib.image.imread(path).shape
        assert width > 300 and height > 150
        assert f"]({name})" in md and f'src="{name}"' in page


def test_html_carries_the_same_headline_and_table(rendered):
    page = (rendered / "report.html").read_text()
    md = (rendered / "report.md").read_text()
    headline = re.search(r"\*\*(adaptive was .*?)\*\*", md).group(1)
    assert f'<p class="headline">{headline}</p>' in page
    html_rows = first_html_table(page)
    md_rows = table_rows(md)
    assert [row[0] for row in html_rows] == list(TRUE_WALL_S)
    assert html_rows == [md_rows[s] for s in TRUE_WALL_S]  # the same cells, string for string
    assert "http://" not in page.replace("http://127.0.0.1", "") and "https://" not in page  # nothing fetched


def test_dynamic_runs_get_a_twin_section_and_the_main_table_uses_dynamic_rows(tmp_path):
    dynamic = make_runs(variant="dynamic")
    twin = make_runs({s: w / 1.25 for s, w in TRUE_WALL_S.items()}, variant="twin")
    folder = write_run(tmp_path / "run", runs=pd.concat([dynamic, twin], ignore_index=True))
    md = write_report(folder).read_text()
    assert "## Dynamic vs static twin" in md
    twin_lines = [line for line in md.split("## Dynamic vs static twin")[1].splitlines() if line.startswith("| static twin")]
    assert len(twin_lines) == len(TRUE_WALL_S)
    assert all("1.250" in line and "significant" in line for line in twin_lines)
    rows = table_rows(md)
    assert rows["adaptive"][2] == f"{TRUE_WALL_S['adaptive']:,.3f}"  # dynamic rows only
    assert "Dynamic vs static twin" in (folder / "report.html").read_text()


def test_markdown_and_html_show_the_same_sections(tmp_path):
    """One layout for both formats: every heading, in order, and every list item in each."""
    noisy = (0.6, -0.2, 0.0, 0.1, 0.2)
    dynamic = make_runs(spread=noisy, variant="dynamic")
    twin = make_runs({s: w / 1.25 for s, w in TRUE_WALL_S.items()}, variant="twin")
    folder = write_run(tmp_path / "run", runs=pd.concat([dynamic, twin], ignore_index=True))
    report = read_report(folder)
    md, page = render_markdown(report), render_html(report)
    md_headings = re.findall(r"^## (.+)$", md, re.MULTILINE)
    assert md_headings == re.findall(r"<h2>(.+?)</h2>", page)
    assert md_headings == ["adaptive against the references", "Dynamic vs static twin", "Choosing a batch size",
                           "Where the overhead goes", "Warnings", "Notes", "Environment"]
    md_items = re.findall(r"^- (.+)$", md, re.MULTILINE)
    assert md_items == [html.unescape(i) for i in re.findall(r"<li[^>]*>(.+?)</li>", page)]
    assert len(md_items) == len(report.warnings) + len(report.notes) + len(report.environment)


def test_html_escapes_what_the_run_folder_says_and_markdown_keeps_it(tmp_path):
    env = make_env()
    env["strategy_notes"] = {"joblib_auto": ["<script>alert(1)</script> & more"]}
    folder = write_run(tmp_path / "run", runs=make_runs(workload="a<b>"), env=env)
    report = read_report(folder)
    md, page = render_markdown(report), render_html(report)
    assert md.startswith("# a<b>: ") and "- joblib_auto: <script>alert(1)</script> & more" in md
    assert "<title>a&lt;b&gt;: " in page and "<h1>a&lt;b&gt;: " in page
    assert "<li>joblib_auto: &lt;script&gt;alert(1)&lt;/script&gt; &amp; more</li>" in page
    assert "alert(1)</script>" not in page


def test_a_run_without_adaptive_or_sweep_still_renders(tmp_path):
    walls = {"per_item": 10.0, "static:20": 2.0}
    folder = write_run(tmp_path / "run", runs=make_runs(walls), trace=make_trace().iloc[0:0])
    md = write_report(folder).read_text()
    assert "adaptive was" not in md and "## adaptive against" not in md
    assert "Best static batch size in hindsight (the oracle): static:20" in md
    assert (folder / PLOT_FILES["walls"]).is_file() and not (folder / PLOT_FILES["trace"]).exists()


def test_noisy_runs_carry_warnings(tmp_path):
    folder = write_run(tmp_path / "run", runs=make_runs(spread=(0.6, -0.2, 0.0, 0.1, 0.2)))
    md = write_report(folder).read_text()
    warnings = md.split("## Warnings")[1].split("##")[0]
    assert "adaptive: unstable" in warnings and "first repeat (repeat 1) took" in warnings


def test_report_command_renders_both_files_from_the_csvs(tmp_path, capsys):
    folder = write_run(tmp_path / "run")
    assert main(["report", str(folder)]) == 0
    assert (folder / "report.html").is_file() and (folder / PLOT_FILES["sweep"]).is_file()
    assert "adaptive was" in capsys.readouterr().out


def test_an_auto_run_says_how_its_repeats_settled_and_a_busy_machine_is_warned_of(tmp_path):
    env = make_env() | {"repeats_requested": "auto", "settling": {
        "budget_s": 600.0, "rounds": 5, "rounds_s": 300.0, "round_s": [60.0] * 5,
        "stopped_because": "every ratio settled", "target_half_width": 0.05, "floor": 5}}
    busy = make_runs().assign(load_before=9.0, load_after=8.0, cpu_idle_pct=1.0, cpu_steal_pct=0.0)
    markdown = render_markdown(read_report(write_run(tmp_path / "auto", runs=busy, env=env)))
    section = markdown.split("## How the repeats settled")[1].split("\n## ")[0]
    assert "5 rounds in 300 s of a 600 s budget; stopped: every ratio settled" in section
    # adaptive / static:50 over 5 repeats of ±2 % spread: its interval is within ±5 %
    assert "adaptive / static:50 (best static): settled" in section
    assert "adaptive / per_item (per_item):" in section
    assert "load average above 1.5× the 2 CPUs" in markdown.split("## Warnings")[1]


def test_a_three_repeat_run_claims_no_interval(tmp_path):
    runs = make_runs(spread=(-0.01, 0.0, 0.01))
    markdown = render_markdown(read_report(write_run(tmp_path / "three", runs=runs)))
    assert "too few repeats for a verdict (need ≥ 4)" in markdown
    assert "How the repeats settled" not in markdown


def test_what_dask_saw_splits_each_tasks_overhead_and_the_dask_reports_are_linked(tmp_path):
    """Every task spends 10 ms in the task beyond its items and 2 ms moving data: the split shows
    those, and the rest of the overhead as idle threads. Performance reports env.json lists are
    linked from both formats when their file is in the folder."""
    runs = make_runs()
    in_task_s, moving_s = 0.010, 0.002
    runs["dask_tasks"] = runs["tasks"]
    runs["dask_compute_s"] = runs["compute_s"] + in_task_s * runs["tasks"]
    runs["dask_transfer_s"] = runs["dask_deserialize_s"] = moving_s / 2 * runs["tasks"]
    env = make_env()
    env["dask_reports"] = [
        {"strategy": "static:50", "variant": "dynamic", "file": "dask-report-static-50.html", "repeat": 0},
        {"strategy": "adaptive", "variant": "dynamic", "file": "dask-report-adaptive.html", "repeat": 0},
    ]
    folder = write_run(tmp_path / "run", runs=runs, env=env)
    (folder / "dask-report-static-50.html").write_text("<html></html>")  # adaptive's is missing
    md = write_report(folder).read_text()

    section = md.split("## What Dask saw")[1].split("\n## ")[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] in TRUE_WALL_S:
            rows[cells[0]] = cells
    assert set(rows) == set(TRUE_WALL_S)
    for strategy, (_, tasks, dask_tasks, in_task, moving, idle, overhead, _busy) in rows.items():
        assert tasks == dask_tasks
        assert float(in_task) == pytest.approx(in_task_s * 1000, abs=0.05)
        assert float(moving) == pytest.approx(moving_s * 1000, abs=0.005)
        number = lambda cell: float(cell.replace(",", ""))  # noqa: E731
        assert number(idle) == pytest.approx(number(overhead) - (in_task_s + moving_s) * 1000, abs=0.15), strategy

    assert "- [static:50](dask-report-static-50.html)" in md and "dask-report-adaptive.html" not in md
    page = (folder / "report.html").read_text()
    assert '<li><a href="dask-report-static-50.html">static:50</a></li>' in page
    assert "<h2>What Dask saw</h2>" in page and "dask-report-adaptive.html" not in page


def test_a_run_without_dask_columns_has_no_dask_section(rendered):
    md = (rendered / "report.md").read_text()
    assert "What Dask saw" not in md and "Dask performance reports" not in md
