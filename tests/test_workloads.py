"""The synthetic workload: reproducible items, honest costs, injected faults, flat memory."""

from __future__ import annotations

import dataclasses

import collections
import hashlib
import itertools
import math
import pickle
import random
import statistics
import subprocess
import sys
import tracemalloc

import time

import pytest
from pydantic import ValidationError

from harness.work import kernels
from harness.errors import SpecError
from harness.workload.spec import CostSpec, FaultSpec, ItemsSpec, Phase, WorkloadSpec
from harness.work.faults import PermanentFault, TransientFault
from harness.work.kernels import calibrate_cpu, calibrate_sleep, run_batch, run_item
from harness.work.outcomes import FAILED_INDICES_KEPT, BatchResult, ItemOutcome, Tally, item_digest
from harness.work.synthetic import CHUNK_SIZE, MAX_TRANSIENT_FAILURES, Item, Workload


def make_spec(
    count: int = 10_000,
    *,
    seed: int = 7,
    kind: str = "cpu",
    mean_ms: float = 1.0,
    distribution: str = "constant",
    spread: float = 1.0,
    heavy_fraction: float = 0.05,
    heavy_ms: float = 50.0,
    phases: tuple[Phase, ...] = (),
    transient_rate: float = 0.0,
    permanent_rate: float = 0.0,
    retries: int = 3,
    payload_bytes: int = 0,
) -> WorkloadSpec:
    return WorkloadSpec(
        name="test",
        seed=seed,
        items=ItemsSpec(count=count, payload_bytes=payload_bytes),
        cost=CostSpec(
            kind=kind,
            mean_ms=mean_ms,
            distribution=distribution,
            spread=spread,
            heavy_fraction=heavy_fraction,
            heavy_ms=heavy_ms,
            phases=phases,
        ),
        faults=FaultSpec(transient_rate=transient_rate, permanent_rate=permanent_rate, retries=retries),
    )


def digest_items(items) -> str:
    h = hashlib.sha256()
    for item in items:
        h.update(repr((item.index, item.cost_ms, item.transient_failures, item.permanent)).encode())
        h.update(item.payload)
    return h.hexdigest()


def mean_cost(workload: Workload, start: int = 0, stop: int | None = None) -> float:
    return statistics.fmean(item.cost_ms for item in workload.items(start, stop))


# A spec that exercises every random stream, the payload, drift and a partial last chunk.
RICH_SPEC_CODE = """
from harness.workload.spec import CostSpec, FaultSpec, ItemsSpec, Phase, WorkloadSpec
spec = WorkloadSpec(
    name="rich", seed=12345,
    items=ItemsSpec(count=3 * 4096 + 123, payload_bytes=37),
    cost=CostSpec(kind="cpu", mean_ms=0.5, distribution="lognormal", spread=1.2,
                  phases=(Phase(at=0.4, mean_ms=2.0),)),
    faults=FaultSpec(transient_rate=0.3, permanent_rate=0.05, retries=2),
)
"""


def rich_spec() -> WorkloadSpec:
    namespace: dict = {}
    exec(RICH_SPEC_CODE, namespace)
    return namespace["spec"]


# --- determinism -------------------------------------------------------------------------------


def test_same_seed_gives_the_same_items_in_another_process():
    child = RICH_SPEC_CODE + (
        "import hashlib\n"
        "from harness.work.synthetic import Workload\n"
        "h = hashlib.sha256()\n"
        "for item in Workload(spec).items():\n"
        "    h.update(repr((item.index, item.cost_ms, item.transient_failures, item.permanent)).encode())\n"
        "    h.update(item.payload)\n"
        "print(h.hexdigest())\n"
    )
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == digest_items(Workload(rich_spec()).items())


def test_items_take_and_batches_agree():
    workload = Workload(rich_spec())
    n = len(workload)
    everything = list(workload.items())
    assert [item.index for item in everything] == list(range(n))

    shuffled = list(range(n))
    random.Random(1).shuffle(shuffled)
    taken = {item.index: item for item in workload.take(shuffled)}
    assert [taken[i] for i in range(n)] == everything

    assert [item for batch in workload.batches(1000) for item in batch] == everything
    assert [len(b) for b in workload.batches(1000)] == [1000] * (n // 1000) + [n % 1000]
    assert [item for batch in workload.batches(333, shuffled) for item in batch] == [everything[i] for i in shuffled]

    # ranges that start and stop inside chunks, across chunk boundaries
    for start, stop in [(0, 1), (4090, 4100), (4096, 8192), (5000, 12_000), (n - 5, n + 10)]:
        assert list(workload.items(start, stop)) == everything[start:stop]


def test_a_fresh_workload_with_the_same_seed_matches_and_another_seed_differs():
    first = digest_items(Workload(rich_spec()).items())
    assert digest_items(Workload(rich_spec()).items()) == first
    other = rich_spec()
    other = dataclasses.replace(other, seed=54321)
    assert digest_items(Workload(other).items()) != first


def test_costs_do_not_depend_on_fault_rates_or_item_count():
    base = Workload(make_spec(10_000, distribution="lognormal"))
    faulty = Workload(make_spec(10_000, distribution="lognormal", transient_rate=0.5, permanent_rate=0.2))
    longer = Workload(make_spec(20_000, distribution="lognormal"))
    costs = [item.cost_ms for item in base.items()]
    assert [item.cost_ms for item in faulty.items()] == costs
    assert [item.cost_ms for item in longer.items(0, 10_000)] == costs


def test_payload_is_deterministic_with_the_requested_length():
    workload = Workload(make_spec(100, payload_bytes=37))
    items = list(workload.items())
    assert all(len(item.payload) == 37 for item in items)
    assert len({item.payload for item in items}) == 100
    assert workload.take([42])[0].payload == items[42].payload
    assert all(item.payload == b"" for item in Workload(make_spec(100)).items())


def test_items_pickle_compactly_and_the_workload_pickles():
    workload = Workload(make_spec(100, payload_bytes=16, distribution="lognormal"))
    item = workload.take([99])[0]
    assert pickle.loads(pickle.dumps(item)) == item
    assert len(pickle.dumps(item)) < 120 + 16
    copy = pickle.loads(pickle.dumps(workload))
    assert list(copy.items()) == list(workload.items())


def test_sample_indices_are_strided_over_the_whole_range():
    workload = Workload(make_spec(10_000))
    sample = workload.sample_indices(100)
    assert len(sample) == 100 == len(set(sample))
    assert sample == sorted(sample)
    assert sample[0] < 100 and sample[-1] >= 9_900
    assert {b - a for a, b in zip(sample, sample[1:])} == {100}
    assert workload.sample_indices(10_000) == workload.sample_indices(50_000) == list(range(10_000))
    assert workload.sample_indices(0) == []


def test_sample_keeps_the_drift_phases():
    workload = Workload(make_spec(10_000, mean_ms=1.0, phases=(Phase(at=0.5, mean_ms=3.0),)))
    costs = [item.cost_ms for item in workload.take(workload.sample_indices(10))]
    assert costs == [1.0] * 5 + [3.0] * 5


def test_batches_reject_a_size_below_one():
    with pytest.raises(ValueError):
        Workload(make_spec(10)).batches(0)


def test_take_rejects_indices_out_of_range():
    workload = Workload(make_spec(10))
    with pytest.raises(IndexError):
        workload.take([10])
    with pytest.raises(IndexError):
        workload.take([-1])


# --- costs -------------------------------------------------------------------------------------

COUNT_FOR_MEANS = 200_000


@pytest.mark.parametrize(
    ("distribution", "spread", "expected_mean"),
    [
        ("constant", 1.0, 2.0),
        ("uniform", 0.5, 2.0),
        ("lognormal", 1.0, 2.0),
        ("pareto", 3.0, 2.0),
        ("bimodal", 1.0, 0.9 * 2.0 + 0.1 * 20.0),  # light items cost mean_ms, heavy ones heavy_ms
    ],
)
def test_cost_distribution_has_the_requested_mean(distribution, spread, expected_mean):
    workload = Workload(
        make_spec(
            COUNT_FOR_MEANS, mean_ms=2.0, distribution=distribution, spread=spread, heavy_fraction=0.1, heavy_ms=20.0
        )
    )
    costs = [item.cost_ms for item in workload.items()]
    mean = statistics.fmean(costs)
    standard_error = statistics.pstdev(costs) / math.sqrt(len(costs))
    assert abs(mean - expected_mean) <= 5 * standard_error + 1e-12
    assert min(costs) >= 0
    assert workload.expected_compute_s == pytest.approx(math.fsum(costs) / 1000, rel=1e-9)
    if distribution != "constant":
        assert len(set(costs)) > 1


def test_distribution_shapes():
    uniform = [i.cost_ms for i in Workload(make_spec(50_000, distribution="uniform", spread=0.5)).items()]
    assert 0.5 <= min(uniform) < 0.51 and 1.49 < max(uniform) <= 1.5
    pareto = [i.cost_ms for i in Workload(make_spec(50_000, distribution="pareto", spread=3.0)).items()]
    assert min(pareto) >= 2.0 / 3.0  # xm = m * (alpha - 1) / alpha
    bimodal = Workload(make_spec(50_000, distribution="bimodal", heavy_fraction=0.1, heavy_ms=20.0))
    assert {i.cost_ms for i in bimodal.items()} == {1.0, 20.0}


def test_drift_phase_changes_the_mean_from_its_start():
    count = 100_000
    spec = make_spec(count, mean_ms=1.0, distribution="lognormal", spread=0.5, phases=(Phase(at=0.5, mean_ms=4.0),))
    workload = Workload(spec)
    assert mean_cost(workload, 0, count // 2) == pytest.approx(1.0, rel=0.02)
    assert mean_cost(workload, count // 2) == pytest.approx(4.0, rel=0.02)
    # the phase rescales the same draws
    flat = Workload(make_spec(count, mean_ms=1.0, distribution="lognormal", spread=0.5))
    drifted, base = workload.take([count // 2 + 1])[0], flat.take([count // 2 + 1])[0]
    assert drifted.cost_ms == pytest.approx(4.0 * base.cost_ms)


def test_drift_boundary_is_the_first_index_at_or_after_the_fraction():
    workload = Workload(make_spec(10, mean_ms=1.0, phases=(Phase(at=0.25, mean_ms=2.0), Phase(at=0.75, mean_ms=5.0))))
    # ceil(2.5) = 3, ceil(7.5) = 8
    assert [item.cost_ms for item in workload.items()] == [1.0] * 3 + [2.0] * 5 + [5.0] * 2


def test_bimodal_drift_moves_light_items_and_keeps_heavy_ones():
    spec = make_spec(
        20_000, mean_ms=1.0, distribution="bimodal", heavy_fraction=0.2, heavy_ms=30.0, phases=(Phase(0.5, 3.0),)
    )
    workload = Workload(spec)
    assert {item.cost_ms for item in workload.items(0, 10_000)} == {1.0, 30.0}
    assert {item.cost_ms for item in workload.items(10_000)} == {3.0, 30.0}


def test_expected_compute_s_sums_the_costs():
    workload = Workload(rich_spec())
    assert workload.expected_compute_s == pytest.approx(math.fsum(i.cost_ms for i in workload.items()) / 1000)
    assert Workload(make_spec(12_345, mean_ms=2.0)).expected_compute_s == pytest.approx(12_345 * 2.0 / 1000)


def measured_ratio(cost_kind: str, cost_ms: float, count: int) -> float:
    """Time the kernel took per item over the time requested, for one batch of `count` items."""
    items = [Item(i, cost_ms, 0, False, b"") for i in range(count)]
    cpu_started = time.thread_time()
    result = run_batch(items, cost_kind, retries=0)
    cpu_s = time.thread_time() - cpu_started
    assert all(outcome.ok for outcome in result.outcomes)
    # The cpu kernel is judged by the CPU time it burns (what calibration promises), so other
    # processes competing for the cores cannot fail it; sleep by the wall time it waits.
    return (cpu_s if cost_kind == "cpu" else result.compute_s) / count * 1000 / cost_ms


# A calibration holds for the moment it was taken: these VMs switch between a fast and a slow
# state (~12,000 vs ~7,000 LCG iterations per CPU-ms, states lasting ~0.1-2 s) and other
# processes on the shared cores slow the loop and delay wake-ups, so under load (load average
# 10-14 on 2 cores) single calibrate-then-measure rounds landed at 0.6-1.7. The kernel is judged
# over a fixed number of short rounds (a fresh calibration, then a batch of ~10 ms) by the median
# round, which the few rounds a speed change or a burst of load catches cannot move: over 20 runs
# under that load the medians were 0.96-1.06 (cpu), 1.01-1.16 (sleep of 1 ms: the calibration
# subtracts the median wake-up delay, the mean under load is larger) and 1.00-1.05 (sleep of
# 5 ms). A unit or formula bug is off by 2x or more.
HONESTY_ROUNDS = 15
HONESTY_TOLERANCE = 0.2


def median_ratio(cost_kind: str, cost_ms: float, count: int) -> tuple[float, list[float]]:
    calibrate = calibrate_cpu if cost_kind == "cpu" else calibrate_sleep
    ratios = []
    for _ in range(HONESTY_ROUNDS):
        calibrate(force=True)
        ratios.append(measured_ratio(cost_kind, cost_ms, count))
    return statistics.median(ratios), sorted(ratios)


@pytest.mark.parametrize(("cost_kind", "cost_ms", "count"), [
    ("cpu", 0.05, 200), ("cpu", 0.2, 50), ("cpu", 2.0, 5), ("sleep", 1.0, 10), ("sleep", 5.0, 2)
])
def test_kernel_takes_the_requested_time(cost_kind, cost_ms, count):
    median, ratios = median_ratio(cost_kind, cost_ms, count)
    assert abs(median - 1) <= HONESTY_TOLERANCE, ratios


def test_cpu_calibration_is_cached_per_process():
    rate = calibrate_cpu()
    assert calibrate_cpu() == rate
    assert kernels._cpu_rate == rate


def test_unknown_cost_kind_is_rejected():
    with pytest.raises(SpecError):
        run_item(Item(0, 0.1, 0, False, b""), "gpu")


@pytest.mark.parametrize(
    "bad",
    [
        {"seed": -1},
        {"distribution": "pareto", "spread": 1.0},
        {"distribution": "zipf"},
        {"kind": "gpu"},
        {"phases": (Phase(0.6, 1.0), Phase(0.3, 2.0))},
    ],
)
def test_specs_generation_cannot_honour_cannot_be_built(bad):
    """The spec model holds the rules a file is checked by, for specs built in code too."""
    with pytest.raises(ValidationError):
        make_spec(**bad)


# --- faults ------------------------------------------------------------------------------------


def test_fault_rates_match_the_spec():
    count = 100_000
    workload = Workload(make_spec(count, transient_rate=0.2, permanent_rate=0.05))
    permanent = failed_first = failed_twice = 0
    for item in workload.items():
        permanent += item.permanent
        failed_first += item.transient_failures >= 1
        failed_twice += item.transient_failures >= 2
    assert abs(permanent / count - 0.05) <= 0.005
    assert abs(failed_first / count - 0.2) <= 0.008  # ~6 standard errors
    assert abs(failed_twice / count - 0.04) <= 0.004  # consecutive failures: 0.2 ** 2


def test_no_faults_without_rates_and_transient_failures_are_capped():
    assert not any(i.permanent or i.transient_failures for i in Workload(make_spec(10_000)).items())
    stubborn = Workload(make_spec(10_000, transient_rate=0.99))
    assert max(i.transient_failures for i in stubborn.items()) == MAX_TRANSIENT_FAILURES


def test_run_item_raises_faults_carrying_index_and_attempt():
    flaky = Item(5, 0.01, 2, False, b"")
    for attempt in (1, 2):
        with pytest.raises(TransientFault) as caught:
            run_item(flaky, "cpu", attempt)
        assert (caught.value.index, caught.value.attempt) == (5, attempt)
    assert run_item(flaky, "cpu", 3).attempts == 3

    broken = Item(6, 0.01, 1, True, b"")
    for attempt in (1, 2, 10):
        with pytest.raises(PermanentFault) as caught:
            run_item(broken, "cpu", attempt)
        assert (caught.value.index, caught.value.attempt) == (6, attempt)


@pytest.mark.parametrize("fault_type", [TransientFault, PermanentFault])
def test_faults_survive_pickling(fault_type):
    fault = fault_type(17, 3)
    copy = pickle.loads(pickle.dumps(fault))
    assert type(copy) is fault_type
    assert (copy.index, copy.attempt) == (17, 3)
    assert str(copy) == str(fault) and "17" in str(fault)


def test_run_item_returns_the_reversed_payload_and_its_compute_time():
    outcome = run_item(Item(3, 0.05, 0, False, b"abc"), "cpu")
    assert outcome == ItemOutcome(3, True, outcome.compute_s, 1, b"cba", "")
    assert outcome.compute_s > 0


def test_run_batch_retries_transient_faults_and_never_permanent_ones():
    items = [
        Item(0, 0.01, 0, False, b"a0"),
        Item(1, 0.01, 2, False, b"a1"),  # succeeds on attempt 3
        Item(2, 0.01, 3, False, b"a2"),  # succeeds on attempt 4 = retries + 1
        Item(3, 0.01, 4, False, b"a3"),  # out of retries
        Item(4, 0.01, 2, True, b"a4"),  # permanent: one attempt only
    ]
    result = run_batch(items, "cpu", retries=3)
    assert isinstance(result, BatchResult)
    by_index = {o.index: o for o in result.outcomes}
    assert [(o.ok, o.attempts, o.error) for o in result.outcomes] == [
        (True, 1, ""),
        (True, 3, ""),
        (True, 4, ""),
        (False, 4, "TransientFault"),
        (False, 1, "PermanentFault"),
    ]
    assert by_index[1].payload == b"1a" and by_index[3].payload == b"" and by_index[3].compute_s == 0.0
    assert result.compute_s == pytest.approx(sum(o.compute_s for o in result.outcomes))
    assert result.started <= result.finished

    no_retries = run_batch(items, "cpu", retries=0)
    assert [(o.ok, o.attempts) for o in no_retries.outcomes] == [(True, 1)] + [(False, 1)] * 4


# --- memory ------------------------------------------------------------------------------------


MEMORY_ITEMS = 2_000_000
MEMORY_WINDOW = 200_000
MB = 1024 * 1024


def traced_window(items, n: int) -> tuple[int, int]:
    """Consume n items with tracemalloc on; (peak, growth) in bytes over the window."""
    tracemalloc.start()
    try:
        collections.deque(itertools.islice(items, n), maxlen=1)  # consume without keeping
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, current


def test_memory_stays_flat_while_iterating_two_million_items():
    # Tracing every allocation of 2M items costs ~10 s on these machines, so the item path is
    # traced over its first and last 200k items (a leak or a growing cache shows in both windows
    # as growth, and in the last as a higher peak); the cost-only path is traced end to end.
    workload = Workload(make_spec(MEMORY_ITEMS, distribution="lognormal", transient_rate=0.1, permanent_rate=0.01))
    items = workload.items()
    peak_first, growth_first = traced_window(items, MEMORY_WINDOW)
    collections.deque(itertools.islice(items, MEMORY_ITEMS - 2 * MEMORY_WINDOW), maxlen=1)
    peak_last, growth_last = traced_window(items, MEMORY_WINDOW)
    assert next(items, None) is None  # all 2M were generated

    assert peak_first < 4 * MB
    assert peak_last < peak_first + 0.5 * MB  # no growth between 200k and 2M items
    assert growth_first < 2 * MB and growth_last < 2 * MB  # only the few cached chunks (~1 MB) stay

    tracemalloc.start()
    try:
        assert workload.expected_compute_s == pytest.approx(MEMORY_ITEMS * 1.0 / 1000, rel=0.01)
        _, peak_costs = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_costs < 1 * MB


# --- tally -------------------------------------------------------------------------------------


def run_in_batches(workload: Workload, size: int, indices) -> list[BatchResult]:
    return [run_batch(batch, "cpu", workload.retries) for batch in workload.batches(size, indices)]


def test_tally_checksum_is_independent_of_order_and_batching():
    workload = Workload(make_spec(600, mean_ms=0.005, transient_rate=0.3, permanent_rate=0.05, payload_bytes=24))
    in_order = Tally()
    for result in run_in_batches(workload, 64, None):
        in_order.add_batch(result)

    shuffled = list(range(len(workload)))
    random.Random(3).shuffle(shuffled)
    shuffled_tally = Tally()
    outcomes = [o for result in run_in_batches(workload, 7, shuffled) for o in result.outcomes]
    random.Random(4).shuffle(outcomes)
    for outcome in outcomes:
        shuffled_tally.add(outcome)

    for tally in (in_order, shuffled_tally):
        assert tally.items == 600
        assert 0 < tally.items_failed < 100
    assert shuffled_tally.checksum == in_order.checksum
    assert (shuffled_tally.items_ok, shuffled_tally.items_failed, shuffled_tally.retries) == (
        in_order.items_ok,
        in_order.items_failed,
        in_order.retries,
    )
    assert sorted(shuffled_tally.failed_indices) == sorted(in_order.failed_indices)
    assert shuffled_tally.errors == in_order.errors
    expected = sum(item_digest(o) for o in outcomes if o.ok) % 2**64
    assert in_order.checksum == expected
    assert in_order.retries == sum(o.attempts - 1 for o in outcomes)


def test_tally_counts_failures_reported_outside_a_batch_and_bounds_their_indices():
    tally = Tally()
    for index in range(FAILED_INDICES_KEPT + 50):
        tally.add_failure(index, attempts=4, error="TransientFault")
    tally.add(ItemOutcome(9, True, 0.25, 2, b"xy", ""))
    assert (tally.items, tally.items_ok, tally.items_failed) == (FAILED_INDICES_KEPT + 51, 1, FAILED_INDICES_KEPT + 50)
    assert tally.retries == 3 * (FAILED_INDICES_KEPT + 50) + 1
    assert tally.failed_indices == list(range(FAILED_INDICES_KEPT))
    assert tally.compute_s == 0.25
    assert tally.errors == {"TransientFault": FAILED_INDICES_KEPT + 50}


def test_tally_merge_equals_one_tally():
    outcomes = [
        ItemOutcome(i, True, 0.001, 1 + i % 3, bytes([i % 256]) * 4, "")
        if i % 5
        else ItemOutcome(i, False, 0.0, 1, b"", "PermanentFault")
        for i in range(300)
    ]
    whole, left, right = Tally(), Tally(), Tally()
    for outcome in outcomes:
        whole.add(outcome)
    for outcome in outcomes[:120]:
        left.add(outcome)
    for outcome in outcomes[120:]:
        right.add(outcome)
    left.merge(right)
    assert left.compute_s == pytest.approx(whole.compute_s)
    left.compute_s = whole.compute_s  # float sums in another order may differ in the last bit
    assert left == whole


def test_item_digest_covers_index_and_payload():
    a = ItemOutcome(1, True, 0.0, 1, b"abc", "")
    assert item_digest(a) == item_digest(a._replace(compute_s=5.0, attempts=3))
    assert item_digest(a) != item_digest(a._replace(index=2))
    assert item_digest(a) != item_digest(a._replace(payload=b"abd"))


def test_chunk_size_is_what_the_tests_assume():
    # RICH_SPEC_CODE spans three full chunks and a partial one
    assert CHUNK_SIZE == 4096


def test_the_modules_import_neither_prefect_nor_dask():
    # they are pickled to Dask workers and used by every strategy, including the no-Prefect references
    child = (
        "import sys, harness.work.synthetic, harness.work.kernels, harness.work.faults, harness.work.outcomes\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'dask', 'distributed')))\n"
    )
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"


# ---------------------------------------------------------------- batches built where they run


def test_item_slices_travel_small_and_build_the_same_items_on_the_other_side():
    """An ItemSlice pickles as spec + indices + payload bytes, and unpickled (as on a worker)
    gives exactly the Items the flow would have built, for ranges and for samples."""
    workload = Workload(make_spec(9_000, distribution="lognormal", payload_bytes=40,
                                  transient_rate=0.2, permanent_rate=0.05))
    everything = list(workload.items())
    sample = workload.sample_indices(700)
    for indices, expected in ((None, everything), (sample, [everything[i] for i in sample])):
        batches = [pickle.loads(pickle.dumps(b)) for b in workload.batches(4_100, indices)]
        assert [item for batch in batches for item in batch] == expected
        first = batches[0]
        assert (first[0], first[-1], first[3:5]) == (expected[0], expected[len(first) - 1], expected[3:5])
        # the payload bytes travel (transfer is paid), the Items themselves do not
        assert len(first.payloads) == 40 * len(first)
        assert len(pickle.dumps(first)) < len(pickle.dumps(list(first))) * 0.9


def test_a_cursor_hands_out_consecutive_batches_of_any_size():
    workload = Workload(make_spec(1_000, payload_bytes=8))
    cursor = workload.cursor()
    sizes = [1, 7, 500, 1_000]
    batches = [cursor.take(n) for n in sizes]
    assert [len(b) for b in batches] == [1, 7, 500, 492] and cursor.remaining == 0
    assert [item for b in batches for item in b] == list(workload.items())
    assert len(cursor.take(5)) == 0


def test_a_folded_batch_tallies_as_its_outcomes_would():
    workload = Workload(make_spec(600, mean_ms=0.001, payload_bytes=16, transient_rate=0.3, permanent_rate=0.1))
    items = list(workload.items())
    by_outcomes, folded = Tally(), Tally()
    by_outcomes.add_batch(run_batch(items, "cpu", 2))
    result = pickle.loads(pickle.dumps(kernels.run_batch_folded(items, "cpu", 2)))
    folded.add_batch(result)
    assert len(pickle.dumps(result)) < 2_000  # no per-item outcome travels back
    for name in ("items_ok", "items_failed", "retries", "checksum", "failed_indices", "errors"):
        assert getattr(folded, name) == getattr(by_outcomes, name), name
    assert folded.items_failed > 0 and folded.retries > 0
