"""Property: any TOML document given to `harness run` either passes every pre-start check (and
would run) or exits 2 with a one-line message naming the file, having written nothing.

Generated documents mix valid and invalid keys, types and values (most are invalid). Nothing
runs: the CLI's main is called in-process with the run itself replaced by a stop that records
the spec it was given, so the property covers validation and the pre-start checks exactly as
the command line meets them, in milliseconds per example.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import harness.measure.run
from harness.cli import main


class _Validated(BaseException):
    """Raised by the stand-in run: everything before the runtime passed."""


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for what json escapes
    return str(value)


def _toml(doc: dict[str, object]) -> str:
    top = [f"{key} = {_toml_value(v)}" for key, v in doc.items() if not isinstance(v, dict)]
    tables = [f"\n[{name}]\n" + "\n".join(f"{k} = {_toml_value(v)}" for k, v in table.items())
              for name, table in doc.items() if isinstance(table, dict)]
    return "\n".join(top) + "\n" + "\n".join(tables) + "\n"


_ANY = st.one_of(st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                 st.floats(allow_nan=True, allow_infinity=True), st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
                 st.lists(st.integers(-5, 2**65), max_size=3))


def _sometimes_wrong(good: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(good, good, good, _ANY)


_STRATEGY = st.one_of(st.sampled_from(["per_item", "adaptive", "joblib_auto"]),
                      st.builds(lambda k, n: f"{k}:{n}", st.sampled_from(["static", "raw_dask", "static"]),
                                st.integers(-1, 2**66)),
                      st.text(st.characters(blacklist_categories=("Cs",)), max_size=8))

DOCUMENTS = st.fixed_dictionaries(
    {"name": _sometimes_wrong(st.from_regex(r"[a-z0-9_-]{1,300}", fullmatch=True)),
     "seed": _sometimes_wrong(st.integers(0, 2**64)),
     "items": st.fixed_dictionaries({"count": _sometimes_wrong(st.integers(-3, 20_000_000)),
                                     "payload_bytes": _sometimes_wrong(st.integers(0, 20 * 2**20))}),
     "cost": st.fixed_dictionaries({"kind": _sometimes_wrong(st.sampled_from(["cpu", "sleep"])),
                                    "mean_ms": _sometimes_wrong(st.floats(0.001, 700_000))})},
    optional={"run": st.fixed_dictionaries({}, optional={
                  "strategies": _sometimes_wrong(st.lists(_STRATEGY, min_size=0, max_size=4)),
                  "repeats": _sometimes_wrong(st.integers(0, 200)),
                  "sweep": _sometimes_wrong(st.lists(st.integers(-1, 2**64), max_size=3))}),
              "cluster": st.fixed_dictionaries({}, optional={"workers": _sometimes_wrong(st.integers(0, 300))}),
              "surprise": _ANY},
)


@pytest.fixture(autouse=True)
def _keep_signal_handlers(keep_signal_handlers):
    """main() installs signal handlers for the CLI process (conftest.keep_signal_handlers)."""


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=DOCUMENTS)
def test_a_workload_file_passes_every_check_or_exits_2_writing_nothing(tmp_path_factory, capsys, monkeypatch, doc):
    folder = tmp_path_factory.mktemp("prop")
    workload, out = folder / "w.toml", folder / "results"
    workload.write_text(_toml(doc))
    seen = []

    def stop(spec, out_dir, **kwargs):
        seen.append(spec)
        raise _Validated

    monkeypatch.setattr(harness.measure.run, "run_workload", stop)
    try:
        code = main(["run", str(workload), "--out", str(out), "--quick"])
    except _Validated:
        code = None
    err = capsys.readouterr().err
    assert not out.exists(), "something was written"
    event("valid" if code is None else "refused")
    if code is None:  # valid: the run would start with this spec
        assert seen and seen[0].name == doc["name"] and err == ""
        return
    assert code == 2, err
    lines = err.strip().splitlines()
    # The file's own problems name the file; a name the results folder cannot hold names --out.
    assert lines and lines[0].startswith((f"harness: error: {workload}", f"harness: error: --out {out}")), err
    assert "Traceback" not in err
