"""The CLI's warm measurement: `adaptive_warm`, the adaptive strategy started from what the run's
cold `adaptive` stage learned (or the cache), ordered after it and reported against both."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from harness.measure.run import rotated
from harness.workload.spec import json_schema
from harness.workload.vocabulary import REGISTRY, Strategy


def test_the_warm_stage_runs_after_the_cold_one_in_every_rotation():
    strategies = tuple(Strategy.parse(s) for s in ("adaptive_warm", "per_item", "adaptive", "static:8"))
    for repeat in range(8):
        order = [str(s) for s in rotated(strategies, repeat)]
        assert sorted(order) == sorted(str(s) for s in strategies)
        assert order.index("adaptive_warm") > order.index("adaptive")
    alone = (Strategy.parse("adaptive_warm"), Strategy.parse("per_item"))  # no cold stage: the cache's
    assert [str(s) for s in rotated(alone, 1)] == ["per_item", "adaptive_warm"]


def _patterns(node: object) -> list[str]:
    """Every "pattern" of a JSON Schema document."""
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "pattern" and isinstance(v, str)] + \
            [p for v in node.values() for p in _patterns(v)]
    return [p for v in node for p in _patterns(v)] if isinstance(node, list) else []


def test_the_workload_schema_takes_every_bare_strategy_name():
    (pattern,) = [p for p in _patterns(json.loads(json_schema())) if "per_item" in p]
    for name in REGISTRY.names:
        if not REGISTRY[name].sized:
            assert re.match(pattern, name), name
    assert not re.match(pattern, "adaptive_cold")


@pytest.mark.cluster
def test_a_run_measures_adaptive_warm_from_its_cold_stage_and_reports_both(runtime, make_spec, tmp_path):
    from harness.measure.run import run_workload
    from harness.report.run_report import read_report, render_markdown
    from harness.runtime.learned_store import local_path
    from harness.workload.spec import with_overrides

    # The warm stage starts from this run's cold stage, whatever an earlier run left in the cache.
    # Items of 10 ms: adaptive sends tasks rather than running so small a stage inline.
    spec = with_overrides(make_spec(name="warm", count=60, mean_ms=10.0, repeats=1,
                                    strategies=("adaptive_warm", "static:8", "adaptive")),
                          address=runtime.scheduler_address)
    folder = run_workload(spec, tmp_path / "results")
    runs = pd.read_csv(folder / "runs.csv").set_index("strategy")
    assert runs.loc["adaptive_warm", "order"] == runs.loc["adaptive", "order"] + 1
    trace = pd.read_csv(folder / "trace.csv")
    cold = trace[trace["strategy"] == "adaptive"].sort_values("submitted_s")
    warm = trace[trace["strategy"] == "adaptive_warm"].sort_values("submitted_s")
    assert not cold["reason"].str.contains("from memory").any()
    first = warm.iloc[0]
    assert first["reason"].startswith("from memory: "), first["reason"]
    assert first["mode"] == "batched" and first["batch_size"] > 1  # no probe of one item
    assert list(local_path("local", "any").parent.glob("harness-run-warm-*.json"))  # for later runs
    report = read_report(folder)
    rows = {row["against"]: row for row in report.warm.table.records()}
    assert set(rows) == {"adaptive_warm / best static", "adaptive / best static", "adaptive_warm / cold"}
    assert rows["adaptive_warm / cold"]["strategy"] == "adaptive"
    assert "Warm start against cold" in render_markdown(report)
