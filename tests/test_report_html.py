"""report.html in a real headless browser (Debian's chromium): the page loads from the file
system without errors, shows every image (naturalWidth > 0) and fits a 1,300 px window.

The page's own inline script writes what it saw onto <html> (data-images, data-images-ok,
data-errors) when it has loaded; chromium's --dump-dom prints the DOM after that.
Skipped only where chromium is absent and CI is not set: under CI it must run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from run_fixture import write_run

from harness.report.run_report import PLOT_FILES, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Headless start-up is ~1 s here; a loaded 2-core machine has taken several times that.
BROWSER_TIMEOUT_S = 60
# A laptop's browser window, not maximised.
WINDOW = (1300, 900)
# The run with the most strategies and the longest figures among the examples.
WIDEST_EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "large"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="chromium is not installed (apt-get install -y chromium; .ci/run installs it)",
)


def dump_dom(url: str, profile_dir) -> str:
    assert CHROMIUM, "CI is set but chromium is not installed"
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile_dir}",
         f"--window-size={WINDOW[0]},{WINDOW[1]}",
         # lets the load event and its handlers finish before the DOM is dumped
         "--virtual-time-budget=5000", "--dump-dom", url],
        capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S, check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def page_check(dom: str) -> dict[str, int]:
    root = re.search(r"<html[^>]*>", dom).group(0)
    return {k: int(v) for k, v in re.findall(r'data-(images|images-ok|errors|overflow)="(\d+)"', root)}


def test_report_html_loads_and_shows_every_image(tmp_path):
    folder = write_run(tmp_path / "run")
    write_report(folder)
    dom = dump_dom((folder / "report.html").as_uri(), tmp_path / "profile")
    assert page_check(dom) == {"images": len(PLOT_FILES), "images-ok": len(PLOT_FILES), "errors": 0, "overflow": 0}
    assert "adaptive was" in dom and 'class="missing"' not in dom


def test_the_check_sees_a_missing_image(tmp_path):
    """The browser check can fail: delete one PNG and the page reports it."""
    folder = write_run(tmp_path / "run")
    write_report(folder)
    (folder / PLOT_FILES["sweep"]).unlink()
    dom = dump_dom((folder / "report.html").as_uri(), tmp_path / "profile")
    check = page_check(dom)
    assert check["images"] == len(PLOT_FILES) and check["images-ok"] == len(PLOT_FILES) - 1
    assert check["errors"] >= 1
    assert f'<p class="missing">image not found: {PLOT_FILES["sweep"]}</p>' in dom


def test_the_widest_example_fits_the_window(tmp_path):
    """large.toml's run (15 columns in the main table, four-figure IQRs) re-rendered by today's
    code: the page is no wider than the window (a table too wide would scroll in its own box)."""
    copy = tmp_path / "large"
    shutil.copytree(WIDEST_EXAMPLE, copy)
    write_report(copy)
    dom = dump_dom((copy / "report.html").as_uri(), tmp_path / "profile")
    check = page_check(dom)
    assert check["errors"] == 0 and check["overflow"] == 0, check
