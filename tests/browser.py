"""A headless Chromium driven over the DevTools protocol, for a page a single-page app renders
from its API after load (chromium's --dump-dom cannot wait for that or click): open a URL, wait
until text shows, click on text as a user does.

The protocol's JSON messages go over the `websockets` package Prefect already depends on.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Headless start-up is ~1 s here; a loaded 2-core machine has taken several times that.
BROWSER_START_TIMEOUT_S = 60
# A page of the Prefect UI shows its API's data in ~1-3 s here; a loaded machine gets 20 times that.
PAGE_TIMEOUT_S = 60
POLL_S = 0.25
# How long a click may take to show its result before the user clicks again (the app answers
# a click it heard within a second even on a loaded machine).
CLICK_SETTLE_S = 5.0
# Tall enough that a list of a few dozen rows is on screen: the Prefect UI renders rows only
# when they are visible.
WINDOW = (1600, 3000)

# The innermost visible element that reads `text` (and its link, if it is in one): its
# position once scrolled into view, whether it is what the mouse would hit there, its href.
_FIND = """(text) => {
  const hits = [...document.querySelectorAll('body *')].filter(e =>
    e.innerText && e.innerText.trim() === text && e.getClientRects().length > 0
    && ![...e.children].some(c => c.innerText && c.innerText.trim() === text));
  if (!hits.length) return null;
  hits[0].scrollIntoView({block: 'center'});
  const r = hits[0].getBoundingClientRect(), x = r.x + r.width / 2, y = r.y + r.height / 2;
  const link = hits[0].closest('a[href]');
  return {x, y, hit: hits[0].contains(document.elementFromPoint(x, y)), href: link ? link.href : null};
}"""


class Browser:
    """One headless Chromium with one tab; `close()` ends it."""

    def __init__(self, profile_dir: Path) -> None:
        from websockets.sync.client import connect

        assert CHROMIUM, "chromium is not installed"
        profile_dir.mkdir(parents=True, exist_ok=True)
        # Chromium writes the port it chose into the profile once it listens (one left by an
        # earlier browser would name a port nobody listens on).
        port_file = profile_dir / "DevToolsActivePort"
        port_file.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile_dir}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
             "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + BROWSER_START_TIMEOUT_S
            while not (port_file.is_file() and port_file.read_text().count("\n") >= 1):
                assert self.process.poll() is None, f"chromium exited with {self.process.returncode}"
                assert time.monotonic() < deadline, f"chromium did not listen in {BROWSER_START_TIMEOUT_S} s"
                time.sleep(POLL_S)
            port = port_file.read_text().split("\n")[0]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
                (page,) = [t for t in json.load(resp) if t["type"] == "page"]
            self.ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
        except BaseException:
            self.process.kill()
            self.process.wait()
            raise
        self.ids = itertools.count(1)

    def call(self, method: str, **params) -> dict:
        """Send one command; its result (events that arrive meanwhile are not asked for and skipped)."""
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            answer = json.loads(self.ws.recv(timeout=PAGE_TIMEOUT_S))
            if answer.get("id") == msg_id:
                assert "error" not in answer, f"{method}: {answer['error']}"
                return answer["result"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def wait_for(self, *texts: str, at: str = "") -> str:
        """The page's text once its address contains `at` and every one of `texts` shows in it
        (the app renders after its API answers); fails after PAGE_TIMEOUT_S with the address and
        the text the page shows instead."""
        deadline = time.monotonic() + PAGE_TIMEOUT_S
        while True:
            href, shown = self.evaluate("[location.href, document.body ? document.body.innerText : '']")
            missing = [t for t in texts if t not in shown]
            if at in href and not missing:
                return shown
            assert time.monotonic() < deadline, (
                f"{href} did not show {missing} at {at!r} in {PAGE_TIMEOUT_S} s; it shows:\n{shown[-3000:]}")
            time.sleep(POLL_S)

    def _find(self, text: str, at: str, by_mouse: bool = False) -> dict:
        """Where `text` shows on the page at `at`, once it stays put (the app moves things as
        more of its data arrives: a click during that lands on whatever moved under it) and,
        `by_mouse`, nothing covers it."""
        self.wait_for(text, at=at)
        deadline = time.monotonic() + PAGE_TIMEOUT_S
        found = None
        while True:
            before, found = found, self.evaluate(f"({_FIND})({json.dumps(text)})")
            if found and found == before and (found["hit"] or not by_mouse):
                return found
            assert time.monotonic() < deadline, f"{text!r} did not stay put where it shows in {PAGE_TIMEOUT_S} s: {found}"
            time.sleep(POLL_S)

    def follow(self, text: str, at: str = "") -> str:
        """Go where the link that reads `text` leads (what clicking it does; a new page load
        leaves nothing of the page before to be mistaken for the next); its address."""
        href = self._find(text, at)["href"]
        assert href, f"{text!r} is not a link"
        self.open(href)
        return href

    def click(self, text: str, at: str = "") -> None:
        """Click, with the mouse, the visible element that reads `text` (a tab, a button)."""
        found = self._find(text, at, by_mouse=True)
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=found["x"], y=found["y"])
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=found["x"], y=found["y"], button="left", clickCount=1)

    def click_for(self, text: str, *expected: str, at: str = "") -> str:
        """Click `text` until the page at `at` shows every one of `expected`: a click that lands
        before the app listens does nothing, and a user who sees that clicks again. Fails after
        PAGE_TIMEOUT_S as wait_for does."""
        deadline = time.monotonic() + PAGE_TIMEOUT_S
        while True:
            self.click(text, at)
            settle = min(deadline, time.monotonic() + CLICK_SETTLE_S)
            while True:
                href, shown = self.evaluate("[location.href, document.body ? document.body.innerText : '']")
                missing = [t for t in expected if t not in shown]
                if at in href and not missing:
                    return shown
                if time.monotonic() >= settle:
                    break
                time.sleep(POLL_S)
            assert time.monotonic() < deadline, (
                f"{href} did not show {missing} at {at!r} after clicking {text!r} for {PAGE_TIMEOUT_S} s; "
                f"it shows:\n{shown[-3000:]}")

    def close(self) -> None:
        self.ws.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
