"""examples/async_http/flow.py as its README runs it: an `async def` simulated HTTP call per item,
mapped by `adaptive_map` in a flow and by `adaptive_map_async` in an async flow, memory in a
Prefect Variable; its printed results checked against the simulated service's own answers, its
batch sizes and concurrency limits against the trace's rules, and the async flow's start against
the memory the first flow kept."""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "async_http" / "flow.py"
ITEMS = 300  # a few hundred calls of ~20 ms: the run is mostly Python's and Prefect's start
# A few seconds on an idle machine (the cluster's start, two flows); a loaded one gets more.
EXAMPLE_TIMEOUT_S = 240


@pytest.mark.cluster
def test_the_async_example_fetches_every_url_in_both_flows(runtime):
    """Run as a command (joining the session's API: PREFECT_API_URL is in the environment)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(EXAMPLE.parents[2]), os.environ.get("PYTHONPATH", "")])}
    # On the session's cluster (as a user names their own scheduler): no cluster of its own to start.
    done = subprocess.run([sys.executable, str(EXAMPLE), "--items", str(ITEMS), "--address", runtime.scheduler_address],
                          env=env, capture_output=True, text=True, timeout=EXAMPLE_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    example = runpy.run_path(str(EXAMPLE), run_name="example")  # its functions, without running main()
    lines = [line for line in done.stdout.splitlines() if not re.match(r"\d\d:\d\d:\d\d", line)]  # not Dask's logs
    for kind, day in (("flow", "2026-12-01"), ("async flow", "2026-12-02")):
        urls = example["urls_for"](day, ITEMS)
        assert any(example["busy"](url) for url in urls)  # some first attempts fail: the retries are exercised
        expected = sum(example["body_bytes"](url) for url in urls)
        head = f"{kind} {day}: {ITEMS} items, {ITEMS} ok, 0 failed, {expected} bytes, "
        at = next(i for i, line in enumerate(lines) if line.startswith(head))
        sizes, limits = (re.fullmatch(rf"  {name}:\s+(.*) \((\d+) batches\)", lines[at + n])
                         for n, name in ((1, "batch sizes"), (2, "concurrency")))
        assert sizes and limits and sizes[2] == limits[2], lines[at:at + 4]
        if kind == "async flow":  # the same function on the same runtime: it starts from what the flow kept
            assert lines[at + 3].startswith("  first batch:  from memory: "), lines[at + 3]
        if "..." not in sizes[1]:  # every batch shown: they hold every item once
            batch = [int(v) for v in sizes[1].split()]
            limit = [int(v) for v in limits[1].split()]
            assert sum(batch) == ITEMS
            assert all(1 <= c <= min(b, example["MAX_CONCURRENCY"]) for b, c in zip(batch, limit))


def test_the_deployed_flow_page_shows_the_example_s_own_flows():
    """docs/deployed-flow.md shows the flows the test above runs, as they are in the example."""
    page = (EXAMPLE.parents[2] / "docs" / "deployed-flow.md").read_text()
    shown = [block for block in re.findall(r"^```python\n(.*?)^```", page, re.M | re.S) if "@flow" in block]
    assert len(shown) == 2
    source = EXAMPLE.read_text()
    for block in shown:
        assert block in source, block
