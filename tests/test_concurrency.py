"""The concurrency-limit policy (harness.policy.concurrency), directly: observations in, a limit
out, against simulated services (no clock, no event loop)."""

from __future__ import annotations

import math

import pytest

from harness.policy.concurrency import (BACKOFF, GROWTH, LATENCY_RATIO, START_LIMIT, ConcurrencyPolicy,
                                        ConcurrencySample)

BASE_S = 0.020  # the simulated service's latency when it is not loaded


def _service(capacity: int | None = None, error_share=lambda limit: 0.0):
    """A batch of `items` run `limit` at once: latency flat up to `capacity`, then growing with
    the queue, so that beyond it the throughput stays capacity / BASE_S (Little's law)."""

    def sample(limit: int, items: int) -> ConcurrencySample:
        at_once = min(limit, items)
        latency = BASE_S if capacity is None else BASE_S * max(1.0, at_once / capacity)
        wall = math.ceil(items / at_once) * latency
        return ConcurrencySample(at_once, items, wall, latency, items, round(error_share(at_once) * items))

    return sample


def _run(policy: ConcurrencyPolicy, service, sizes) -> list[int]:
    """The limit each batch ran at, batches of `sizes` one after another."""
    limits = []
    for size in sizes:
        limit = policy.limit_for(size)
        limits.append(limit)
        policy.observe(service(limit, size))
    return limits


# The controller's early batches: the probe's one item, ~10 overheads' worth, then far bigger.
RAMP = [1, 15, 15, 230, 230] + [5000] * 30


def test_the_limit_follows_the_batches_up_while_throughput_grows():
    policy = ConcurrencyPolicy()
    assert policy.limit == START_LIMIT
    limits = _run(policy, _service(), RAMP[:8])
    # 16x what was served well: the first batch of 5,000 runs 3,680 at once, the next all of it
    assert limits == [1, 15, 15, 230, 230, 230 * GROWTH, 5000, 5000]
    assert policy.limit >= 5000


def test_growth_is_bounded_by_what_was_last_served_well():
    policy = ConcurrencyPolicy()
    limits = _run(policy, _service(), [1, 10_000, 10_000, 10_000, 10_000])
    assert limits == [1, START_LIMIT, START_LIMIT * GROWTH, 10_000, 10_000]


def test_the_limit_never_exceeds_the_batch_or_max_concurrency():
    policy = ConcurrencyPolicy(max_concurrency=5)
    assert policy.limit == 5 and policy.limit_for(3) == 3 and policy.limit_for(0) == 1
    assert max(_run(policy, _service(), RAMP)) == 5
    assert ConcurrencyPolicy(max_concurrency=1000).limit_for(10) == 10


def test_a_saturating_service_settles_near_its_capacity():
    capacity = 1000
    policy = ConcurrencyPolicy()
    limits = _run(policy, _service(capacity), RAMP)
    # Over LATENCY_RATIO x capacity: the step that showed it, and one step halfway back up.
    assert sum(limit > capacity * LATENCY_RATIO for limit in limits) <= 2
    assert capacity / 2 <= limits[-1] <= capacity * LATENCY_RATIO
    assert len(set(limits[-10:])) == 1  # settled


def test_latency_climbing_backs_off_from_the_concurrency_that_showed_it():
    policy = ConcurrencyPolicy(start=64)
    policy.observe(ConcurrencySample(64, 64, BASE_S, BASE_S, 64, 0))
    assert policy.limit == 64 * GROWTH
    policy.observe(ConcurrencySample(128, 128, BASE_S * 3, BASE_S * 3, 128, 0))
    assert policy.limit == int(128 * BACKOFF) and "back off" in policy.reason and "latency" in policy.reason
    policy.observe(ConcurrencySample(200, 200, BASE_S * 3, BASE_S * 3, 200, 0))  # sent before: no higher
    assert policy.limit == int(128 * BACKOFF)


def test_errors_that_come_with_load_back_off_and_a_fixed_share_does_not():
    overloaded = ConcurrencyPolicy()
    limits = _run(overloaded, _service(error_share=lambda at_once: 0.3 if at_once > 500 else 0.0), RAMP)
    assert limits[-1] <= 500 and len(set(limits[-10:])) == 1
    steady_bad_items = ConcurrencyPolicy()
    limits = _run(steady_bad_items, _service(error_share=lambda at_once: 0.05), RAMP)
    assert limits[-1] == 5000


def test_more_at_once_for_no_more_throughput_returns_to_the_smaller_limit():
    policy = ConcurrencyPolicy(start=32)
    policy.observe(ConcurrencySample(32, 500, 0.32, BASE_S, 500, 0))  # 1,560 items/s
    assert policy.limit == 32 * GROWTH
    policy.observe(ConcurrencySample(64, 500, 0.31, BASE_S * 1.9, 500, 0))  # 1,610 items/s: under +10 %
    assert policy.limit == 32 and "plateau" in policy.reason
    policy.observe(ConcurrencySample(32, 500, 0.2, BASE_S, 500, 0))  # 2,500 items/s: growth, halfway up
    assert policy.limit == (32 + 64) // 2


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="max_concurrency"):
        ConcurrencyPolicy(max_concurrency=0)
    with pytest.raises(ValueError, match="start"):
        ConcurrencyPolicy(start=0)
