"""Circuit breakers: stop submitting to an execution strategy that keeps failing, and route the
rest of the work around it (pure policy: no Prefect, no Dask, no clock).

A `CircuitBreaker` watches one strategy's task outcomes:

    closed     every submit allowed; the failure rate over the last `window` outcomes is
               tracked, and once at least `min_attempts` are in and the rate reaches
               `threshold` the breaker opens.
    open       no submit allowed. Time is not an input here, so the cool-down is counted in
               refused submits: after `cooldown` refusals it turns half-open.
    half_open  exactly one probe submit is allowed; its success closes the breaker (history
               cleared), its failure opens it again with the cool-down doubled (up to a cap).

A `Router` holds one breaker per strategy and answers "which strategy should this batch take?": the
one the controller wanted if its breaker allows it, else the first allowed strategy of a fixed
fallback order. The mechanism (harness.strategies.adaptive) submits; the router never does.
The strategies are the adaptive strategy's own (`batched`, `inline`); the report's notes call
them paths.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

# Share of failed tasks that opens a breaker. Half: a strategy that fails every other task
# wastes as much work as it does, and a worse one is not worth trying; a strategy that fails a
# few tasks in ten is better kept (each failed batch is re-run elsewhere at the cost of one
# task), so a lower threshold would give up a strategy over ordinary bad luck.
FAILURE_THRESHOLD = 0.5
# Outcomes seen before the rate is trusted: with 4, one unlucky failure (25 %) never opens
# the breaker, while a dead strategy (100 %) is abandoned after 4 wasted tasks, i.e. about one
# window of in-flight tasks on a 2-worker cluster.
MIN_ATTEMPTS = 4
# Outcomes the rate is computed over: recent enough to notice a strategy that has started to
# fail (and to forget old failures once it recovers), long enough that one outcome moves
# the rate by at most 5 %.
WINDOW = 20
# Refused submits before a half-open probe: one probe per 8 batches routed elsewhere wastes
# at most one task in 9 on a still-broken strategy. Doubled after each failed probe, up to 64
# (a broken strategy then costs at most ~1.5 % of the tasks).
COOLDOWN = 8
MAX_COOLDOWN = 64

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True)
class Transition:
    """A breaker changed state: for the report's notes and for tests."""

    strategy: str
    before: str
    after: str
    failure_rate: float
    attempts: int


class CircuitBreaker:
    """Closed / open / half-open over one strategy's outcomes (see the module docstring)."""

    def __init__(self, strategy: str, threshold: float = FAILURE_THRESHOLD, min_attempts: int = MIN_ATTEMPTS,
                 window: int = WINDOW, cooldown: int = COOLDOWN, max_cooldown: int = MAX_COOLDOWN) -> None:
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        if not 1 <= min_attempts <= window:
            raise ValueError(f"need 1 <= min_attempts <= window, got {min_attempts}, {window}")
        if not 1 <= cooldown <= max_cooldown:
            raise ValueError(f"need 1 <= cooldown <= max_cooldown, got {cooldown}, {max_cooldown}")
        self.strategy = strategy
        self.threshold = threshold
        self.min_attempts = min_attempts
        self.cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.state = CLOSED
        self.attempts = 0  # every outcome recorded, for the report
        self.failures = 0
        self._recent: deque[bool] = deque(maxlen=window)  # True = failed
        self._cooldown = cooldown
        self._refused = 0
        self._probing = False
        self.transitions: list[Transition] = []

    @property
    def failure_rate(self) -> float:
        return sum(self._recent) / len(self._recent) if self._recent else 0.0

    def allow(self) -> bool:
        """May one more task be submitted to this strategy? (Counts a refusal when not.)"""
        if self.state == CLOSED:
            return True
        if self.state == HALF_OPEN:
            if self._probing:
                return False
            self._probing = True
            return True
        self._refused += 1
        if self._refused >= self._cooldown:
            self._move(HALF_OPEN)
        return False

    def record(self, ok: bool) -> None:
        """One task on this strategy finished (ok) or failed for a reason of the strategy's own."""
        self.attempts += 1
        self.failures += not ok
        self._recent.append(not ok)
        if self.state == HALF_OPEN:
            self._probing = False
            if ok:
                self._recent.clear()
                self._cooldown = self.cooldown
                self._move(CLOSED)
            else:
                self._cooldown = min(self._cooldown * 2, self.max_cooldown)
                self._move(OPEN)
        elif self.state == CLOSED and len(self._recent) >= self.min_attempts \
                and self.failure_rate >= self.threshold:
            self._move(OPEN)
        # OPEN: a task submitted before the breaker opened; its outcome is history only.

    def _move(self, state: str) -> None:
        self.transitions.append(Transition(self.strategy, self.state, state, self.failure_rate, self.attempts))
        self.state = state
        self._refused = 0


class Router:
    """One breaker per strategy; picks the strategy each batch takes."""

    def __init__(self, strategies: Iterable[str], **breaker_options: float) -> None:
        self.strategies = tuple(strategies)  # also the fallback order, most preferred first
        if not self.strategies:
            raise ValueError("a router needs at least one strategy")
        self.breakers = {s: CircuitBreaker(s, **breaker_options) for s in self.strategies}  # type: ignore[arg-type]
        self.rerouted = 0  # batches sent elsewhere than the controller wanted

    def route(self, wanted: str, avoid: Iterable[str] = ()) -> str | None:
        """The strategy for the next batch: `wanted` if allowed, else the first allowed fallback.

        `avoid`: strategies this batch already failed on (a re-run goes elsewhere when it can).
        None when every strategy is refusing: the caller waits for a task in flight to finish.
        """
        avoid = set(avoid)
        order = [wanted] + [s for s in self.strategies if s != wanted]
        for candidates in ([p for p in order if p not in avoid], [p for p in order if p in avoid]):
            for strategy in candidates:
                if self.breakers[strategy].allow():
                    self.rerouted += strategy != wanted
                    return strategy
        return None

    def record(self, strategy: str, ok: bool) -> None:
        self.breakers[strategy].record(ok)

    def summary(self) -> list[str]:
        """One line per strategy that failed or changed state, for the report's notes."""
        lines = []
        for strategy, b in self.breakers.items():
            if b.failures or b.transitions:
                opened = [t for t in b.transitions if t.after == OPEN]
                if opened:
                    first = opened[0]
                    probes = sum(t.after == HALF_OPEN for t in b.transitions)
                    closed = sum(t.after == CLOSED for t in b.transitions)
                    state = (f"breaker went open after {first.attempts} tasks ({first.failure_rate:.0%} failed), "
                             f"opened {len(opened)} times in all, {probes} probes, closed again {closed} times")
                else:
                    state = "breaker stayed closed"
                lines.append(f"path {strategy!r}: {b.failures} of {b.attempts} tasks failed; {state}; now {b.state}")
        if self.rerouted:
            lines.append(f"{self.rerouted} batches routed around a failing path")
        return lines
