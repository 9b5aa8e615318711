"""The synthetic workload: seeded lazy items, calibrated cost kernels, fault injection.

Everything here runs in the flow process *and* on Dask workers (item and batch functions
travel by pickling), so this module imports neither Prefect nor Dask, prints nothing and
keeps no per-item state.

Items
    `Workload(spec)` describes `spec.items.count` items without holding them. Items are
    generated in fixed chunks of `CHUNK_SIZE` consecutive indices, each chunk from its own
    generators seeded by `(seed, chunk number, stream)`; so the same seed gives the same
    items in any process and through any access path (`items()`, `take()`, `batches()`),
    and memory stays flat in the item count (a few chunks are cached, nothing else).
    Each chunk always draws `CHUNK_SIZE` values and is then cut, so an item's base draws do
    not depend on the item count either. Costs, permanent faults and transient faults come
    from separate streams, so changing e.g. the fault rate leaves the costs unchanged.

Costs (milliseconds, per item; `m` is the mean in force at the item's index)
    constant   m
    uniform    m * (1 + spread * U(-1, 1)), clipped at 0 (only matters when spread > 1)
    lognormal  m * exp(spread * Z - spread**2 / 2)           (mean m; spread is sigma)
    pareto     xm * (1 + Lomax(alpha)), alpha = spread > 1, xm = m * (alpha - 1) / alpha   (mean m)
    bimodal    heavy_ms with probability heavy_fraction, else m: *light* items cost mean_ms,
               so the distribution's mean is (1 - heavy_fraction) * m + heavy_fraction * heavy_ms.
    Drift: from index ceil(at * count) on, m becomes that phase's mean_ms (every draw is
    scaled by phase.mean_ms / cost.mean_ms; bimodal heavy items keep heavy_ms).

Faults
    permanent           Bernoulli(permanent_rate): every attempt raises PermanentFault.
    transient_failures  the number of consecutive failing attempts when each attempt fails
                        with probability transient_rate: geometric(1 - rate) - 1, capped at 255.
                        Attempts 1..k raise TransientFault, attempt k + 1 succeeds.
    A permanent item raises PermanentFault on every attempt, whatever its transient count.

Kernels
    cpu    a pure-Python integer LCG loop (holds the GIL); iterations = cost_ms * calibrate_cpu().
    sleep  time.sleep (GIL released), shortened by the calibrated mean overshoot of time.sleep
           on this process (calibrate_sleep()) so the mean stays honest for costs above ~0.2 ms.
    compute_s is measured with time.perf_counter around the work only.
"""

from __future__ import annotations

import itertools
import math
import operator
import statistics
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from harness.errors import SpecError
from harness.workload.vocabulary import COST_KINDS

if TYPE_CHECKING:
    from harness.workload.spec import WorkloadSpec

# Items per generated chunk. Large enough that numpy's per-call overhead (a few µs per draw)
# is spread over thousands of items; small enough that a chunk as Python lists is ~150 KB,
# so caching a few keeps memory flat whatever the item count.
CHUNK_SIZE = 4096

# Chunks kept by the random-access cache: a batch straddling a chunk boundary plus a strided
# sample or a second consumer interleaved with it, at under 1 MB in total.
CHUNK_CACHE_SIZE = 4

# Cap on transient failures per item: the count must stay small (it travels in every Item)
# and no sane retry budget is larger; at transient_rate 0.9 P(k > 255) is ~2e-12.
MAX_TRANSIENT_FAILURES = 255

# Failed indices a Tally keeps for the report: enough to name examples, bounded so a run where
# every item fails keeps memory flat.
FAILED_INDICES_KEPT = 1000

# Failed items a Tally keeps with their exception message: the report lists "the first few".
FAILURE_EXAMPLES_KEPT = 5

CHECKSUM_MODULUS = 2**64

# Independent random streams per chunk (the third seed word), so that costs, permanent faults and
# transient faults can be changed independently of each other.
_COST_STREAM = 0
_PERMANENT_STREAM = 1
_TRANSIENT_STREAM = 2

# CPU calibration: rounds of a fixed loop (~1-3 ms at 50-130 ns per iteration) until the budget is
# spent, each timed in the thread's CPU time, and the median round taken. Wall time counted the
# time the process waited for a core: under load (2 cores, load average 7) all the rounds of a
# calibration could be preempted, and the rate came out 2-4x too low for the process's life.
# CPU time leaves only the speed the loop really runs at, whose typical value is the median.
# The budget (~40 ms of wall time, at least 5 rounds) is paid once per process.
_CPU_CALIBRATION_ITERATIONS = 20_000
_CPU_CALIBRATION_MIN_ROUNDS = 5
_CPU_CALIBRATION_MAX_ROUNDS = 60
_CPU_CALIBRATION_BUDGET_S = 0.04

# Sleep calibration: time.sleep overshoots by a roughly constant wake-up latency (measured 80-150
# µs by this calibration on 2-core machines: 50 µs timer slack plus scheduling). The median
# overshoot of short sleeps is subtracted from every sleep. Clamped so a disturbed calibration
# cannot turn sleeps into no-ops.
_SLEEP_CALIBRATION_S = 0.0001
_SLEEP_CALIBRATION_ROUNDS = 15
_SLEEP_OVERSHOOT_MAX_S = 0.0005

# The LCG of the cpu kernel (glibc's constants): integer multiply-add-mask, no allocation beyond
# small ints, so the cost per iteration is steady.
_LCG_MULTIPLIER = 1103515245
_LCG_INCREMENT = 12345
_LCG_MASK = 0x7FFFFFFF


# ---------------------------------------------------------------------------------------------
# Faults


class InjectedFault(Exception):
    """Base of the faults the workload injects; carries the item index and the attempt number."""

    kind = "injected"

    def __init__(self, index: int, attempt: int) -> None:
        # args = (index, attempt) so the default exception pickling rebuilds it as cls(*args).
        super().__init__(index, attempt)
        self.index = index
        self.attempt = attempt

    def __str__(self) -> str:
        return f"{self.kind} fault injected on item {self.index}, attempt {self.attempt}"


class TransientFault(InjectedFault):
    """A retryable fault: a later attempt on the same item succeeds."""

    kind = "transient"


class PermanentFault(InjectedFault):
    """A fault that every attempt on the item raises: never retry it."""

    kind = "permanent"


# ---------------------------------------------------------------------------------------------
# Records that travel between flow and workers


class Item(NamedTuple):
    index: int
    cost_ms: float
    transient_failures: int
    permanent: bool
    payload: bytes


class ItemOutcome(NamedTuple):
    index: int
    ok: bool
    compute_s: float
    attempts: int
    payload: bytes  # output payload (the input reversed); b"" when failed
    error: str  # "" when ok, else the exception class name
    message: str = ""  # the exception's message when failed (a user's task: the report lists a few)


class BatchResult(NamedTuple):
    outcomes: tuple[ItemOutcome, ...]
    compute_s: float  # sum of the outcomes' compute_s
    started: float  # time.time() on the worker when the batch function began
    finished: float  # time.time() when it ended


class FoldedBatch(NamedTuple):
    """A BatchResult folded into a Tally where it ran: what a batched task sends back.

    The per-item outcomes (each with its output payload) are what the flow would fold anyway;
    folding them on the worker sends a few hundred bytes instead of ~1.2 MB per 4,096 items
    of 256 B, and takes the unpickling and the per-item fold off the flow process
    (docs/runtime-notes.md, "Where static:N loses to raw_dask:N")."""

    tally: Tally
    compute_s: float
    started: float
    finished: float


# ---------------------------------------------------------------------------------------------
# The workload


class _Chunk(NamedTuple):
    costs: list[float]
    transient: list[int]
    permanent: list[bool]


class Workload:
    """The items of a WorkloadSpec: lazy, seeded, reproducible; memory flat in the item count."""

    def __init__(self, spec: WorkloadSpec) -> None:
        # `spec` was validated when it was built (harness.workload.spec): every rule generation relies on.
        self.spec = spec
        self._count = spec.items.count
        self._seed = spec.seed
        self._cost = spec.cost
        self._faults = spec.faults
        self._payload_bytes = spec.items.payload_bytes
        self._seed_bytes = (spec.seed % 2**64).to_bytes(8, "little")
        # Drift: first index of each phase, and the mean in force before/after each boundary.
        self._bounds = np.array([math.ceil(p.at * self._count) for p in spec.cost.phases], dtype=np.int64)
        self._means = np.array([spec.cost.mean_ms] + [p.mean_ms for p in spec.cost.phases], dtype=np.float64)
        self._cache: OrderedDict[int, _Chunk] = OrderedDict()
        self._lock = threading.Lock()
        self._expected_compute_s: float | None = None

    def __reduce__(self):
        return (Workload, (self.spec,))

    def __repr__(self) -> str:
        return f"Workload({self.spec.name!r}, count={self._count}, seed={self._seed})"

    def __len__(self) -> int:
        return self._count

    @property
    def retries(self) -> int:
        return self._faults.retries

    # -- access paths -----------------------------------------------------------------------

    def items(self, start: int = 0, stop: int | None = None) -> Iterator[Item]:
        """Items start..stop-1 in index order, generated a chunk at a time."""
        stop = self._count if stop is None else min(stop, self._count)
        if start < 0 or stop < 0:
            raise ValueError(f"item range must not be negative, got start={start}, stop={stop}")
        return self._iter_items(start, stop)

    def _iter_items(self, start: int, stop: int, payloads: Iterator[bytes] | None = None) -> Iterator[Item]:
        for chunk_no in range(start // CHUNK_SIZE, -(-stop // CHUNK_SIZE)):
            base = chunk_no * CHUNK_SIZE
            lo = max(start, base) - base
            hi = min(stop, base + CHUNK_SIZE) - base
            if lo >= hi:
                continue
            chunk = self._chunk(chunk_no)
            indices = range(base + lo, base + hi)
            if payloads is not None:
                chunk_payloads: Iterator[bytes] = payloads
            elif self._payload_bytes:
                chunk_payloads = map(self._payload, indices)
            else:
                chunk_payloads = itertools.repeat(b"")
            # tuple.__new__ over zip builds each Item in C (what Item._make does), about twice as
            # fast as calling Item(...) per item.
            fields = zip(indices, chunk.costs[lo:hi], chunk.transient[lo:hi], chunk.permanent[lo:hi], chunk_payloads)
            yield from map(tuple.__new__, itertools.repeat(Item), fields)

    def take(self, indices: Sequence[int], payloads: Iterator[bytes] | None = None) -> list[Item]:
        """The items at these indices (any order, repeats allowed); `payloads`, if given, are
        theirs in the same order (an ItemSlice's, already made in the flow)."""
        out = []
        chunk_no, chunk = -1, None
        for raw in indices:
            index = operator.index(raw)  # numpy ints -> int, so Items pickle compactly
            if not 0 <= index < self._count:
                raise IndexError(f"item index {index} out of range 0..{self._count - 1}")
            if index // CHUNK_SIZE != chunk_no:
                chunk_no = index // CHUNK_SIZE
                chunk = self._chunk(chunk_no)
            j = index - chunk_no * CHUNK_SIZE
            payload = self._payload(index) if payloads is None else next(payloads)
            out.append(Item(index, chunk.costs[j], chunk.transient[j], chunk.permanent[j], payload))
        return out

    def slice(self, indices: Sequence[int]) -> ItemSlice:
        """The items at these indices as an ItemSlice: their payload bytes now, the rest where
        they are iterated."""
        for index in (indices[0], indices[-1]) if isinstance(indices, range) and indices else indices:
            if not 0 <= index < self._count:
                raise IndexError(f"item index {index} out of range 0..{self._count - 1}")
        return ItemSlice(self, indices, self._payload_blob(indices))

    def cursor(self, indices: Sequence[int] | None = None) -> ItemCursor:
        """Consecutive batches of any size over every item (or over `indices`), as ItemSlices."""
        order: Sequence[int] = range(self._count) if indices is None else [operator.index(i) for i in indices]
        return ItemCursor(len(order), lambda lo, hi: self.slice(order[lo:hi]))

    def sample_indices(self, m: int) -> list[int]:
        """m indices spread evenly over the whole range (one from the middle of each of m equal
        strides), so a sample keeps the cost distribution and every drift phase; all when m >= len."""
        n = self._count
        if m >= n:
            return list(range(n))
        if m <= 0:
            return []
        return [(2 * k + 1) * n // (2 * m) for k in range(m)]

    def batches(self, size: int, indices: Sequence[int] | None = None) -> Iterator[ItemSlice]:
        """Consecutive batches of `size` items (the last may be shorter), as ItemSlices."""
        if size < 1:
            raise ValueError(f"batch size must be at least 1, got {size}")
        return self._iter_batches(size, indices)

    def _iter_batches(self, size: int, indices: Sequence[int] | None) -> Iterator[ItemSlice]:
        cursor = self.cursor(indices)
        while batch := cursor.take(size):
            yield batch

    @property
    def expected_compute_s(self) -> float:
        """Sum of cost_ms / 1000 over all items (the work the kernels are asked to do)."""
        if self._expected_compute_s is None:
            total_ms = 0.0
            for chunk_no in range(-(-self._count // CHUNK_SIZE)):
                n = min(CHUNK_SIZE, self._count - chunk_no * CHUNK_SIZE)
                total_ms += float(self._chunk_costs(chunk_no)[:n].sum())
            self._expected_compute_s = total_ms / 1000.0
        return self._expected_compute_s

    # -- generation ---------------------------------------------------------------------------

    def _payload(self, index: int) -> bytes:
        n = self._payload_bytes
        if not n:
            return b""
        pattern = index.to_bytes(8, "little") + self._seed_bytes
        return (pattern * -(-n // len(pattern)))[:n]

    def _payload_blob(self, indices: Sequence[int]) -> bytes:
        """The payloads of these items back to back, as `_payload` makes them one by one, in a
        few numpy calls (~0.1 µs per item of 256 B, against ~1 µs for `_payload`)."""
        n = self._payload_bytes
        if not n or not len(indices):
            return b""
        pattern = np.empty((len(indices), 2), dtype="<u8")
        pattern[:, 0] = np.asarray(indices, dtype=np.int64)
        pattern[:, 1] = self._seed % 2**64
        repeats = -(-n // pattern.itemsize // 2)
        return np.tile(pattern.view(np.uint8), (1, repeats))[:, :n].tobytes()

    def _chunk(self, chunk_no: int) -> _Chunk:
        with self._lock:
            chunk = self._cache.get(chunk_no)
            if chunk is not None:
                self._cache.move_to_end(chunk_no)
                return chunk
        chunk = self._make_chunk(chunk_no)
        with self._lock:
            self._cache[chunk_no] = chunk
            self._cache.move_to_end(chunk_no)
            while len(self._cache) > CHUNK_CACHE_SIZE:
                self._cache.popitem(last=False)
        return chunk

    def _make_chunk(self, chunk_no: int) -> _Chunk:
        n = min(CHUNK_SIZE, self._count - chunk_no * CHUNK_SIZE)
        costs = self._chunk_costs(chunk_no)[:n]

        permanent_rate = self._faults.permanent_rate
        if permanent_rate > 0:
            rng = np.random.default_rng([self._seed, chunk_no, _PERMANENT_STREAM])
            permanent = rng.random(CHUNK_SIZE)[:n] < permanent_rate
        else:
            permanent = np.zeros(n, dtype=bool)

        transient_rate = self._faults.transient_rate
        if transient_rate <= 0:
            transient = np.zeros(n, dtype=np.int64)
        elif transient_rate >= 1:
            transient = np.full(n, MAX_TRANSIENT_FAILURES, dtype=np.int64)
        else:
            rng = np.random.default_rng([self._seed, chunk_no, _TRANSIENT_STREAM])
            failures = rng.geometric(1.0 - transient_rate, CHUNK_SIZE)[:n] - 1
            transient = np.minimum(failures, MAX_TRANSIENT_FAILURES)
        return _Chunk(costs.tolist(), transient.tolist(), permanent.tolist())

    def _chunk_costs(self, chunk_no: int) -> np.ndarray:
        """Costs in ms of a full chunk (CHUNK_SIZE values; the caller cuts the last chunk)."""
        cost = self._cost
        base = chunk_no * CHUNK_SIZE
        indices = np.arange(base, base + CHUNK_SIZE, dtype=np.int64)
        means = self._means[np.searchsorted(self._bounds, indices, side="right")]
        if cost.distribution == "constant":
            return means
        rng = np.random.default_rng([self._seed, chunk_no, _COST_STREAM])
        if cost.distribution == "uniform":
            return np.maximum(means * (1.0 + cost.spread * rng.uniform(-1.0, 1.0, CHUNK_SIZE)), 0.0)
        if cost.distribution == "lognormal":
            sigma = cost.spread
            return means * np.exp(sigma * rng.standard_normal(CHUNK_SIZE) - sigma * sigma / 2.0)
        if cost.distribution == "pareto":
            alpha = cost.spread
            return means * ((alpha - 1.0) / alpha) * (1.0 + rng.pareto(alpha, CHUNK_SIZE))
        # bimodal
        return np.where(rng.random(CHUNK_SIZE) < cost.heavy_fraction, cost.heavy_ms, means)


class ItemSlice(Sequence[Item]):
    """A batch of a workload's items that is built where it is used.

    It travels as the workload (its spec, ~1 KB), the item indices (a range for consecutive
    items) and the items' payload bytes, made in the flow and sent whole: the transfer of
    `payload_bytes` per item is paid as before. Costs and faults are drawn from the seed on the
    worker, so the flow process no longer builds and pickles an Item per item (~30 µs per item
    with everything that follows from it, which bounded fine work: docs/runtime-notes.md).
    Iterating gives exactly the Items `Workload.items()`/`take()` give.
    """

    __slots__ = ("workload", "indices", "payloads")

    def __init__(self, workload: Workload, indices: Sequence[int], payloads: bytes) -> None:
        self.workload = workload
        self.indices = indices
        self.payloads = payloads

    def __reduce__(self):
        return (ItemSlice, (self.workload, self.indices, self.payloads))

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        return f"ItemSlice({self.workload!r}, {len(self)} items)"

    def _payloads(self, lo: int = 0) -> Iterator[bytes]:
        """The payloads of items lo, lo+1, ... cut from the bytes that travelled."""
        size = self.workload._payload_bytes
        if not size:
            return itertools.repeat(b"")
        starts = range(lo * size, len(self.payloads), size)
        return map(self.payloads.__getitem__, itertools.starmap(slice, zip(starts, range(starts.start + size, len(self.payloads) + 1, size))))

    def __iter__(self) -> Iterator[Item]:
        if isinstance(self.indices, range) and self.indices.step == 1:
            return self.workload._iter_items(self.indices.start, self.indices.stop, self._payloads())
        return iter(self.workload.take(self.indices, self._payloads()))

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return list(self)[i]
        i = operator.index(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"item {i} of a batch of {len(self)}")
        return self.workload.take([self.indices[i]], self._payloads(i))[0]


class ItemCursor:
    """Hands out the next `n` items of a stage, in order, as one batch (`batch(lo, hi)` makes
    the batch of positions lo..hi-1)."""

    def __init__(self, count: int, batch: Callable[[int, int], Sequence[Item]]) -> None:
        self._count = count
        self._batch = batch
        self._next = 0

    @property
    def remaining(self) -> int:
        return self._count - self._next

    def take(self, n: int) -> Sequence[Item]:
        lo = self._next
        self._next = hi = min(lo + max(n, 0), self._count)
        return self._batch(lo, hi)


# ---------------------------------------------------------------------------------------------
# Kernels (run on workers)


class Kernel(Protocol):
    """What a task runs on its items when it is not a synthetic cost kind: a picklable object
    (by reference: it travels to every worker) that never raises for an item, it returns a
    failed outcome instead (harness.work.user_task.UserFunction is the one there is)."""

    def run_item(self, item: Any, attempt: int = 1) -> ItemOutcome: ...

    def run_batch(self, items: Sequence[Any], retries: int) -> BatchResult: ...


_cpu_rate: float | None = None  # LCG iterations per millisecond on this process
_sleep_overshoot_s: float | None = None  # median extra time time.sleep takes on this process
_calibration_lock = threading.Lock()


def _spin(iterations: int) -> int:
    x = 1
    for _ in range(iterations):
        x = (x * _LCG_MULTIPLIER + _LCG_INCREMENT) & _LCG_MASK
    return x


def calibrate_cpu(force: bool = False) -> float:
    """LCG loop iterations per millisecond in this process (measured once, then cached)."""
    global _cpu_rate
    with _calibration_lock:
        if _cpu_rate is None or force:
            _spin(_CPU_CALIBRATION_ITERATIONS // 10)  # warm up the interpreter's specialisation
            round_s = []
            began = time.perf_counter()
            for rounds in range(1, _CPU_CALIBRATION_MAX_ROUNDS + 1):
                t0 = time.thread_time()
                _spin(_CPU_CALIBRATION_ITERATIONS)
                round_s.append(time.thread_time() - t0)
                spent = time.perf_counter() - began
                if rounds >= _CPU_CALIBRATION_MIN_ROUNDS and spent >= _CPU_CALIBRATION_BUDGET_S:
                    break
            _cpu_rate = _CPU_CALIBRATION_ITERATIONS / (max(statistics.median(round_s), 1e-9) * 1000.0)
        return _cpu_rate


def calibrate_sleep(force: bool = False) -> float:
    """Median overshoot of time.sleep in seconds in this process (measured once, then cached)."""
    global _sleep_overshoot_s
    with _calibration_lock:
        if _sleep_overshoot_s is None or force:
            overshoots = []
            for _ in range(_SLEEP_CALIBRATION_ROUNDS):
                t0 = time.perf_counter()
                time.sleep(_SLEEP_CALIBRATION_S)
                overshoots.append(time.perf_counter() - t0 - _SLEEP_CALIBRATION_S)
            _sleep_overshoot_s = min(max(statistics.median(overshoots), 0.0), _SLEEP_OVERSHOOT_MAX_S)
        return _sleep_overshoot_s


def run_item(item: Item, cost_kind: str | Kernel, attempt: int = 1) -> ItemOutcome:
    """Run one attempt on an item: raise its injected fault, or do its work and time it.

    `cost_kind` is what the task runs on its items: a synthetic cost kind ("cpu", "sleep"), or
    a `Kernel` such as a user's function (harness.work.user_task), which handles its own retries."""
    if not isinstance(cost_kind, str):
        return cost_kind.run_item(item, attempt)
    if item.permanent:
        raise PermanentFault(item.index, attempt)
    if attempt <= item.transient_failures:
        raise TransientFault(item.index, attempt)
    if cost_kind == "cpu":
        iterations = round(item.cost_ms * (_cpu_rate or calibrate_cpu()))
        t0 = time.perf_counter()
        _spin(iterations)
        compute_s = time.perf_counter() - t0
    elif cost_kind == "sleep":
        overshoot_s = calibrate_sleep() if _sleep_overshoot_s is None else _sleep_overshoot_s
        seconds = max(item.cost_ms / 1000.0 - overshoot_s, 0.0)
        t0 = time.perf_counter()
        if item.cost_ms > 0:
            time.sleep(seconds)
        compute_s = time.perf_counter() - t0
    else:
        raise SpecError(f"cost kind must be one of {', '.join(COST_KINDS)}, got {cost_kind!r}")
    return ItemOutcome(item.index, True, compute_s, attempt, item.payload[::-1], "")


def run_batch(items: Sequence[Item], cost_kind: str | Kernel, retries: int) -> BatchResult:
    """Run every item, retrying transient faults up to `retries` times each (attempts
    1..retries+1) and never retrying permanent ones. Item faults become ok=False outcomes.

    Every strategy calls this (or run_item) with the stage's `cost_kind`: a synthetic cost
    kind, or a `Kernel` (a user's function), which then runs the batch."""
    if not isinstance(cost_kind, str):
        return cost_kind.run_batch(items, retries)
    started = time.time()
    outcomes = []
    compute_s = 0.0
    max_attempts = max(retries, 0) + 1
    for item in items:
        attempt = 1
        while True:
            try:
                outcome = run_item(item, cost_kind, attempt)
            except TransientFault:
                if attempt < max_attempts:
                    attempt += 1
                    continue
                outcome = ItemOutcome(item.index, False, 0.0, attempt, b"", "TransientFault")
            except PermanentFault:
                outcome = ItemOutcome(item.index, False, 0.0, attempt, b"", "PermanentFault")
            break
        compute_s += outcome.compute_s
        outcomes.append(outcome)
    return BatchResult(tuple(outcomes), compute_s, started, time.time())


def run_batch_folded(items: Sequence[Item], cost_kind: str | Kernel, retries: int) -> FoldedBatch:
    """`run_batch`, folded into a Tally where it ran (what batched tasks return)."""
    result = run_batch(items, cost_kind, retries)
    tally = Tally()
    tally.add_batch(result)
    return FoldedBatch(tally, result.compute_s, result.started, result.finished)


# ---------------------------------------------------------------------------------------------
# Folding results in the flow process


def item_digest(outcome: ItemOutcome) -> int:
    """crc32 of the item index (8 bytes, little endian) followed by the output payload."""
    return zlib.crc32(outcome.payload, zlib.crc32(outcome.index.to_bytes(8, "little")))


@dataclass(slots=True)
class Tally:
    """Running totals of outcomes: constant memory however many items arrive, any order."""

    items_ok: int = 0
    items_failed: int = 0
    retries: int = 0  # sum over items of attempts - 1
    compute_s: float = 0.0
    checksum: int = 0  # sum of item_digest over ok items, mod 2**64: independent of order and batching
    failed_indices: list[int] = field(default_factory=list)  # the first FAILED_INDICES_KEPT only
    errors: dict[str, int] = field(default_factory=dict)  # failed items per error class name
    # (index, "Type: message") of the first FAILURE_EXAMPLES_KEPT failed items that said why.
    failure_examples: list[tuple[int, str]] = field(default_factory=list)

    @property
    def items(self) -> int:
        return self.items_ok + self.items_failed

    def add(self, outcome: ItemOutcome) -> None:
        if outcome.ok:
            self.items_ok += 1
            self.retries += outcome.attempts - 1
            self.compute_s += outcome.compute_s
            self.checksum = (self.checksum + item_digest(outcome)) % CHECKSUM_MODULUS
        else:
            self.add_failure(outcome.index, outcome.attempts, outcome.error, outcome.message)
            self.compute_s += outcome.compute_s

    def add_batch(self, result: BatchResult | FoldedBatch) -> None:
        if isinstance(result, FoldedBatch):
            self.merge(result.tally)
            return
        for outcome in result.outcomes:
            self.add(outcome)

    def add_failure(self, index: int, attempts: int, error: str, message: str = "") -> None:
        """An item whose final state is failed (e.g. a per-item task that exhausted its retries)."""
        if message and len(self.failure_examples) < FAILURE_EXAMPLES_KEPT:
            self.failure_examples.append((index, f"{error}: {message}"))
        self.items_failed += 1
        self.retries += max(attempts - 1, 0)
        self.errors[error] = self.errors.get(error, 0) + 1
        if len(self.failed_indices) < FAILED_INDICES_KEPT:
            self.failed_indices.append(index)

    def merge(self, other: Tally) -> None:
        """Fold another tally into this one (e.g. one per stage or per subflow)."""
        self.items_ok += other.items_ok
        self.items_failed += other.items_failed
        self.retries += other.retries
        self.compute_s += other.compute_s
        self.checksum = (self.checksum + other.checksum) % CHECKSUM_MODULUS
        room = FAILED_INDICES_KEPT - len(self.failed_indices)
        self.failed_indices.extend(other.failed_indices[:room])
        self.failure_examples.extend(other.failure_examples[:FAILURE_EXAMPLES_KEPT - len(self.failure_examples)])
        for error, n in other.errors.items():
            self.errors[error] = self.errors.get(error, 0) + n
