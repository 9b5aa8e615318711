"""A user's task ([task] + [items]) and harness.benchmark: the examples end to end with their
results checked against a plain Python loop, bad input (exit 2, named, nothing written), a
raising function (failed items counted and named), a non-deterministic one (a note, not a failure)."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.errors import SpecError
from harness.work.user_task import ItemList, UserFunction, UserItem, result_digest
from harness.work.outcomes import CHECKSUM_MODULUS, ItemOutcome, item_digest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(autouse=True)
def _keep_signal_handlers(keep_signal_handlers):
    """main() installs signal handlers for the CLI process (conftest.keep_signal_handlers)."""


def plain_checksum(fn, values) -> str:
    """runs.csv's checksum of `fn` over `values`, computed with a plain loop in this process."""
    total = sum(item_digest(ItemOutcome(i, True, 0.0, 1, result_digest(fn(v)), "")) for i, v in enumerate(values))
    return f"{total % CHECKSUM_MODULUS:016x}"


def run_cli(args, capsys) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def folder_of(stdout: str) -> Path:
    return Path(stdout.rstrip("\n").splitlines()[-1])


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def import_from(folder: Path, module: str):
    sys.path.insert(0, str(folder))
    try:
        return __import__(module)
    finally:
        sys.path.remove(str(folder))


# --- the kernel, directly ------------------------------------------------------------------


def test_a_raising_call_is_retried_then_a_failed_outcome_with_its_exception(tmp_path):
    write(tmp_path, "ut_flaky.py", """\
        def f(x):
            if x % 3 == 0:
                raise ValueError(f"no multiples of 3, got {x}")
            return x * 2
        def batch(xs):
            return [f(x) for x in xs]
        """)
    kernel = UserFunction("ut_flaky:f", "ut_flaky:batch", str(tmp_path), retries=2)
    items = [UserItem(i, v) for i, v in enumerate([1, 3, 4])]
    for result in (kernel.run_batch(items, 2), UserFunction("ut_flaky:f", "", str(tmp_path)).run_batch(items, 2)):
        ok, bad, ok2 = result.outcomes
        assert ok.ok and ok2.ok and not bad.ok
        assert (bad.error, bad.message, bad.attempts) == ("ValueError", "no multiples of 3, got 3", 3)
        assert ok.payload == result_digest(2) and ok2.payload == result_digest(8)
    single = kernel.run_item(items[1])
    assert not single.ok and single.attempts == 3


def test_item_list_batches_and_samples_keep_indices():
    items = ItemList(["a", "b", "c", "d", "e"], spec=None)
    assert [[i.index for i in b] for b in items.batches(2)] == [[0, 1], [2, 3], [4]]
    assert [i.value for i in items.take(items.sample_indices(2))] == ["b", "d"]


def test_benchmark_refuses_a_lambda_and_a_local_function(tmp_path):
    from harness import benchmark

    def local(x):
        return x

    for fn, named in ((lambda x: x, "lambda"), (local, "<locals>")):
        with pytest.raises(SpecError, match="import") as info:
            benchmark(fn, [1, 2], out=tmp_path / "results")
        assert named in str(info.value)
    assert not (tmp_path / "results").exists()


# --- bad input: exit 2, named, nothing written ------------------------------------------------

GOOD_MODULE = """\
    import threading
    def f(x):
        return x
    def items():
        return [1, 2, 3]
    def unpicklable():
        return [1, threading.Lock()]
    def not_iterable():
        return 42
    NOT_CALLABLE = [1, 2]
    def broken():
        raise RuntimeError("no database")
    """

BAD_INPUT = [
    ("cost-and-task", 'function = "{m}:f"', 'source = "{m}:items"', '[cost]\nkind = "cpu"\nmean_ms = 1\n',
     ["[task]", "not both"]),
    ("missing-module", 'function = "nosuchmodule_ut:f"', 'source = "{m}:items"', "",
     ["[task] function", "'nosuchmodule_ut'"]),
    ("missing-attribute", 'function = "{m}:nope"', 'source = "{m}:items"', "", ["[task] function", "nope"]),
    ("missing-source-attribute", 'function = "{m}:f"', 'source = "{m}:nope"', "", ["[items] source", "nope"]),
    ("source-not-callable", 'function = "{m}:f"', 'source = "{m}:NOT_CALLABLE"', "",
     ["[items] source", "expected a callable"]),
    ("source-not-iterable", 'function = "{m}:f"', 'source = "{m}:not_iterable"', "",
     ["[items] source", "expected an iterable"]),
    ("source-raises", 'function = "{m}:f"', 'source = "{m}:broken"', "", ["[items] source", "no database"]),
    ("unpicklable-item", 'function = "{m}:f"', 'source = "{m}:unpicklable"', "",
     ["[items] source", "item 1", "cannot be pickled"]),
    ("missing-path", 'function = "{m}:f"', 'path = "nope.csv"', "", ["[items] path", "no such file"]),
    ("unparsable-path", 'function = "{m}:f"', 'path = "broken.parquet"', "", ["[items] path", "Parquet"]),
    ("unknown-suffix", 'function = "{m}:f"', 'path = "rows.xlsx"', "", ["[items] path", ".csv"]),
    ("source-and-path", 'function = "{m}:f"', 'source = "{m}:items"\npath = "rows.csv"', "",
     ["[items] source", "both source and path"]),
    ("not-a-reference", 'function = "{m}.f"', 'source = "{m}:items"', "", ["[task] function", "module:attribute"]),
    ("pattern-not-for-tasks", 'function = "{m}:f"', 'source = "{m}:items"', '[pattern]\nkind = "branching"\n',
     ["[pattern]", "with [task]"]),
]


@pytest.mark.parametrize(("case", "task", "items", "extra", "named"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_user_task_input_exits_2_naming_file_and_key_and_writes_nothing(tmp_path, capsys, case, task, items,
                                                                            extra, named):
    module = f"ut_bad_{case.replace('-', '_')}"
    write(tmp_path, f"{module}.py", GOOD_MODULE)
    (tmp_path / "broken.parquet").write_text("not parquet at all")
    workload = write(tmp_path, "w.toml", f'name = "bad"\n[task]\n{task.format(m=module)}\n'
                                         f'[items]\n{items.format(m=module)}\n{extra}')
    out = tmp_path / "results"
    code, _, err = run_cli(["run", str(workload), "--out", str(out), "--quick"], capsys)
    assert code == 2, err
    assert str(workload) in err, err
    for text in named:
        assert text in err, f"{text!r} not in: {err}"
    assert not out.exists()


@pytest.mark.cluster
def test_preflight_names_a_worker_that_cannot_import_the_function(runtime, tmp_path):
    """An existing cluster's workers don't see the flow process's sys.path: without the folder
    plugin (folder "") a module only the flow process can import is named, with a worker."""
    from harness.runtime.user_code import prepare_workers

    write(tmp_path, "ut_flow_only.py", "def f(x):\n    return x\n")
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(SpecError) as info:
            prepare_workers(runtime.client, UserFunction("ut_flow_only:f"), "w.toml")
    finally:
        sys.path.remove(str(tmp_path))
    message = str(info.value)
    assert "w.toml: [task] function: worker tcp://" in message and "ut_flow_only" in message


def test_the_modules_shipped_are_those_the_module_imports_from_its_folder(tmp_path):
    """Transitively, function bodies included, packages whole; not the standard library, not a
    third-party import, not a module nothing imports, not a name (harness) imported from elsewhere."""
    import zipfile

    from harness.runtime.user_code import code_archive, local_modules

    for name, text in {
        "ut_ship.py": "import os, json\nimport harness\nimport ut_ship_helper\nfrom ut_ship_pkg import sub\n"
                      "def f(x):\n    import ut_ship_lazy\n    return x\n",
        "ut_ship_helper.py": "from ut_ship_deeper import *\n",
        "ut_ship_deeper.py": "X = 1\n",
        "ut_ship_lazy.py": "Y = 1\n",
        "ut_ship_unused.py": "Z = 1\n",
        "ut_ship_pkg/__init__.py": "",
        "ut_ship_pkg/sub.py": "from .inner import q\nimport requests\n",
        "ut_ship_pkg/inner.py": "q = 1\n",
        "ut_ship_pkg/data.txt": "shipped with its package\n",
        "harness/__init__.py": "",
    }.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    found = local_modules(tmp_path, ["ut_ship"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "ut_ship.py", "ut_ship_deeper.py", "ut_ship_helper.py", "ut_ship_lazy.py", "ut_ship_pkg"]
    assert local_modules(tmp_path, ["json"]) == []  # not in the folder: nothing to ship

    (tmp_path / "out").mkdir()
    archive = code_archive(tmp_path, found, tmp_path / "out")
    assert sorted(zipfile.ZipFile(archive).namelist()) == [
        "ut_ship.py", "ut_ship_deeper.py", "ut_ship_helper.py", "ut_ship_lazy.py", "ut_ship_pkg/__init__.py",
        "ut_ship_pkg/data.txt", "ut_ship_pkg/inner.py", "ut_ship_pkg/sub.py"]
    (tmp_path / "ut_ship_lazy.py").write_text("Y = 2\n")  # a changed module: another file name
    assert code_archive(tmp_path, found, tmp_path / "out").name != archive.name


# --- end to end ------------------------------------------------------------------------------


def _full_rows(folder: Path) -> pd.DataFrame:
    runs = pd.read_csv(folder / "runs.csv", dtype={"checksum": str})
    return runs[~runs["sampled"]]


@pytest.mark.cluster
def test_numpy_example_matches_a_plain_loop(runtime, tmp_path, capsys):
    spectra = import_from(EXAMPLES / "numpy_task", "spectra")
    out = tmp_path / "results"
    code, stdout, err = run_cli(
        ["run", str(EXAMPLES / "numpy_task" / "workload.toml"), "--quick", "--out", str(out),
         # per_item (a sample here) runs in the CSV and raising-function tests: left out to save time
         "--strategies", "static:256,adaptive,raw_dask:256,joblib_auto",
         "--dask-address", runtime.scheduler_address], capsys)
    assert code == 0, err
    folder = folder_of(stdout)
    full = _full_rows(folder)
    assert set(full["strategy"]) == {"static:256", "adaptive", "raw_dask:256", "joblib_auto"}
    expected = plain_checksum(spectra.peak, list(spectra.make_items())[:3_000])
    assert set(full["checksum"]) == {expected}
    assert (pd.read_csv(folder / "runs.csv")["items_failed"] == 0).all()
    env = json.loads((folder / "env.json").read_text())
    assert env["workload"]["task"]["function"] == "spectra:peak"
    # A user's task sees the settings the user's flow sees: stock unless asked (issue 18)
    assert env["runtime"]["profile"] == "stock" and (pd.read_csv(folder / "runs.csv")["profile"] == "stock").all()
    assert "spectra:peak over 3,000 items" in (folder / "report.md").read_text()


@pytest.mark.cluster
def test_csv_example_matches_a_plain_loop(runtime, tmp_path, capsys):
    orders = import_from(EXAMPLES / "csv_task", "orders")
    out = tmp_path / "results"
    code, stdout, err = run_cli(
        ["run", str(EXAMPLES / "csv_task" / "workload.toml"), "--quick", "--out", str(out),
         "--dask-address", runtime.scheduler_address], capsys)
    assert code == 0, err
    runs = pd.read_csv(folder_of(stdout) / "runs.csv", dtype={"checksum": str})
    assert not runs["sampled"].any() and len(runs) == 5
    rows = pd.read_csv(EXAMPLES / "csv_task" / "orders.csv").to_dict("records")
    assert set(runs["checksum"]) == {plain_checksum(orders.order_total, rows)}
    assert (runs["items"] == len(rows)).all()


@pytest.mark.cluster
def test_a_raising_function_gives_counted_failed_items_named_in_the_report(runtime, tmp_path, capsys):
    write(tmp_path, "ut_sometimes.py", """\
        def f(x):
            if x % 7 == 3:
                raise KeyError(f"no price for item {x}")
            return x + 1
        def items():
            return range(60)
        """)
    workload = write(tmp_path, "w.toml", """\
        name = "raising"
        [task]
        function = "ut_sometimes:f"
        [items]
        source = "ut_sometimes:items"
        [faults]
        retries = 1
        [run]
        strategies = ["per_item", "static:8", "adaptive", "raw_dask:8", "joblib_auto"]
        repeats = 1
        """)
    code, stdout, err = run_cli(["run", str(workload), "--out", str(tmp_path / "results"),
                                 "--dask-address", runtime.scheduler_address], capsys)
    assert code == 0, err
    folder = folder_of(stdout)
    runs = pd.read_csv(folder / "runs.csv")
    failing = sum(1 for x in range(60) if x % 7 == 3)
    assert (runs["items_failed"] == failing).all() and (runs["items_ok"] == 60 - failing).all()
    assert (runs["retries"] == failing).all()  # one retry each, as [faults] retries = 1
    report = (folder / "report.md").read_text()
    assert f"{failing} items failed after retries" in report
    assert "item 3: KeyError: 'no price for item 3'" in report


@pytest.mark.cluster
def test_a_non_deterministic_function_gives_a_note_not_a_failure(runtime, tmp_path):
    from harness import benchmark

    write(tmp_path, "ut_random.py", "import random\ndef f(x):\n    return random.random()\n")
    module = import_from(tmp_path, "ut_random")
    result = benchmark(module.f, range(40), strategies=["static:10", "raw_dask:10"], repeats=1,
                       out=tmp_path / "results", address=runtime.scheduler_address)
    folder, runs = result  # unpacks as (folder, runs) too
    assert folder == result.folder and len(runs) == 2 and runs["checksum"].nunique() == 2
    assert "not deterministic" in (folder / "report.md").read_text()


@pytest.mark.cluster
def test_benchmark_on_python_objects_matches_a_plain_loop(runtime, tmp_path):
    from harness import benchmark

    spectra = import_from(EXAMPLES / "numpy_task", "spectra")
    items = list(range(300))
    result = benchmark(spectra.peak, items, strategies=["static:50", "adaptive"], sweep=[100], repeats=1,
                       out=tmp_path / "results", address=runtime.scheduler_address)
    assert result.folder.parent.parent == tmp_path / "results"
    assert list(result.runs["strategy"]) and set(result.runs["strategy"]) == {"static:50", "adaptive", "static:100"}
    assert set(result.runs["checksum"].astype(str)) == {plain_checksum(spectra.peak, items)}
    assert (result.folder / "report.md").is_file()
