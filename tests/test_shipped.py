"""harness.work.shipped: a function carried by value (the pytest plugin's), without a cluster."""

from __future__ import annotations

import pickle
import threading

import pytest

from harness.errors import SpecError
from harness.work.shipped import ship
from harness.work.user_task import UserItem

OFFSET = 7


def _plus_offset(x):
    return x + OFFSET  # a module-level constant: travels with the function


def test_a_lambda_and_a_module_function_run_from_their_bytes():
    fresh = pickle.loads(pickle.dumps(ship(lambda x: x * 3, "fn")))  # as a task's argument travels
    assert fresh.run_item(UserItem(0, 5)).ok
    batch = pickle.loads(pickle.dumps(ship(_plus_offset, "fn"))).run_batch([UserItem(0, 1), UserItem(1, 2)], 0)
    assert [o.ok for o in batch.outcomes] == [True, True]
    assert batch.outcomes[0].payload == ship(lambda x: x + 7, "fn").run_item(UserItem(0, 1)).payload  # same digest


def test_the_test_module_travels_by_value_and_is_left_unregistered():
    import cloudpickle

    shipped = ship(_plus_offset, "fn")
    assert b"_plus_offset" in shipped.pickled and b"OFFSET" in shipped.pickled  # the code, not a reference
    assert __name__ not in cloudpickle.list_registry_pickle_by_value()


def test_an_exception_is_a_failed_outcome_not_a_crash():
    outcome = ship(lambda x: 1 / x, "fn").run_item(UserItem(3, 0))
    assert not outcome.ok and outcome.error == "ZeroDivisionError" and outcome.index == 3


def test_a_function_holding_a_lock_is_refused_naming_the_lock():
    lock = threading.Lock()

    def guarded(x):
        with lock:
            return x

    with pytest.raises(SpecError, match=r"fn: test_a_function_holding_a_lock_is_refused_naming_the_lock\.<locals>"
                                        r"\.guarded \(test_shipped\.py:\d+\) cannot travel to the worker processes: "
                                        r"its closure variable 'lock' \(a _thread\.lock\) does not pickle"):
        ship(guarded, "fn")


def test_not_a_function():
    with pytest.raises(SpecError, match="fn: found a int, expected a function of one item"):
        ship(3, "fn")
