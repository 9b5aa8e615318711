"""The concurrency-limit policy (harness.policy.concurrency), directly: observations in, a limit
out, against simulated services (no clock, no event loop)."""

from __future__ import annotations

import pytest

from harness.policy.concurrency import (BACKOFF, LATENCY_RATIO, START_LIMIT, ConcurrencyPolicy,
                                        ConcurrencySample)

BASE_S = 0.020  # the simulated service's latency when it is not loaded


def _service(capacity: int | None = None, error_share=lambda limit: 0.0):
    """A sample at `limit` items at once: latency flat up to `capacity`, then growing with the
    queue (Little's law: beyond capacity the throughput stays capacity / BASE_S)."""

    def sample(limit: int, items: int = 10_000) -> ConcurrencySample:
        latency = BASE_S if capacity is None else BASE_S * max(1.0, limit / capacity)
        attempts = items
        return ConcurrencySample(limit, items, latency, attempts, round(error_share(limit) * attempts))

    return sample


def _run(policy: ConcurrencyPolicy, service, batches: int, batch_size: int = 10_000) -> list[int]:
    limits = []
    for _ in range(batches):
        limit = policy.limit_for(batch_size)
        limits.append(limit)
        policy.observe(service(limit, batch_size))
    return limits


def test_grows_from_the_start_while_latency_stays_flat_up_to_max_concurrency():
    policy = ConcurrencyPolicy(max_concurrency=1000)
    limits = _run(policy, _service(), 12)
    assert limits[0] == START_LIMIT
    assert limits[:4] == [START_LIMIT, 2 * START_LIMIT, 4 * START_LIMIT, 8 * START_LIMIT]  # doubling
    assert max(limits) == 1000 and limits[-1] == 1000 and "max_concurrency" in policy.reason


def test_the_limit_never_exceeds_the_batch_or_max_concurrency():
    policy = ConcurrencyPolicy(max_concurrency=5)
    assert policy.limit == 5 and policy.limit_for(3) == 3 and policy.limit_for(0) == 1
    _run(policy, _service(), 5)
    assert policy.limit == 5
    small = ConcurrencyPolicy()
    assert _run(small, _service(), 6, batch_size=10) == [10] * 6  # the batch is the binding cap


def test_a_saturating_service_settles_near_its_capacity():
    capacity = 100
    policy = ConcurrencyPolicy()
    limits = _run(policy, _service(capacity), 40)
    # Slow start overshoots once (a batch at over LATENCY_RATIO x capacity), backs off and stays below.
    assert sum(limit > capacity * LATENCY_RATIO for limit in limits) == 1
    assert capacity / 2 <= limits[-1] <= 2 * capacity
    assert len(set(limits[-6:])) <= 2  # settled: at most a probe above its resting limit


def test_latency_climbing_backs_off_from_the_concurrency_that_showed_it():
    policy = ConcurrencyPolicy(start=64)
    policy.observe(ConcurrencySample(64, 64, BASE_S, 64, 0))
    assert policy.limit == 128
    policy.observe(ConcurrencySample(128, 128, BASE_S * (LATENCY_RATIO + 0.5), 128, 0))
    assert policy.limit == int(128 * BACKOFF) and "back off" in policy.reason and "latency" in policy.reason


def test_errors_that_come_with_load_back_off_and_a_fixed_share_does_not():
    overloaded = ConcurrencyPolicy()
    limits = _run(overloaded, _service(error_share=lambda limit: 0.3 if limit > 50 else 0.0), 20)
    assert max(limits) == 2 * START_LIMIT * 2  # one step past the 50 that still served well
    assert limits[-1] <= 50 and len(set(limits[-4:])) == 1
    steady_bad_items = ConcurrencyPolicy(max_concurrency=512)
    _run(steady_bad_items, _service(error_share=lambda limit: 0.05), 12)
    assert steady_bad_items.limit == 512


def test_a_step_that_buys_no_throughput_returns_to_the_smaller_limit():
    policy = ConcurrencyPolicy(start=32)
    policy.observe(ConcurrencySample(32, 500, BASE_S, 500, 0))  # 1,600 items/s
    assert policy.limit == 64
    policy.observe(ConcurrencySample(64, 500, BASE_S * 1.9, 500, 0))  # 1,684 items/s: under +10 %
    assert policy.limit == 32 and "plateau" in policy.reason
    policy.observe(ConcurrencySample(32, 500, BASE_S, 500, 0))
    assert 32 < policy.limit < 64  # halfway to the ceiling, not back to it


def test_a_late_batch_of_an_older_limit_neither_grows_nor_raises_the_limit():
    policy = ConcurrencyPolicy(start=32)
    policy.observe(ConcurrencySample(32, 32, BASE_S, 32, 0))
    assert policy.limit == 64
    policy.observe(ConcurrencySample(32, 32, BASE_S, 32, 0))  # ran at 32, sent before the growth
    assert policy.limit == 64
    policy.observe(ConcurrencySample(8, 8, BASE_S, 8, 0))  # a small batch: says nothing about 64
    assert policy.limit == 64
    policy.observe(ConcurrencySample(64, 64, BASE_S * 3, 64, 0))
    assert policy.limit == 32
    policy.observe(ConcurrencySample(48, 48, BASE_S * 3, 48, 0))  # backs off no further up than it is
    assert policy.limit == 24


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="max_concurrency"):
        ConcurrencyPolicy(max_concurrency=0)
    with pytest.raises(ValueError, match="start"):
        ConcurrencyPolicy(start=0)
