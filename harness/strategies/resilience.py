"""What the adaptive strategy does when a task fails for reasons of the infrastructure rather
than of its items: a worker lost, or an execution strategy that keeps failing.

The strategies here are the adaptive strategy's own, `batched` and `inline`
(controller.STRATEGIES): the strategy a batch runs on. The workload file and the report's notes
call them paths (`[faults] path`), and those names stay.

Item faults never get here: `run_batch` turns them into failed outcomes. A task that fails as
a whole (`future.result()` raises) ran none of its items as far as the flow knows, so its batch
is queued again and re-run on another strategy when the router has one; its items are folded into
the tally once, from the run that succeeds. The circuit breakers (harness.policy.breaker) decide
which strategy each batch takes; this module is the mechanism around them.

Injected path faults (`[faults] path_failure_rate`, `path`) make a task on that path fail
before any item runs, decided from the seed, the batch's first item and the attempt, so the
same run fails the same batches.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NONE

from harness.policy.breaker import Router
from harness.errors import RunError
from harness.strategies.tasks import batch_run_name
from harness.work.synthetic import Item, ItemCursor

# Re-runs of one batch before the run is declared failed. Each re-run avoids the strategies the
# batch already failed on, so 3 covers a lost worker, a broken strategy and one more failure on
# the fallback; a batch failing more often than that points at the items or the cluster, not
# at bad luck, and the user should see the error.
MAX_RERUNS_PER_BATCH = 3
# Random stream of strategy faults, apart from the workload's cost and item-fault streams (0-2).
_PATH_FAULT_STREAM = 3


class PathFault(Exception):
    """An injected infrastructure failure: the task on `strategy` died before running its batch."""

    def __init__(self, strategy: str, first_index: int, attempt: int) -> None:
        super().__init__(strategy, first_index, attempt)
        self.strategy, self.first_index, self.attempt = strategy, first_index, attempt

    def __str__(self) -> str:
        return f"injected failure of path {self.strategy!r} (batch from item {self.first_index}, attempt {self.attempt})"


def path_fails(seed: int, rate: float, first_index: int, attempt: int) -> bool:
    """Does the injected fault hit this batch on this attempt? (Deterministic.)"""
    if rate <= 0:
        return False
    rng = np.random.default_rng([seed % 2**63, _PATH_FAULT_STREAM, first_index, attempt])
    return bool(rng.random() < rate)


def _fail_on_path(batch: Any, strategy: str, first_index: int, attempt: int) -> None:
    raise PathFault(strategy, first_index, attempt)


def _fault_run_name(parameters: dict[str, Any]) -> str:
    """The injected fault says so in the Prefect UI: "batch 0-63: injected fault (attempt 1)"."""
    return f"{batch_run_name({'items': parameters['batch']})}: injected fault (attempt {parameters['attempt']})"


# A real task on a real worker that fails as a whole, as a crashed strategy would; it costs what
# a process_batch task costs, and its name in the Prefect UI says it was injected.
fail_on_path = task(_fail_on_path, name="inject_path_fault", cache_policy=NONE, task_run_name=_fault_run_name)


@dataclass
class _Batch:
    items: Sequence[Item]
    attempt: int = 1
    failed_on: set[str] = field(default_factory=set)


class PathGuard:
    """Per adaptive stage: routing through breakers, re-runs of failed batches, and the notes."""

    def __init__(self, strategies: tuple[str, ...], seed: int, fault_rate: float, fault_path: str,
                 client: Any = None) -> None:
        self.router = Router(strategies)
        self.seed, self.fault_rate, self.fault_path = seed, fault_rate, fault_path
        self.client = client
        self.reruns: deque[_Batch] = deque()
        self.rerun_tasks = 0
        self.rerun_items = 0
        self.errors: dict[str, int] = {}
        self._since = time.time()

    @classmethod
    def for_stage(cls, stage: Any, strategies: tuple[str, ...]) -> PathGuard:
        faults = stage.workload.spec.faults
        return cls(strategies, stage.workload.spec.seed, faults.path_failure_rate, faults.path, stage.client)

    @property
    def queued_items(self) -> int:
        return sum(len(b.items) for b in self.reruns)

    def next_batch(self, items: ItemCursor | Iterator[Item], size: int) -> tuple[_Batch, bool]:
        """A failed batch waiting for its re-run, else (True) the next `size` of `items`: an
        iterator, or anything that hands out whole batches with `take(n)` (an ItemCursor, the
        adaptive window's lookahead), whose batches may be built where they run."""
        if self.reruns:
            return self.reruns.popleft(), False
        take = getattr(items, "take", None)
        return _Batch(take(size) if take is not None else list(itertools.islice(items, size))), True

    def route(self, wanted: str, batch: _Batch) -> str | None:
        return self.router.route(wanted, avoid=batch.failed_on)

    def injected(self, strategy: str, batch: _Batch) -> bool:
        return strategy == self.fault_path and path_fails(self.seed, self.fault_rate, batch.items[0].index, batch.attempt)

    def succeeded(self, strategy: str) -> None:
        self.router.record(strategy, True)

    def failed(self, strategy: str, batch: _Batch, error: BaseException) -> None:
        """A task failed as a whole: count it against its strategy and queue the batch again."""
        self.router.record(strategy, False)
        name = type(error).__name__
        self.errors[name] = self.errors.get(name, 0) + 1
        if batch.attempt > MAX_RERUNS_PER_BATCH:
            raise RunError(f"a batch of {len(batch.items)} items (from item {batch.items[0].index}) failed "
                           f"{batch.attempt} times, last on path {strategy!r}: {name}: {error}") from error
        batch.attempt += 1
        batch.failed_on.add(strategy)
        self.rerun_tasks += 1
        self.rerun_items += len(batch.items)
        self.reruns.append(batch)

    def notes(self) -> list[str]:
        """What the report says: failed tasks, re-runs, breakers, workers the cluster lost."""
        notes = []
        if self.errors:
            shown = ", ".join(f"{n} {name}" for name, n in sorted(self.errors.items()))
            notes.append(f"{sum(self.errors.values())} tasks failed as a whole ({shown}); "
                         f"{self.rerun_tasks} batches ({self.rerun_items} items) re-run, each item counted once")
        notes += self.router.summary()  # lost workers: harness.measure.worker_watch, for every strategy
        return notes

