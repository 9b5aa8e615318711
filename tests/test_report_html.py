"""report.html in a real headless browser (Debian's chromium): the page loads from the file
system without errors and shows every image (naturalWidth > 0).

The page's own inline script writes what it saw onto <html> (data-images, data-images-ok,
data-errors) when it has loaded; chromium's --dump-dom prints the DOM after that.
Skipped only where chromium is absent and CI is not set: under CI it must run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from run_fixture import write_run

from harness.report.run_report import PLOT_FILES, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Headless start-up is ~1 s here; a loaded 2-core machine has taken several times that.
BROWSER_TIMEOUT_S = 60

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="chromium is not installed (apt-get install -y chromium; .ci/run installs it)",
)


def dump_dom(url: str, profile_dir) -> str:
    assert CHROMIUM, "CI is set but chromium is not installed"
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile_dir}",
         # lets the load event and its handlers finish before the DOM is dumped
         "--virtual-time-budget=5000", "--dump-dom", url],
        capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S, check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def page_check(dom: str) -> dict[str, int]:
    root = re.search(r"<html[^>]*>", dom).group(0)
    return {k: int(v) for k, v in re.findall(r'data-(images|images-ok|errors)="(\d+)"', root)}


def test_report_html_loads_and_shows_every_image(tmp_path):
    folder = write_run(tmp_path / "run")
    write_report(folder)
    dom = dump_dom((folder / "report.html").as_uri(), tmp_path / "profile")
    assert page_check(dom) == {"images": len(PLOT_FILES), "images-ok": len(PLOT_FILES), "errors": 0}
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
