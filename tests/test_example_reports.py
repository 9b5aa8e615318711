"""The example run folders committed under docs/examples/ (scripts/regenerate-examples.sh)
re-render to exactly the reports committed beside them: a change to the report's format
without regenerating (or re-rendering) the examples fails here."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
FOLDERS = sorted(p for p in EXAMPLES.glob("*") if (p / "runs.csv").is_file()) if EXAMPLES.is_dir() else []
RENDERED = ("report.md", "report.html")


def test_the_examples_are_there():
    """The README links a run of large.toml and one pattern workload."""
    names = {p.name for p in FOLDERS}
    assert "large" in names and len(names) >= 2, names
    for folder in FOLDERS:
        for needed in ("runs.csv", "trace.csv", "env.json", "results.json", *RENDERED):
            assert (folder / needed).is_file(), f"{folder.name}: no {needed}"


@pytest.mark.parametrize("folder", FOLDERS, ids=[p.name for p in FOLDERS])
def test_an_example_re_renders_to_its_committed_report(folder, tmp_path, capsys):
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    assert main(["report", str(copy)]) == 0, capsys.readouterr().err
    for name in RENDERED:
        assert (copy / name).read_text() == (folder / name).read_text(), (
            f"{folder.name}/{name} differs from what today's code renders: run "
            f"`.venv/bin/harness report docs/examples/{folder.name}` (presentation only) or "
            f"scripts/regenerate-examples.sh, and commit the result")
