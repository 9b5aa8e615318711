"""The harness's words, at the bottom of the package: the strategy names and their grammar
("per_item", "static:64"), the cost kinds and the pattern kinds.

The workload file's models (harness.workload.spec), the strategies (harness.strategies) and
the work (harness.work) all read these; this module imports nothing of the harness but
`harness.errors`, and neither Prefect nor Dask, so a workload file is checked in well under
a second. A strategy kind names the module that implements it; harness.strategies loads it
on first use.
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass

from harness.errors import SpecError

# What an item's cost does while it runs: computation holding the GIL, or waiting without it.
COST_KINDS = ("cpu", "sleep")
# The flow shapes of `[pattern] kind`; each has an options model in
# harness.workload.pattern_options and a flow in harness.patterns (one line each).
PATTERN_KINDS = ("map", "nested_map", "branching", "subflows", "pipeline")

# A strategy whose structure is fixed up front is measured on an evenly spread sample of the
# items when it would otherwise create more tasks than this: per_item on 200,000 items would
# take over an hour at the 40-90 ms of wall per Prefect task measured here (2 worker threads,
# flow and server on the same 2 cores). 500 tasks take 10-25 s, long enough for a stable
# median; the sample keeps the cost distribution and drift phases, and the record says it
# is a sample.
PREFECT_TASK_BUDGET = 500
# Raw Dask costs 1.5-3 ms per task: 5,000 tasks is a comparable 8-15 s.
DASK_TASK_BUDGET = 5_000


class _BadSize(ValueError):
    """The batch-size part of a strategy name is wrong; the message says how (for SpecError)."""


@dataclass(frozen=True)
class StrategyKind:
    """One kind of strategy: how its name is written, how it is measured, and where it runs.

    `module` implements it: a module with `execute(strategy: Strategy, stage: Stage) ->
    StageResult` (harness.strategies), imported on first use (it may import Prefect or Dask at
    its top); this module only names it.
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


# The one registry; the kinds are added at the end of this module.
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


_add = REGISTRY.add
# The order is the order messages list them in.
PER_ITEM = _add(StrategyKind("per_item", "harness.strategies.per_item", needs_flow=True,
                             task_budget=PREFECT_TASK_BUDGET))
STATIC = _add(StrategyKind("static", "harness.strategies.static", sized=True, needs_flow=True,
                           task_budget=PREFECT_TASK_BUDGET))
ADAPTIVE = _add(StrategyKind("adaptive", "harness.strategies.adaptive", needs_flow=True))
# The same, started from what the run's cold `adaptive` stage (or the cache) learned (docs/adaptive.md).
ADAPTIVE_WARM = _add(StrategyKind("adaptive_warm", "harness.strategies.adaptive", needs_flow=True))
RAW_DASK = _add(StrategyKind("raw_dask", "harness.strategies.raw_dask", sized=True, task_budget=DASK_TASK_BUDGET))
JOBLIB_AUTO = _add(StrategyKind("joblib_auto", "harness.strategies.joblib_auto"))

STRATEGY_FORMS = REGISTRY.forms
# The kinds the adaptive controller sizes as they run (no batch size of their own).
ADAPTIVE_KINDS = (ADAPTIVE.name, ADAPTIVE_WARM.name)


def parse_strategy(text: str, where: str) -> Strategy:
    """"static:64" -> Strategy("static", 64); a SpecError naming `where` when it is not one."""
    return REGISTRY.parse(text, where)
