"""Benchmarks of every strategy on one small real workload, then ratio guards.

Each strategy runs the same 160 items (2 ms of cpu work each, lognormal, ~0.32 s of work in
all, ~0.16 s ideal on the 2 worker threads) on the session's Prefect server and LocalCluster.
Absolute times do not carry across machines; ratios measured within one session do, so the
guards at the end of this module check ratios only. The guards read what the benchmarks above
them measured (pytest runs a module's tests in file order); what no benchmark of the session
measured (`-k guard`, or a benchmark that failed before recording) a guard measures itself,
the same rounds without pytest-benchmark's statistics. A guard never skips.

Thresholds (chosen from measurements on the 2-core development machine shared with four other
busy processes, where the same stage varied up to 2.7x between consecutive rounds; values in
the constants' comments are the range seen in quick and measuring runs, README "Benchmarks"):
each sits several times the noise away from what the machine measured and still well inside
what the regression it guards against produces.
"""

from __future__ import annotations

import pytest
from benchlib import Measured, bench_rounds, controller_s_per_decision, measure_strategy

from harness.workload.vocabulary import Strategy

pytestmark = pytest.mark.cluster

ITEMS = 160
ITEM_MS = 2.0
SWEEP = (5, 20, 80)  # static batch sizes; the oracle is the best of them in hindsight

# per_item and raw_dask:1 cost 160 tasks a round (5-14 s and 1.5-5 s here): a third of the
# rounds, so the quick pass stays under a minute. The ratios they enter sit 1.4x (per task) and
# 4x (per_item / oracle) or more from their thresholds in the noisiest runs measured.
PER_ITEM_SHARE = 1 / 3

# --- guards -------------------------------------------------------------------------------

# Batched vs per_item: per_item / oracle wall. Measured 12-25x (per_item pays ~35-75 ms of
# Prefect orchestration for each 2 ms item). Below 3x batching has stopped paying: e.g. a
# static strategy that submits per item, or a per-batch cost that grows with the batch.
MIN_PER_ITEM_OVER_ORACLE = 3.0

# Adaptive vs the best static size in hindsight: adaptive / oracle wall. Measured 1.3-1.9x on
# a stage this short (the controller's probe and ramp cost a few task round trips; the
# controller's docstring: "runs with well under a second of work pay for the probe and the
# ramp"). A controller stuck at batch 1 lands at the per_item ratio (12-25x); 3.5x leaves
# noise room above the worst measured and stays far below that.
MAX_ADAPTIVE_OVER_ORACLE = 3.5

# Prefect vs raw Dask, per task: per_item's overhead per task / raw_dask:1's. Measured 2.1-7.3x
# (lean profile: ~35-75 ms vs 9-35 ms, the spread is the machine's load). A planted 70 ms of
# flow-process time per submit (HARNESS_BENCH_SLOWDOWN_MS=70: the size of the stock profile's
# settings shipping) measured 11x; workers without PREFECT_API_URL (~300 ms a task) go far
# beyond. 10x keeps 1.4x of room over the noisiest unchanged run.
MAX_PREFECT_OVER_RAW_DASK_PER_TASK = 10.0

# Prefect vs raw Dask, batched: static:N / raw_dask:N wall at the smallest sweep size (32
# tasks: there orchestration is the largest share of the stage). Measured 1.3-1.9x, and 3.9x at
# load average 16 on 2 cores (Prefect's per-task cost is flow-process CPU, which suffers most
# from a busy machine). Coarse on purpose: workers without PREFECT_API_URL (~300 ms per task)
# land above 10x; the planted 70 ms per submit measured 6.9x (caught, narrowly: the finer
# per-task regressions are the per-task guard's).
MAX_STATIC_OVER_RAW_DASK = 6.0

# The controller's own cost per decision as a share of the per-task overhead it is deciding
# about: measured 0.1-0.5 %. 5 % would mean the policy itself has become a flow-side cost.
MAX_CONTROLLER_SHARE_OF_TASK_OVERHEAD = 0.05


@pytest.fixture(scope="module")
def spec(make_spec):
    return make_spec(name="bench-strategies", seed=21, count=ITEMS, payload_bytes=64, mean_ms=ITEM_MS,
                     distribution="lognormal", spread=0.5, retries=0)


def _share(text: str) -> float:
    return PER_ITEM_SHARE if text in ("per_item", "raw_dask:1") else 1.0


def _bench(benchmark, warm_runtime, spec, measured, text: str) -> Measured:
    record = measure_strategy(benchmark, warm_runtime, spec, Strategy.parse(text), bench_rounds(_share(text)))
    measured[text] = record
    return record


def _oracle(measured) -> tuple[str, Measured] | None:
    statics = [(k, m) for k, m in measured.items() if isinstance(m, Measured) and k.startswith("static:")]
    return min(statics, key=lambda km: km[1].wall_s) if statics else None


def test_per_item(benchmark, warm_runtime, spec, measured):
    record = _bench(benchmark, warm_runtime, spec, measured, "per_item")
    assert record.tasks == ITEMS


@pytest.mark.parametrize("size", SWEEP)
def test_static(benchmark, warm_runtime, spec, measured, size):
    record = _bench(benchmark, warm_runtime, spec, measured, f"static:{size}")
    assert record.tasks == -(-ITEMS // size)


def test_adaptive(benchmark, warm_runtime, spec, measured):
    record = _bench(benchmark, warm_runtime, spec, measured, "adaptive")
    sizes = sorted({size for r in record.results for size in r.batch_sizes})
    benchmark.extra_info["batch_sizes_seen"] = sizes
    oracle = _oracle(measured)
    if oracle is not None:
        benchmark.extra_info["oracle"] = oracle[0]
        benchmark.extra_info["adaptive_over_oracle"] = round(record.wall_s / oracle[1].wall_s, 3)
    assert record.tasks >= 1


@pytest.mark.parametrize("size", (1, SWEEP[0]))
def test_raw_dask(benchmark, warm_runtime, spec, measured, size):
    record = _bench(benchmark, warm_runtime, spec, measured, f"raw_dask:{size}")
    static = measured.get(f"static:{size}")
    if isinstance(static, Measured):
        benchmark.extra_info["prefect_over_raw_dask"] = round(static.wall_s / record.wall_s, 3)
    assert record.tasks == -(-ITEMS // size)


# ----------------------------------------------------------------------------- guards


@pytest.fixture
def need(measured, warm_runtime, spec):
    """need(name, ...) -> [Measured, ...]: this session's measurement of each strategy, taken
    now when no benchmark took it, and kept for the other guards."""
    def get(*names: str) -> list[Measured]:
        for text in names:
            if not isinstance(measured.get(text), Measured):
                measured[text] = measure_strategy(None, warm_runtime, spec, Strategy.parse(text),
                                                  bench_rounds(_share(text)))
        return [measured[text] for text in names]
    return get


def _oracle_of(need) -> tuple[str, Measured]:
    """The best static of the whole sweep (every size measured, by a benchmark or now)."""
    names = [f"static:{size}" for size in SWEEP]
    return min(zip(names, need(*names)), key=lambda nm: nm[1].wall_s)


def test_guard_batching_beats_per_item(need):
    (per_item,) = need("per_item")
    name, oracle = _oracle_of(need)
    ratio = per_item.wall_s / oracle.wall_s
    assert ratio >= MIN_PER_ITEM_OVER_ORACLE, (
        f"per_item took only {ratio:.2f}x the best static ({name}: {oracle.wall_s:.3f} s vs "
        f"{per_item.wall_s:.3f} s); batching should win by >= {MIN_PER_ITEM_OVER_ORACLE}x"
    )


def test_guard_adaptive_near_the_oracle(need):
    (adaptive,) = need("adaptive")
    name, oracle = _oracle_of(need)
    ratio = adaptive.wall_s / oracle.wall_s
    assert ratio <= MAX_ADAPTIVE_OVER_ORACLE, (
        f"adaptive took {ratio:.2f}x the best static ({name}: {oracle.wall_s:.3f} s, adaptive "
        f"{adaptive.wall_s:.3f} s, batch sizes {sorted({s for r in adaptive.results for s in r.batch_sizes})}); "
        f"allowed {MAX_ADAPTIVE_OVER_ORACLE}x"
    )


def test_guard_prefect_overhead_per_task_vs_raw_dask(need):
    per_item, raw = need("per_item", "raw_dask:1")
    ratio = per_item.overhead_per_task_s / max(raw.overhead_per_task_s, 1e-4)
    assert ratio <= MAX_PREFECT_OVER_RAW_DASK_PER_TASK, (
        f"a Prefect task costs {ratio:.1f}x a raw Dask task ({per_item.overhead_per_task_s * 1e3:.1f} ms vs "
        f"{raw.overhead_per_task_s * 1e3:.1f} ms); allowed {MAX_PREFECT_OVER_RAW_DASK_PER_TASK}x: is the runtime "
        "profile or the workers' PREFECT_API_URL lost?"
    )


def test_guard_prefect_batched_vs_raw_dask(need):
    size = SWEEP[0]
    static, raw = need(f"static:{size}", f"raw_dask:{size}")
    ratio = static.wall_s / raw.wall_s
    assert ratio <= MAX_STATIC_OVER_RAW_DASK, (
        f"static:{size} took {ratio:.2f}x raw_dask:{size} ({static.wall_s:.3f} s vs {raw.wall_s:.3f} s); "
        f"allowed {MAX_STATIC_OVER_RAW_DASK}x"
    )


def test_guard_controller_cost_is_small_against_task_overhead(need, measured):
    (per_item,) = need("per_item")
    if "controller_s_per_decision" not in measured:  # test_bench_pure.py's benchmark did not run
        measured["controller_s_per_decision"] = controller_s_per_decision(bench_rounds())
    share = measured["controller_s_per_decision"] / per_item.overhead_per_task_s
    assert share <= MAX_CONTROLLER_SHARE_OF_TASK_OVERHEAD, (
        f"one observe+decide costs {share:.1%} of a task's overhead "
        f"({measured['controller_s_per_decision'] * 1e6:.0f} µs vs {per_item.overhead_per_task_s * 1e3:.1f} ms)"
    )
