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
- grow GROWTH-fold after each batch that ran at the limit, while the throughput the limit
  delivers rises by more than GROW_MARGIN over the limit before it (slow start);
- the throughput of a limit is `limit / mean latency` (Little's law: items in flight over the
  time each stays), not the batch's items / wall time, which depends on how its items split
  into rounds (33 items at a limit of 32 take two rounds and would read as no gain);
- back off BACKOFF-fold from the concurrency that showed it when an item's mean latency
  climbs beyond LATENCY_RATIO times the best seen, or when errors appear (the share of
  attempts that raised exceeds the least share seen by ERROR_MARGIN): the service is queueing
  or refusing;
- a back-off or a plateau (a step that bought no throughput) sets a ceiling: later growth
  halves the distance to it instead of doubling, so the limit settles below the concurrency
  that misbehaved rather than oscillating across it. A run's service is taken as steady: the
  ceiling holds for the rest of the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# The limit before any batch has been seen: the most items a service is sent at once before
# any latency or error could be observed. Below the 100 connections aiohttp's and httpx's
# pools allow by default, so a first batch never asks more of a service than a stock client
# would; from 16, doubling reaches 1,024 in 6 batches at the limit. (Early batches are small
# anyway: the controller starts with one item, then ~10 overheads' worth.)
START_LIMIT = 16

# Slow start's step: doubling finds a limit of L in log2(L / START_LIMIT) batches, and a
# step too far costs at most one batch at twice the concurrency the service could take.
GROWTH = 2.0

# A step must raise the limit's throughput by more than this share to count as growth: the
# mean latency of a batch of a few tens of simulated or real I/O waits scatters by a few %,
# so smaller gains are noise, while a doubling that buys under 10 % means the service (or the
# event loop) is saturated.
GROW_MARGIN = 0.10

# Back off when an item's mean latency exceeds this many times the best seen: by then items
# queue as long as they are served (the service is past its knee), while I/O latency's own
# jitter (tens of %) never gets there, nor does the scheduling delay an event loop adds when
# it runs a thousand waits at once (a few ms on 20 ms waits).
LATENCY_RATIO = 2.0

# The back-off's factor: the concurrency that misbehaved is halved, as TCP halves its window
# on loss; one step undoes the last doubling.
BACKOFF = 0.5

# Errors count as load-related when the share of attempts that raised exceeds the least share
# seen at any limit by this much: a fixed share of bad items (a 404 per hundred) does not hold
# the limit down, while one failure in a batch of 20 (5 %) more than the best seen backs off.
ERROR_MARGIN = 0.02

# An item's latency is never taken below this: a coroutine that awaits nothing finishes in
# microseconds, and its throughput must stay finite.
LATENCY_FLOOR_S = 1e-6


@dataclass(frozen=True)
class ConcurrencySample:
    """One finished batch of an async function, as the task measured it."""

    concurrency: int  # the limit it ran at, capped by its item count: the most items at once
    items: int
    latency_s: float  # mean time of one attempt, from its start (not its wait for a slot)
    attempts: int  # calls made (items plus retries)
    errors: int  # attempts that raised (retried or not)

    @property
    def throughput(self) -> float:
        """Items per second the concurrency delivers in steady state (Little's law)."""
        return self.concurrency / max(self.latency_s, LATENCY_FLOOR_S)

    @property
    def error_share(self) -> float:
        return self.errors / self.attempts if self.attempts else 0.0


class ConcurrencyPolicy:
    """The concurrency limit from observed latency, throughput and errors (pure policy)."""

    def __init__(self, max_concurrency: int | None = None, start: int = START_LIMIT) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1 or None, got {max_concurrency}")
        if start < 1:
            raise ValueError(f"start must be >= 1, got {start}")
        self.max_concurrency = max_concurrency
        self.limit = start if max_concurrency is None else min(start, max_concurrency)
        self.reason = f"start at {self.limit}"
        self._ceiling: int | None = None  # a concurrency that misbehaved or bought nothing (exclusive)
        self._previous: ConcurrencySample | None = None  # the best sample at the limit grown from
        self._best_latency: float | None = None
        self._least_error_share: float | None = None

    def limit_for(self, batch_size: int) -> int:
        """The limit a batch of `batch_size` items runs at: never more than it holds."""
        return max(1, min(self.limit, batch_size))

    def observe(self, sample: ConcurrencySample) -> None:
        """Fold in one finished batch (in any order: batches of an older limit still arrive)."""
        if sample.items < 1 or sample.concurrency < 1:
            return
        best_latency, least_errors = self._best_latency, self._least_error_share
        self._best_latency = sample.latency_s if best_latency is None else min(best_latency, sample.latency_s)
        share = sample.error_share
        self._least_error_share = share if least_errors is None else min(least_errors, share)
        if least_errors is not None and share > least_errors + ERROR_MARGIN:
            self._back_off(sample, f"{share:.0%} of attempts raised (least seen {least_errors:.0%})")
        elif best_latency is not None and sample.latency_s > LATENCY_RATIO * max(best_latency, LATENCY_FLOOR_S):
            self._back_off(sample, f"latency {_ms(sample.latency_s)}, over {LATENCY_RATIO:g}x the best "
                                   f"{_ms(best_latency)}")
        elif sample.concurrency >= self.limit:  # a batch at the limit: evidence about the limit
            self._judge_growth(sample)

    def _judge_growth(self, sample: ConcurrencySample) -> None:
        previous = self._previous
        if previous is not None and previous.concurrency < sample.concurrency and \
                sample.throughput <= previous.throughput * (1 + GROW_MARGIN):
            # The last step bought (almost) nothing: the smaller limit did as well with less load.
            self._ceiling = sample.concurrency
            self.limit = previous.concurrency
            self._previous = None
            self.reason = (f"plateau: {sample.concurrency} at once gave {sample.throughput:.0f} items/s, "
                           f"{previous.concurrency} gave {previous.throughput:.0f}; back to {self.limit}")
            return
        top = self._top()
        if self.limit >= top:
            self.reason = f"hold {self.limit}: {self._top_why()}"
            self._previous = sample
            return
        grown = min(top, math.ceil(self.limit * GROWTH))
        if self._ceiling is not None:  # below a ceiling: halve the distance to it
            grown = min(grown, (self.limit + self._ceiling) // 2)
        if grown <= self.limit:
            self.reason = f"hold {self.limit}: next to the ceiling {self._ceiling}"
            self._previous = sample
            return
        self.reason = f"grow to {grown}: {sample.throughput:.0f} items/s at {sample.concurrency}"
        self._previous = sample
        self.limit = grown

    def _back_off(self, sample: ConcurrencySample, why: str) -> None:
        lowered = max(1, math.floor(sample.concurrency * BACKOFF))
        self._ceiling = sample.concurrency if self._ceiling is None else min(self._ceiling, sample.concurrency)
        self._previous = None
        if lowered < self.limit:  # a batch of an older, lower limit may have backed off already
            self.limit = lowered
        self.reason = f"back off to {self.limit}: {why} at {sample.concurrency} at once"

    def _top(self) -> int:
        top = self.max_concurrency if self.max_concurrency is not None else 1 << 62
        return top if self._ceiling is None else min(top, max(1, self._ceiling - 1))

    def _top_why(self) -> str:
        if self._ceiling is not None and self._ceiling - 1 <= (self.max_concurrency or 1 << 62):
            return f"below the ceiling {self._ceiling}"
        return f"max_concurrency {self.max_concurrency}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms"
