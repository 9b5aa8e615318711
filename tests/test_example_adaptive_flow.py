"""examples/adaptive_flow/flow.py as README runs it: a user's flow using `adaptive_map` over
`local_runtime()`, its results checked against a plain Python loop over the same items."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "adaptive_flow" / "flow.py"
# README promises under two minutes; a loaded test machine gets twice that.
EXAMPLE_TIMEOUT_S = 240


@pytest.mark.cluster
def test_the_adaptive_flow_example_gives_the_plain_loop_results(runtime):
    """Run as a command (joining the session's API: PREFECT_API_URL is in the environment)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(EXAMPLE.parents[2]), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(EXAMPLE)], env=env, capture_output=True, text=True,
                          timeout=EXAMPLE_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    example = runpy.run_path(str(EXAMPLE), run_name="example")  # its functions, without running main()
    expected = [example["score"](n) for n in range(example["ITEMS"])]
    assert done.stdout.strip().splitlines()[-1] == (
        f"{len(expected)} results, first {expected[:3]}, digest {example['digest'](expected)}")
