"""The pytest plugin (harness.api.pytest_plugin) as a user meets it: child pytest runs over
user-style test files written into a temporary project.

The runs that measure join this session's Prefect API (the inherited PREFECT_API_URL) and Dask
cluster (--harness-dask-address): no second server or cluster to start. The one that checks the
entry point needs none.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGIN = "harness.api.pytest_plugin"

CHILD_TIMEOUT_S = 240

# A user's test file. `score` is a module-level function of a test module the workers cannot
# import (it travels by value); {plant} is the line a regression adds to it.
USER_TEST = '''\
import time

ITEMS = list(range(200))


def score(n):
    {plant}
    return sum(i * i for i in range(n % 64))


def test_score(harness_benchmark):
    result = harness_benchmark(score, ITEMS, strategies=["adaptive", "static:50"])
    assert result.identical
'''

# The planted regression: 40 ms more per call, +4 s per round of 200 items on 2 worker threads,
# 4-20x the stage's median here (0.2-1 s under load). Gross on purpose, as COMPARE_FAIL must be.
PLANT = "time.sleep(0.04)"

# Above the noise of a shared 2-core machine (tests/benchmarks/test_planted_slowdown.py: unchanged
# compares moved the median by up to +91 %), far below the plant.
COMPARE_FAIL = "median:250%"

# Rounds per child run: the median of 3 is robust to one disturbed round; the slowed run needs
# no such care, every round carries the whole plant.
CHILD_ROUNDS = 3
SLOWED_ROUNDS = 1


def _env() -> dict[str, str]:
    """This tree first on the path (the child imports the harness under test) and no bytecode
    written into the user's project."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))
    return {**os.environ, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1"}


# Hypothesis's pytest plugin imports all of Hypothesis at every session's end, ~1-2 s of a child
# run (its modules' asserts rewritten anew each time: no bytecode is written); no child uses it.
NO_HYPOTHESIS = ("-p", "no:hypothesispytest")


def pytest_child(project: Path, *args: str, plugin: bool = True, quiet: bool = True) -> subprocess.CompletedProcess[str]:
    """`python -m pytest -q ARGS` in `project`, loading the plugin by name unless `plugin` is False
    (`-p` with the entry point's name: loaded once, whether or not its metadata is installed), and
    without Hypothesis's plugin then; with `plugin` False only the entry points decide what loads."""
    command = [sys.executable, "-m", "pytest", *(["-q"] if quiet else []), "-p", "no:cacheprovider",
               *(["-p", PLUGIN, *NO_HYPOTHESIS] if plugin else []), *args]
    return subprocess.run(command, cwd=project, env=_env(), capture_output=True, text=True, timeout=CHILD_TIMEOUT_S,
                          check=False)


def _say(step: str, result: subprocess.CompletedProcess[str]) -> str:
    return f"{step}: exit {result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"


def _on_cluster(runtime) -> tuple[str, ...]:
    assert os.environ.get("PREFECT_API_URL"), "the session runtime puts PREFECT_API_URL in the environment"
    # lean: the session's workers were started for it, and it keeps the children's tasks cheap.
    return (f"--harness-dask-address={runtime.scheduler_address}", "--harness-profile=lean")


@pytest.mark.cluster
def test_a_baseline_then_an_unchanged_compare_passes_and_a_slower_function_fails_it(runtime, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    test_file = project / "test_user_guard.py"
    storage = tmp_path / "benchmarks"
    common = (*_on_cluster(runtime), f"--benchmark-storage=file://{storage}")

    test_file.write_text(USER_TEST.format(plant="pass"))
    baseline = pytest_child(project, *common, f"--harness-rounds={CHILD_ROUNDS}", "--benchmark-save=base")
    assert baseline.returncode == 0, _say("baseline", baseline)
    (saved,) = storage.rglob("*_base.json")
    entries = {b["name"]: b for b in json.loads(saved.read_text())["benchmarks"]}
    assert sorted(entries) == ["test_score[adaptive]", "test_score[static:50]"]
    info = entries["test_score[adaptive]"]["extra_info"]
    assert info["items"] == 200 and info["rounds"] == CHILD_ROUNDS and info["best_static"] == "static:50"
    assert {"items_per_s", "tasks", "overhead_per_task_ms", "over_best_static"} <= set(info)
    assert entries["test_score[static:50]"]["extra_info"]["tasks"] == 4
    assert entries["test_score[static:50]"]["extra_info"]["over_best_static"] == 1.0

    compare = (f"--benchmark-compare=0001", f"--benchmark-compare-fail={COMPARE_FAIL}")
    unchanged = pytest_child(project, *common, f"--harness-rounds={CHILD_ROUNDS}", *compare)
    assert unchanged.returncode == 0, _say("unchanged compare (crying wolf?)", unchanged)
    assert "Performance has regressed" not in unchanged.stdout + unchanged.stderr

    test_file.write_text(USER_TEST.format(plant=PLANT))
    slowed = pytest_child(project, *common, f"--harness-rounds={SLOWED_ROUNDS}", *compare)
    output = slowed.stdout + slowed.stderr
    assert slowed.returncode != 0, _say("planted slowdown compare", slowed)
    assert "Performance has regressed" in output, _say("planted slowdown compare", slowed)
    assert "test_score[static:50]" in output[output.index("Performance has regressed"):]


BAD_CALLS = '''\
import threading


def test_strategies_as_one_string(harness_benchmark):
    harness_benchmark(abs, range(10), strategies="adaptive")


def test_unknown_strategy(harness_benchmark):
    harness_benchmark(abs, range(10), strategies=["adaptive", "static:0"])


def test_no_rounds(harness_benchmark):
    harness_benchmark(abs, range(10), rounds=0)


def test_unknown_argument(harness_benchmark):
    harness_benchmark(abs, range(10), repeats=3)


def test_items_not_iterable(harness_benchmark):
    harness_benchmark(abs, 10)


def test_a_function_holding_a_lock(harness_benchmark):
    lock = threading.Lock()

    def guarded(x):
        with lock:
            return x

    harness_benchmark(guarded, range(10))


def test_a_lambda_travels(harness_benchmark):
    offset = 3
    result = harness_benchmark(lambda x: x + offset, range(40), strategies=["static:10", "raw_dask:10"], rounds=2)
    assert result.identical
    assert result.median("static:10") > 0
    ratio = result.ratio("raw_dask:10", "static:10")
    assert ratio.value > 0 and ratio.low != ratio.low  # NaN: 2 rounds are too few for an interval
'''

# test name -> what its failure must say
MESSAGES = {
    "test_strategies_as_one_string": "harness_benchmark: strategies: found 'adaptive', expected a list of strategy names",
    "test_unknown_strategy": "harness_benchmark: strategies: found ",
    "test_no_rounds": "harness_benchmark: rounds: found 0, expected a whole number >= 1",
    "test_unknown_argument": "harness_benchmark: unknown argument 'repeats'",
    "test_items_not_iterable": "harness_benchmark: items: found a int, expected an iterable of items",
    "test_a_function_holding_a_lock": "harness_benchmark: fn: test_a_function_holding_a_lock.<locals>.guarded "
                                      "(test_bad_calls.py:27) cannot travel to the worker processes: its closure "
                                      "variable 'lock' (a _thread.lock) does not pickle",
}


@pytest.mark.cluster
def test_bad_arguments_fail_their_test_with_a_message_and_a_lambda_runs(runtime, tmp_path):
    (tmp_path / "test_bad_calls.py").write_text(BAD_CALLS)
    done = pytest_child(tmp_path, *_on_cluster(runtime), "--benchmark-disable")
    output = done.stdout + done.stderr
    assert done.returncode == 1, _say("bad calls", done)
    sections = output.split("____ ")  # one failure section per test, headed by its name
    for test, message in MESSAGES.items():
        section = [s for s in sections if s.startswith(f"{test} _")]
        assert section and message in section[0], f"{test}: expected {message!r}\n{output[-6000:]}"
    assert "6 failed, 1 passed" in output, output[-4000:]
    # The message only: no traceback into the plugin or the harness.
    assert "Traceback" not in output and "pytest_plugin.py" not in output and "shipped.py" not in output, output[-6000:]

    usage = pytest_child(tmp_path, "-o", "harness_rounds=many", "--co")
    assert usage.returncode == pytest.ExitCode.USAGE_ERROR, _say("bad ini value", usage)
    assert ("harness: --harness-rounds (or the ini key harness_rounds): found 'many', expected a whole number >= 1"
            in usage.stderr), _say("bad ini value", usage)


def test_the_plugin_loads_through_its_entry_point(tmp_path):
    """Nothing but the installed entry point loads it here: no -p, no conftest, no ini."""
    ours = [ep for ep in importlib.metadata.entry_points(group="pytest11") if ep.value == PLUGIN]
    assert ours, (f"no pytest11 entry point for {PLUGIN} in this environment: install the package as the test "
                  "command does (pip install -e .) so that its metadata has pyproject.toml's entry point")
    (tmp_path / "test_nothing.py").write_text("def test_nothing(harness_benchmark):\n    pass\n")

    loaded = pytest_child(tmp_path, "--trace-config", "--fixtures", plugin=False, quiet=False)
    assert loaded.returncode == 0, _say("--trace-config --fixtures", loaded)
    # "registered third-party plugins:" lists what entry points loaded, with their distribution.
    assert "registered third-party plugins:" in loaded.stdout, loaded.stdout[:6000]
    third_party = loaded.stdout.split("registered third-party plugins:", 1)[1].split("active plugins:", 1)[0]
    ours_line = [line for line in third_party.splitlines() if "pytest_plugin.py" in line and "harness" in line]
    assert ours_line and ours_line[0].strip().startswith(f"{ours[0].dist.name}-"), third_party
    assert "harness_benchmark" in loaded.stdout.split("fixtures defined from harness.api.pytest_plugin", 1)[-1]

    blocked = pytest_child(tmp_path, "-p", f"no:{PLUGIN}", "--fixtures", plugin=False)
    assert "harness_benchmark" not in blocked.stdout, blocked.stdout[-3000:]


EXAMPLE = REPO / "examples" / "pytest_guard"


@pytest.mark.cluster
def test_the_pytest_guard_example_passes_with_an_entry_per_strategy(runtime, tmp_path):
    """examples/pytest_guard as its user runs it: `pytest` in that project (its pyproject.toml's
    settings), its guard passing, one pytest-benchmark entry per strategy."""
    done = pytest_child(EXAMPLE, *_on_cluster(runtime), f"--benchmark-storage=file://{tmp_path}",
                        "--benchmark-save=example")
    assert done.returncode == 0, _say("examples/pytest_guard", done)
    (saved,) = tmp_path.rglob("*_example.json")
    entries = {b["name"]: b["stats"]["rounds"] for b in json.loads(saved.read_text())["benchmarks"]}
    # 5 rounds: the example's harness_rounds
    assert entries == {"test_scoring_is_batched_well[adaptive]": 5, "test_scoring_is_batched_well[static:256]": 5}
