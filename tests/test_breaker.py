"""The circuit breaker and router as pure policy: outcomes in, decisions out, no cluster."""

from __future__ import annotations

import pytest

from harness.policy.breaker import (
    CLOSED,
    COOLDOWN,
    HALF_OPEN,
    MIN_ATTEMPTS,
    OPEN,
    CircuitBreaker,
    Router,
)


def test_breaker_stays_closed_until_min_attempts_even_when_all_fail():
    b = CircuitBreaker("batched")
    for _ in range(MIN_ATTEMPTS - 1):
        b.record(False)
        assert b.state == CLOSED and b.allow()
    b.record(False)
    assert b.state == OPEN and not b.allow()


def test_breaker_tolerates_failures_below_the_threshold():
    b = CircuitBreaker("batched", threshold=0.5, min_attempts=4)
    for ok in [True, False, True, True, False, True, True, False] * 3:  # 37.5 % failed
        b.record(ok)
    assert b.state == CLOSED and b.transitions == []
    assert b.failures == 9 and b.attempts == 24


def test_open_breaker_probes_after_cooldown_and_closes_on_success():
    b = CircuitBreaker("batched", min_attempts=2, cooldown=3)
    b.record(False)
    b.record(False)
    assert [b.allow() for _ in range(3)] == [False, False, False]  # the cool-down, counted in refusals
    assert b.state == HALF_OPEN
    assert b.allow() is True  # one probe
    assert b.allow() is False  # and only one while it is out
    b.record(True)
    assert b.state == CLOSED and b.failure_rate == 0.0 and b.allow()
    assert [t.after for t in b.transitions] == [OPEN, HALF_OPEN, CLOSED]


def test_failed_probe_reopens_with_a_doubled_cooldown_up_to_the_cap():
    b = CircuitBreaker("batched", min_attempts=1, cooldown=2, max_cooldown=4)
    b.record(False)
    refusals = []
    for _ in range(3):
        n = 0
        while not b.allow():
            n += 1
        refusals.append(n)
        b.record(False)  # the probe fails
        assert b.state == OPEN
    assert refusals == [2, 4, 4]


def test_outcomes_of_tasks_sent_before_opening_do_not_reopen_or_close():
    b = CircuitBreaker("batched", min_attempts=2, cooldown=5)
    b.record(False)
    b.record(False)
    b.record(True)  # was in flight when the breaker opened
    assert b.state == OPEN and len(b.transitions) == 1


@pytest.mark.parametrize("kwargs", [{"threshold": 0}, {"threshold": 1.5}, {"min_attempts": 0},
                                    {"min_attempts": 30, "window": 20}, {"cooldown": 0},
                                    {"cooldown": 9, "max_cooldown": 8}])
def test_breaker_rejects_nonsense_settings(kwargs):
    with pytest.raises(ValueError):
        CircuitBreaker("p", **kwargs)


def test_router_routes_around_an_open_path_and_back_after_a_good_probe():
    router = Router(("batched", "inline"), min_attempts=2, cooldown=2)
    assert router.route("batched") == "batched"
    router.record("batched", False)
    router.record("batched", False)
    assert router.breakers["batched"].state == OPEN
    assert [router.route("batched") for _ in range(2)] == ["inline", "inline"]
    assert router.route("batched") == "batched"  # half-open probe
    assert router.route("batched") == "inline"  # the probe is still out
    router.record("batched", True)
    assert router.route("batched") == "batched"
    assert router.rerouted == 3
    summary = "\n".join(router.summary())
    assert "path 'batched': 2 of 3 tasks failed" in summary and "now closed" in summary
    assert "went open after 2 tasks (100% failed), opened 1 times in all, 1 probes, closed again 1 times" in summary
    assert "3 batches routed around a failing path" in summary


def test_router_sends_a_rerun_elsewhere_but_falls_back_to_the_avoided_path():
    router = Router(("batched", "inline"))
    assert router.route("batched", avoid={"batched"}) == "inline"
    assert router.route("inline", avoid={"batched", "inline"}) == "inline"


def test_router_returns_none_when_every_path_refuses():
    router = Router(("batched",), min_attempts=1, cooldown=COOLDOWN)
    router.record("batched", False)
    assert router.route("batched") is None
    assert router.summary()[0].startswith("path 'batched': 1 of 1 tasks failed; breaker went open")
