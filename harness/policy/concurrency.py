"""How many items of an `async def` function wait at once inside one task: the concurrency
limit, chosen from what the batches show. Pure policy: observations in, a limit out; no clock,
no event loop (time arrives as data in each `ConcurrencySample`).

Who calls it: the code that builds each batch's task (harness.api.adaptive_map, the `adaptive`
strategy) asks `limit_for(batch_size)` before it submits a batch and hands the batch's
`ConcurrencySample` to `observe` when its result is folded in. The batch-size controller
(harness.policy.controller) is not told about the limit: it sees each batch's compute time as
the wall time its items took together, so a higher limit reads to it as cheaper items, and it
sizes batches from that as from any change of cost.

The policy (docs/api.md, "Async functions")
-------------------------------------------
- start at START_LIMIT items at once (never more than the batch holds or `max_concurrency`);
- grow while throughput grows: after a batch that delivered more than GROW_MARGIN above the
  best items/s seen, the limit may reach GROWTH times the concurrency that batch ran at. The
  controller's first batches hold one item, then about ten overheads' worth, then ~15x that
  once their cost is seen to fall: the limit follows them in as many steps, and a service is
  never sent more than GROWTH times the concurrency it was last seen to serve well;
- back off BACKOFF-fold from the concurrency that showed it when an item's mean latency climbs
  beyond LATENCY_RATIO times the best seen, or when errors appear with load (the share of
  attempts that raised exceeds, beyond its noise, the share at half the concurrency or less
  by ERROR_MARGIN): the service, or the task's own event loop, is queueing or refusing;
- a back-off, or a plateau (more concurrency than the best batch's for no more items/s), sets
  a ceiling: later growth goes halfway to it, so the limit settles below the concurrency that
  misbehaved rather than oscillating across it. A run's service is taken as steady: the
  ceiling holds for the rest of the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# The limit before any batch has been seen: the 100 connections aiohttp's and httpx's pools
# allow by default, so a cold start never asks more of a service than a stock client would.
# The controller's first batches after its one-item probe hold ~10 overheads' worth of items
# (~15-150 for 20 ms waits): a smaller start would run them in rounds (16 at once: up to 8
# rounds of 20 ms each, most of a first wave on an idle machine) before any growth could.
START_LIMIT = 100

# Growth: the limit may reach this many times the concurrency of a batch that raised the best
# items/s. The controller's batch sizes jump about this much early on (see above), so the
# limit keeps up with them (from 15 items at once: 240, then 3,840), while a service is never
# sent more than 16x what it was last seen to serve well; one back-off undoes a step too far.
# With 20 ms waits the best fixed limit was ~1,000 here (an event loop runs ~20,000 wake-ups
# per second), which doubling from the start would take 4 rounds of tasks to reach, one task's
# duration each: on a run of 10,000 such items, most of the run.
GROWTH = 16.0

# A batch must beat the best items/s seen by more than this share to count as growth: the
# throughput of a batch of a few tens of I/O waits scatters by a few %, so smaller gains are
# noise, while more concurrency that buys under 10 % means the service (or the event loop)
# is saturated.
GROW_MARGIN = 0.10

# Back off when an item's mean latency exceeds this many times the best seen: by then items
# queue as long as they are served (the service or the event loop is past its knee), while
# I/O latency's own jitter (tens of %) never gets there. Measured here with 20 ms waits: 1,000
# at once took 27 ms each and delivered 19,000 items/s, 5,000 at once took 99 ms for no more.
LATENCY_RATIO = 2.0

# The back-off's factor: the concurrency that misbehaved is halved, as TCP halves its window
# on loss.
BACKOFF = 0.5

# Errors count as load-related when the share of attempts that raised exceeds the share seen at
# half the concurrency or less (pooled) by this much, plus ERROR_NOISE_Z binomial standard
# errors of the batch: a fixed share of bad items (a 404 per hundred) does not hold the limit
# down, while errors that appear where there were none back off at once (no noise without
# errors). Judged only once the lower concurrencies hold ERROR_MIN_ATTEMPTS attempts: the
# probe's single item says nothing about a share of a few %.
ERROR_MARGIN = 0.02
ERROR_NOISE_Z = 2.0
ERROR_MIN_ATTEMPTS = 50

# Times are never taken below this: a coroutine that awaits nothing finishes in microseconds,
# and its ratios must stay finite.
TIME_FLOOR_S = 1e-6

_UNBOUNDED = 1 << 62


@dataclass(frozen=True)
class ConcurrencySample:
    """One finished batch of an async function, as the task measured it."""

    concurrency: int  # the limit it ran at, capped by its item count: the most items at once
    items: int
    wall_s: float  # the batch's wall time inside the task (its items overlapped)
    latency_s: float  # mean time of one attempt, from its start (not its wait for a slot)
    attempts: int  # calls made (items plus retries)
    errors: int  # attempts that raised (retried or not)

    @property
    def throughput(self) -> float:
        """Items per second the batch delivered."""
        return self.items / max(self.wall_s, TIME_FLOOR_S)

    @property
    def error_share(self) -> float:
        return self.errors / self.attempts if self.attempts else 0.0


class ConcurrencyPolicy:
    """The concurrency limit from observed throughput, latency and errors (pure policy)."""

    def __init__(self, max_concurrency: int | None = None, start: int = START_LIMIT) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1 or None, got {max_concurrency}")
        if start < 1:
            raise ValueError(f"start must be >= 1, got {start}")
        self.max_concurrency = max_concurrency
        self.limit = min(start, self._top())
        self.reason = f"start at {self.limit}"
        self._ceiling: int | None = None  # a concurrency that misbehaved or bought nothing
        self._best: ConcurrencySample | None = None  # the batch with the most items/s
        self._best_latency: float | None = None
        self._calls: dict[int, list[int]] = {}  # concurrency -> [attempts, errors] at it

    def limit_for(self, batch_size: int) -> int:
        """The limit a batch of `batch_size` items runs at: never more than it holds."""
        return max(1, min(self.limit, batch_size))

    def observe(self, sample: ConcurrencySample) -> None:
        """Fold in one finished batch (in any order: batches of an older limit still arrive)."""
        if sample.items < 1 or sample.concurrency < 1:
            return
        best_latency = self._best_latency
        self._best_latency = sample.latency_s if best_latency is None else min(best_latency, sample.latency_s)
        baseline = self._error_baseline(sample.concurrency)
        calls = self._calls.setdefault(sample.concurrency, [0, 0])
        calls[0] += sample.attempts
        calls[1] += sample.errors
        share = sample.error_share
        if baseline is not None and sample.attempts and share > baseline + ERROR_MARGIN + \
                ERROR_NOISE_Z * math.sqrt(baseline * (1 - baseline) / sample.attempts):
            self._back_off(sample, f"{share:.0%} of attempts raised ({baseline:.0%} at half as many at once)")
        elif best_latency is not None and sample.latency_s > LATENCY_RATIO * max(best_latency, TIME_FLOOR_S):
            self._back_off(sample, f"latency {_ms(sample.latency_s)}, over {LATENCY_RATIO:g}x the best "
                                   f"{_ms(best_latency)}")
        else:
            self._judge_growth(sample)

    def _judge_growth(self, sample: ConcurrencySample) -> None:
        best = self._best
        if best is None or sample.throughput > best.throughput * (1 + GROW_MARGIN):
            self._best = sample
            target = math.ceil(sample.concurrency * GROWTH)
            if self._ceiling is not None:  # below a ceiling: halfway to it
                target = min(target, (sample.concurrency + self._ceiling) // 2)
            target = min(target, self._top())
            if target > self.limit:
                self.limit = target
                self.reason = f"grow to {target}: {sample.throughput:.0f} items/s at {sample.concurrency} at once"
            else:
                self.reason = f"hold {self.limit}: {sample.throughput:.0f} items/s at {sample.concurrency} at once"
            return
        if sample.throughput > best.throughput:
            self._best = sample  # within the margin: the best so far, but no growth
        if sample.concurrency > best.concurrency:
            # More at once than the best batch, for no more items/s: the smaller limit did as well.
            self._ceiling = sample.concurrency if self._ceiling is None else min(self._ceiling, sample.concurrency)
            self.limit = min(self.limit, best.concurrency)
            self.reason = (f"plateau: {sample.concurrency} at once gave {sample.throughput:.0f} items/s, "
                           f"{best.concurrency} gave {best.throughput:.0f}; back to {self.limit}")
        else:
            self.reason = f"hold {self.limit}: {sample.throughput:.0f} items/s at {sample.concurrency} at once"

    def _error_baseline(self, concurrency: int) -> float | None:
        """The share of attempts that raised at half `concurrency` or less, pooled; None with
        fewer than ERROR_MIN_ATTEMPTS of them."""
        attempts = errors = 0
        for at, (made, raised) in self._calls.items():
            if at <= concurrency * BACKOFF:
                attempts += made
                errors += raised
        return errors / attempts if attempts >= ERROR_MIN_ATTEMPTS else None

    def _back_off(self, sample: ConcurrencySample, why: str) -> None:
        lowered = max(1, math.floor(sample.concurrency * BACKOFF))
        self._ceiling = sample.concurrency if self._ceiling is None else min(self._ceiling, sample.concurrency)
        if lowered < self.limit:  # a batch of an older, lower limit may have backed off already
            self.limit = lowered
        # The best batch's items/s stays the bar: growth below the ceiling must beat it.
        self.reason = f"back off to {self.limit}: {why} at {sample.concurrency} at once"

    def _top(self) -> int:
        return self.max_concurrency if self.max_concurrency is not None else _UNBOUNDED


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms"
