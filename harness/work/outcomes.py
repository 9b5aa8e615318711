"""What running items gives, and its running totals: an ItemOutcome per item, a BatchResult per
batch (or a FoldedBatch, folded where it ran), and the Tally the flow folds them into, with
its order-independent checksum (item_digest).

Outcomes travel from Dask workers back to the flow by pickling (by reference to this module),
so it imports nothing of Prefect or Dask and keeps no per-item state.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import NamedTuple

# Failed indices a Tally keeps for the report: enough to name examples, bounded so a run where
# every item fails keeps memory flat.
FAILED_INDICES_KEPT = 1000

# Failed items a Tally keeps with their exception message: the report lists "the first few".
FAILURE_EXAMPLES_KEPT = 5
# How a strategy's note on its failed items begins after the count (harness.measure.run.failure_note);
# the report's headline quotes that note when no item of a strategy succeeded.
FAILED_AFTER_RETRIES = "items failed after retries"

CHECKSUM_MODULUS = 2**64


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
    # the sum of the outcomes' compute_s (an async function's items overlap: theirs are shares of
    # the batch's wall time, harness.work.user_task)
    compute_s: float
    started: float  # time.time() on the worker when the batch function began
    finished: float  # time.time() when it ended
    concurrency: int | None = None  # an async function's limit: its items at once; None otherwise
    latency_s: float | None = None  # ... and the mean time of one attempt


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
    concurrency: int | None = None  # as BatchResult's
    latency_s: float | None = None



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
