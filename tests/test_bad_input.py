"""Bad input, table-driven, through the command line: every malformed workload file or option
exits 2 with a message naming what is wrong (file, table, key, what was found and expected),
and no run folder appears. One case also runs as a real `python -m harness` subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.cli import main
from harness.runtime import free_port

# The shared valid file each case breaks in one place (via `workload_toml` in conftest).
GOOD = {"name": "bad-input", "count": 20}


def edit(old: str, new: str):
    """A case that replaces `old` (which must be in the good file) with `new`."""
    def apply(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)
    return apply


def add(extra: str):
    return lambda text: text + extra


# (id, how the file is broken, extra CLI args, texts the message must contain)
FILE_CASES = [
    ("toml-unclosed-string", edit('name = "bad-input"', 'name = "bad-input'), [], ["invalid TOML"]),
    ("toml-duplicate-key", edit("seed = 11", "seed = 11\nseed = 3"), [], ["invalid TOML"]),
    ("toml-not-utf8", None, [], ["not UTF-8"]),
    ("unknown-top-level-key", edit("seed = 11", "seed = 11\ncolour = 1"), [], ["[top level] colour"]),
    ("unknown-table", add("[itemz]\ncount = 3\n"), [], ["[itemz]"]),
    ("unknown-key-items", edit("count = 20", "count = 20\ncnt = 3"), [], ["[items] cnt"]),
    ("unknown-key-faults", edit("retries = 3", "retries = 3\nretry = 3"), [], ["[faults] retry"]),
    ("bad-name", edit('name = "bad-input"', 'name = "Bad Name"'), [], ["[top level] name", "'Bad Name'"]),
    ("negative-seed", edit("seed = 11", "seed = -1"), [], ["[top level] seed", "-1"]),
    ("seed-as-string", edit("seed = 11", 'seed = "eleven"'), [], ["[top level] seed", "integer"]),
    ("zero-count", edit("count = 20", "count = 0"), [], ["[items] count", "found 0"]),
    ("negative-count", edit("count = 20", "count = -5"), [], ["[items] count", "found -5"]),
    ("float-count", edit("count = 20", "count = 1.5"), [], ["[items] count", "1.5"]),
    ("negative-payload", edit("payload_bytes = 32", "payload_bytes = -1"), [], ["[items] payload_bytes"]),
    ("unknown-cost-kind", edit('kind = "cpu"', 'kind = "gpu"'), [], ["[cost] kind", "'gpu'"]),
    ("negative-mean", edit("mean_ms = 0.5", "mean_ms = -1"), [], ["[cost] mean_ms", "found -1"]),
    ("unknown-distribution", edit('distribution = "constant"', 'distribution = "normal"'), [],
     ["[cost] distribution", "'normal'"]),
    ("pareto-alpha-below-one", edit('distribution = "constant"\nspread = 0.5', 'distribution = "pareto"\nspread = 0.5'),
     [], ["[cost] spread", "pareto"]),
    ("phases-out-of-order", add(""), [], ["[[cost.phases]] #2", "increasing order"]),
    ("phase-at-beyond-one", add(""), [], ["[[cost.phases]] #1", "at"]),
    ("transient-rate-one", edit("transient_rate = 0.0", "transient_rate = 1.0"), [], ["[faults] transient_rate"]),
    ("negative-permanent-rate", edit("permanent_rate = 0.0", "permanent_rate = -0.1"), [],
     ["[faults] permanent_rate"]),
    ("negative-retries", edit("retries = 3", "retries = -1"), [], ["[faults] retries", "-1"]),
    ("path-failure-rate-above-one", edit("retries = 3", "retries = 3\npath_failure_rate = 2"), [],
     ["[faults] path_failure_rate", "found 2"]),
    ("unknown-fault-path", edit("retries = 3", 'retries = 3\npath = "teleport"'), [],
     ["[faults] path", "'teleport'", "'batched'"]),
    ("unknown-pattern", edit('kind = "map"', 'kind = "graph"'), [], ["[pattern] kind", "'graph'"]),
    ("zero-workers", edit("workers = 2", "workers = 0"), [], ["[cluster] workers", "found 0"]),
    ("address-without-scheme", edit("threads_per_worker = 1", 'threads_per_worker = 1\naddress = "localhost:8786"'),
     [], ["[cluster] address", "localhost:8786"]),
    ("unknown-strategy", edit('strategies = ["per_item", "static:10"]', 'strategies = ["fastest"]'), [],
     ["[run] strategies", "fastest"]),
    ("static-without-size", edit('strategies = ["per_item", "static:10"]', 'strategies = ["static"]'), [],
     ["[run] strategies", "static"]),
    ("empty-strategies", edit('strategies = ["per_item", "static:10"]', "strategies = []"), [],
     ["[run] strategies", "non-empty"]),
    ("zero-repeats", edit("repeats = 1", "repeats = 0"), [], ["[run] repeats", "found 0"]),
    ("zero-in-sweep", edit("repeats = 1", "repeats = 1\nsweep = [0, 16]"), [], ["[run] sweep"]),
    # command-line arguments on a good file
    ("cli-unknown-strategy", None, ["--strategies", "per_item,warp:9"], ["--strategies", "warp"]),
    ("cli-negative-repeats", None, ["--repeats", "-2"], ["--repeats", "-2"]),
    ("cli-repeats-not-a-number", None, ["--repeats", "three"], ["--repeats", "three"]),
    ("cli-bad-address", None, ["--dask-address", "nonsense"], ["--dask-address", "nonsense"]),
    ("cli-unknown-profile", None, ["--profile", "turbo"], ["--profile", "turbo"]),
    ("cli-unknown-option", None, ["--fast"], ["--fast"]),
]

PHASES = {
    "phases-out-of-order": "\n[[cost.phases]]\nat = 0.6\nmean_ms = 2.0\n\n[[cost.phases]]\nat = 0.4\nmean_ms = 1.0\n",
    "phase-at-beyond-one": "\n[[cost.phases]]\nat = 1.5\nmean_ms = 2.0\n",
}


@pytest.fixture(autouse=True)
def _keep_signal_handlers(keep_signal_handlers):
    """main() installs signal handlers for the CLI process (conftest.keep_signal_handlers)."""


def _write_case(tmp_path, make_toml, case_id, breaks) -> str:
    path = tmp_path / f"{case_id}.toml"
    text = make_toml(**GOOD)
    if case_id == "toml-not-utf8":
        path.write_bytes(text.encode() + b"description = \"caf\xe9\"\n")
        return str(path)
    if case_id in PHASES:
        # [[cost.phases]] must follow [cost]: put it right before [faults]
        text = text.replace("\n[faults]", PHASES[case_id] + "\n[faults]", 1)
    elif breaks is not None:
        text = breaks(text)
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(("case_id", "breaks", "args", "named"), FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_bad_input_exits_2_naming_the_problem_and_writes_nothing(tmp_path, make_toml, capsys,
                                                                 case_id, breaks, args, named):
    workload = _write_case(tmp_path, make_toml, case_id, breaks)
    out = tmp_path / "results"
    code = main(["run", workload, "--out", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2, err
    if not case_id.startswith("cli-"):
        assert workload in err, err  # the file is named
    for text in named:
        assert text in err, f"{text!r} not in: {err}"
    assert not out.exists()


def test_missing_workload_file_is_named(tmp_path, capsys):
    missing = tmp_path / "nope.toml"
    assert main(["run", str(missing), "--out", str(tmp_path / "results")]) == 2
    assert f"{missing}: no such workload file" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


@pytest.mark.cluster
def test_unreachable_scheduler_address_exits_2(runtime, tmp_path, make_toml, capsys):
    """A scheduler address nobody listens on: exit 2 naming it (the API is the session's)."""
    workload = _write_case(tmp_path, make_toml, "dead-scheduler", None)
    dead = f"tcp://127.0.0.1:{free_port()}"
    out = tmp_path / "results"
    code = main(["run", workload, "--out", str(out), "--dask-address", dead, "--connect-timeout", "1"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"cannot reach a Dask scheduler at {dead}" in err
    assert not out.exists()


@pytest.mark.parametrize("option", ["--connect-timeout", "--worker-timeout"])
@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan"])
def test_a_timeout_that_is_no_number_of_seconds_exits_2_naming_it(tmp_path, make_toml, capsys, option, value):
    workload = _write_case(tmp_path, make_toml, "bad-timeout", None)
    out = tmp_path / "results"
    code = main(["run", workload, "--out", str(out), "--dask-address", "tcp://127.0.0.1:1", option, value])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{option}: found {float(value)}, expected a number of seconds above 0" in err
    assert not out.exists()


def test_bad_input_as_a_real_subprocess(tmp_path, make_toml):
    workload = _write_case(tmp_path, make_toml, "negative-count", edit("count = 20", "count = -5"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    proc = subprocess.run([sys.executable, "-m", "harness", "run", workload, "--out", str(tmp_path / "results")],
                          check=False, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert f"{workload}: [items] count: found -5" in proc.stderr
    assert proc.stdout == ""
    assert not (tmp_path / "results").exists()
