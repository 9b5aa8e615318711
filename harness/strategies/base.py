"""What every strategy shares: the stage it runs, the result it returns, and the registry of
strategy kinds with the `Strategy` value ("per_item", "static:64") that names one.

A strategy takes a stage (which items, what they cost, how often to retry) and returns a
`StageResult`: every item's outcome folded into a Tally, the tasks it created, its wall time.
Strategies are mechanism: they submit, time and observe; the only decisions at run time are
the adaptive controller's (harness.controller).

This module imports neither Prefect nor Dask: a workload file is parsed and checked (its
`[run] strategies` included) before either is loaded, which takes seconds. A kind names the
module that implements it, loaded on its first `execute`.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.errors import SpecError

if TYPE_CHECKING:
    from harness.strategies.timings import TaskTimings
    from harness.workloads import Item, ItemCursor, Kernel, Tally, Workload

# A strategy whose structure is fixed up front is measured on an evenly spread sample of the
# items when it would otherwise create more tasks than this: per_item on 200,000 items would
# take over an hour at the 40-90 ms of wall per Prefect task measured here (2 worker threads,
# flow and server on the same 2 cores). 500 tasks take 10-25 s, long enough for a stable
# median; the sample keeps the cost distribution and drift phases, and the record says it
# is a sample.
PREFECT_TASK_BUDGET = 500
# Raw Dask costs 1.5-3 ms per task: 5,000 tasks is a comparable 8-15 s.
DASK_TASK_BUDGET = 5_000
# per_item and static:N submit their fixed tasks through a window of this many per worker
# thread, fed lazily from the batch iterator: the flow process holds what is in flight, not
# the item count. 8, as raw_dask's window: the scheduler's queue never runs dry while the flow
# folds a result and submits the next (a Prefect submit takes 10-50 ms here, a task at least
# that), and 8 x threads tasks of items stay small next to the runtime.
SUBMIT_WINDOW_PER_THREAD = 8
# The adaptive strategy's largest batch in bytes of item payload: the controller's upper bound
# on batch size is this / payload_bytes. A batch is pickled whole in the flow and unpickled on
# a worker; at 8 MiB that takes ~5-10 ms here, more than a task's own overhead, so a bigger
# batch buys no smaller overhead share, only memory (up to the controller's widest window).
ADAPTIVE_MAX_BATCH_BYTES = 8 * 2**20


@dataclass
class Stage:
    """One mapping stage: the items to run and how."""

    workload: Workload
    indices: Sequence[int] | None  # None: every item; else the sample to run (see run.py)
    cost_kind: str | Kernel  # what the tasks run: a synthetic cost kind, or a user's function (workloads.run_batch)
    retries: int
    worker_threads: int
    client: Any = None  # distributed.Client, for the reference strategies
    on_progress: Callable[[int], None] | None = None  # called with items finished so far
    # Per-task overhead of this runtime measured at warm-up (not a property of the items):
    # the adaptive controller's stand-in until its own first task has finished.
    overhead_hint_s: float | None = None
    item_hint_s: float | None = None  # ... the mean compute per item of its tasks
    # ... and one task's round trip into a waiting flow and into one that fills meanwhile
    # (harness.strategies.probe): the adaptive controller's start.
    probe_hint_s: float | None = None
    probe_filling_hint_s: float | None = None
    on_submitted: Callable[[int], None] | None = None  # called with tasks submitted so far

    @property
    def items(self) -> int:
        return len(self.workload) if self.indices is None else len(self.indices)

    def iter_items(self) -> Iterator[Item]:
        if self.indices is None:
            return self.workload.items()
        return iter(self.workload.take(self.indices))

    def submitted(self, tasks: int) -> None:
        """Tasks submitted so far, for the progress line before the first result arrives."""
        if self.on_submitted is not None:
            self.on_submitted(tasks)

    @property
    def max_batch_size(self) -> int | None:
        """The adaptive strategy's batch-size cap from ADAPTIVE_MAX_BATCH_BYTES, None when items carry no payload."""
        payload = self.workload.spec.items.payload_bytes
        return max(1, ADAPTIVE_MAX_BATCH_BYTES // payload) if payload else None

    def iter_batches(self, size: int) -> Iterator[Sequence[Item]]:
        return self.workload.batches(size, self.indices)

    def cursor(self) -> ItemCursor:
        """The stage's items in order, handed out as batches of any size (the adaptive strategy's)."""
        return self.workload.cursor(self.indices)

    def progress(self, tally: Tally) -> None:
        if self.on_progress is not None:
            self.on_progress(tally.items)


@dataclass
class StageResult:
    tally: Tally
    tasks: int
    wall_s: float
    batch_sizes: Counter[int] = field(default_factory=Counter)
    trace: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    flow_runs: int = 0  # flow runs created (the pattern's flow and its subflows; harness.patterns)
    routes: str = ""  # what the pattern built at run time, "name=count;..." (harness.patterns)
    timings: TaskTimings | None = None  # per-task timings (harness.strategies.timings), for tasks.csv


class _BadSize(ValueError):
    """The batch-size part of a strategy name is wrong; the message says how (for SpecError)."""


@dataclass(frozen=True)
class StrategyKind:
    """One kind of strategy: how its name is written, how it is measured, and where it runs.

    `module` implements it: a module with `execute(strategy: Strategy, stage: Stage) ->
    StageResult`, imported on first use (it may import Prefect or Dask at its top).
    """

    name: str
    module: str
    sized: bool = False  # written with a batch size, "static:64"; else the bare name
    needs_flow: bool = False  # runs Prefect tasks: call it inside a flow on the DaskTaskRunner
    # Tasks a run measures at most (a sample of the items beyond that; see PREFECT_TASK_BUDGET);
    # None: the strategy chooses its own structure, so it always runs every item.
    task_budget: int | None = None

    @property
    def form(self) -> str:
        """How a user writes it: "per_item", "static:N"."""
        return f"{self.name}:N" if self.sized else self.name

    def batch_size(self, colon: str, size: str) -> int | None:
        """The batch size from the text after the name ("" or ":" + digits); _BadSize if wrong."""
        if not self.sized:
            if colon:
                raise _BadSize(f"{self.name} takes no batch size")
            return None
        if not colon:
            raise _BadSize(f"{self.name} needs a batch size, e.g. '{self.name}:64'")
        if size.isascii() and size.isdecimal() and int(size) >= 1:
            # sys.maxsize: the largest length Python's sequences and numpy's indices can take.
            if int(size) > sys.maxsize:
                raise _BadSize(f"the batch size must be at most {sys.maxsize:_}")
            return int(size)
        raise _BadSize("the batch size must be an integer >= 1")

    def sample_size(self, batch_size: int | None, items: int) -> int:
        """How many of `items` a run measures (all of them unless over the task budget)."""
        if self.task_budget is None:
            return items
        return min(items, self.task_budget * (batch_size or 1))

    def read(self, name: str) -> Strategy | None:
        """The strategy `name` (as runs.csv writes it) when it is one of this kind, else None."""
        strategy = REGISTRY.read(name)
        return strategy if strategy is not None and strategy.definition is self else None

    def execute(self, strategy: Strategy, stage: Stage) -> StageResult:
        return importlib.import_module(self.module).execute(strategy, stage)


class Registry:
    """The strategy kinds by name, in the order they were added (the order messages list them)."""

    def __init__(self) -> None:
        self._kinds: dict[str, StrategyKind] = {}

    def add(self, kind: StrategyKind) -> StrategyKind:
        if kind.name in self._kinds or not kind.name or ":" in kind.name:
            raise ValueError(f"strategy kind {kind.name!r}: empty, has a ':' or is already registered")
        self._kinds[kind.name] = kind
        return kind

    def __getitem__(self, name: str) -> StrategyKind:
        try:
            return self._kinds[name]
        except KeyError:
            raise ValueError(f"unknown strategy kind {name!r}, expected one of {self.names}") from None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._kinds)

    @property
    def forms(self) -> str:
        """Every way to write a strategy, bare names first: the "expected ..." of messages."""
        kinds = sorted(self._kinds.values(), key=lambda k: k.sized)  # stable: keeps the order
        return ", ".join(k.form for k in kinds) + " (N an integer >= 1)"

    def explain(self, text: str) -> tuple[Strategy | None, str]:
        """("static:64" -> Strategy("static", 64), ""), or (None, what is wrong with `text`)."""
        name, colon, size = text.strip().partition(":")
        kind = self._kinds.get(name)
        if kind is not None:
            try:
                return Strategy(name, kind.batch_size(colon, size)), ""
            except _BadSize as exc:
                return None, str(exc)
        if not name:
            return None, "an empty name"
        close = difflib.get_close_matches(name, list(self._kinds), n=1)
        return None, f"unknown strategy {name!r}" + (f"; did you mean {close[0]!r}?" if close else "")

    def parse(self, text: str, where: str) -> Strategy:
        """"static:64" -> Strategy("static", 64); SpecError naming `where` when it is not one."""
        strategy, problem = self.explain(text)
        if strategy is None:
            raise SpecError(f"{where}: found {text!r} ({problem}), expected one of {self.forms}")
        return strategy

    def read(self, text: str) -> Strategy | None:
        """A strategy name as written in runs.csv, or None when it names no registered strategy."""
        try:
            return self.parse(str(text), "strategy")
        except SpecError:
            return None


# The one registry; harness/strategies/__init__.py adds the kinds.
REGISTRY = Registry()


@dataclass(frozen=True)
class Strategy:
    """One strategy to run: a registered kind and, for sized kinds, the batch size.

    `str()` is the name users write and runs.csv records: "per_item", "static:64".
    """

    kind: str
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if REGISTRY[self.kind].sized != (self.batch_size is not None):
            raise ValueError(f"strategy {self.kind!r} with batch size {self.batch_size!r}: "
                             f"expected the form {REGISTRY[self.kind].form}")

    def __str__(self) -> str:
        return self.kind if self.batch_size is None else f"{self.kind}:{self.batch_size}"

    @classmethod
    def parse(cls, text: str, where: str = "strategy") -> Strategy:
        return REGISTRY.parse(text, where)

    @property
    def definition(self) -> StrategyKind:
        return REGISTRY[self.kind]

    @property
    def needs_flow(self) -> bool:
        return self.definition.needs_flow

    def sample_size(self, items: int) -> int:
        return self.definition.sample_size(self.batch_size, items)

    def execute(self, stage: Stage) -> StageResult:
        """Run `stage` with this strategy (one that needs a flow: call it inside one)."""
        return self.definition.execute(self, stage)
