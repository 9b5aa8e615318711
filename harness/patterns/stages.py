"""What the dynamic-workflow patterns share: stages over explicit item lists, item attributes
drawn from the workload seed, several stages (or subflows) running at once inside one flow,
and the folding of their results into one StageResult.

Counting: an item may pass several stages (a route then a review, every step of a pipeline).
Its faults are fixed per item, so it fails or succeeds alike in each; the pattern counts each
item's outcome once, in the one stage every item passes exactly once (the *counted* stage),
and adds the other stages' compute, retries and tasks. So the dynamic pattern and its static
twin report the same items and the same checksum.
"""

from __future__ import annotations

import contextvars
import dataclasses
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from prefect import Flow, flow, tags

from harness.patterns.labels import RunLabel, shown_parameters
from harness.workload.vocabulary import Strategy
from harness.strategies import Stage, StageResult, execute
from harness.work.outcomes import Tally
from harness.work.synthetic import CHUNK_SIZE, Item, ItemCursor

T = TypeVar("T")

# Stages (or subflows) one flow runs at once, each in a flow-process thread that submits and
# waits. 16 covers every group, type and ready step of the bundled workloads; more threads
# would only contend for the flow process, the serial bottleneck (docs/runtime-notes.md), not add workers.
MAX_CONCURRENT_STAGES = 16
# The first word of the seed of every pattern attribute stream, so no attribute stream can
# coincide with the workload's own (seed, chunk, stream) cost and fault streams.
_ATTRIBUTE_STREAM = 0x5EED_0A77


@dataclass
class ItemStage(Stage):
    """A stage over an explicit list of items (a group, a route, a step), costs already set."""

    item_list: list[Item] = field(default_factory=list)
    label: str = ""

    @property
    def items(self) -> int:
        return len(self.item_list)

    def iter_items(self) -> Iterator[Item]:
        return iter(self.item_list)

    def iter_batches(self, size: int) -> Iterator[list[Item]]:
        if size < 1:
            raise ValueError(f"batch size must be at least 1, got {size}")
        return (self.item_list[i:i + size] for i in range(0, len(self.item_list), size))

    def cursor(self) -> ItemCursor:
        return ItemCursor(len(self.item_list), lambda lo, hi: self.item_list[lo:hi])


def sub_stage(stage: Stage, items: list[Item], label: str,
              on_progress: Callable[[int], None] | None = None) -> ItemStage:
    """A stage over `items` that runs like `stage` (same cluster, cost kind, retries, hints),
    reporting its progress to `on_progress` (a counted stage's share of the run's, or none)."""
    same = {f.name: getattr(stage, f.name) for f in dataclasses.fields(Stage)}
    return ItemStage(**{**same, "indices": None, "on_progress": on_progress}, item_list=items, label=label)


class SharedProgress:
    """The run's progress from its counted stages, which may run at once: each reports its own
    count, the run's callback gets the sum."""

    def __init__(self, report: Callable[[int], None] | None) -> None:
        self._report = report
        self._done: dict[str, int] = {}
        self._lock = threading.Lock()

    def stage(self, label: str) -> Callable[[int], None] | None:
        if self._report is None:
            return None

        def update(items: int) -> None:
            with self._lock:
                self._done[label] = items
                total = sum(self._done.values())
            self._report(total)

        return update


def scaled(items: Sequence[Item], factor: float) -> list[Item]:
    """The items with their cost multiplied by `factor` (results do not depend on cost)."""
    return [item._replace(cost_ms=item.cost_ms * factor) for item in items]


def attribute_draws(seed: int, name: str, indices: Sequence[int]) -> np.ndarray:
    """One uniform [0, 1) draw per item index from the stream `name`: the same for an index
    whichever sample or order it comes in, so dynamic and twin see the same structure."""
    salt = zlib.crc32(name.encode())
    idx = np.asarray(indices, dtype=np.int64)
    out = np.empty(len(idx), dtype=np.float64)
    chunks = idx // CHUNK_SIZE
    for chunk in np.unique(chunks):
        here = chunks == chunk
        draws = np.random.default_rng([_ATTRIBUTE_STREAM, seed, salt, int(chunk)]).random(CHUNK_SIZE)
        out[here] = draws[idx[here] - int(chunk) * CHUNK_SIZE]
    return out


def choose(draws: np.ndarray, shares: Sequence[float]) -> np.ndarray:
    """Category numbers 0..len(shares)-1 for uniform draws, category k with share k."""
    edges = np.cumsum(np.asarray(shares, dtype=np.float64))
    edges /= edges[-1]
    return np.minimum(np.searchsorted(edges, draws, side="right"), len(shares) - 1)


def is_prefect(strategy: Strategy) -> bool:
    """Prefect strategies run inside flows; the reference ones run the same structure bare."""
    return strategy.needs_flow


def run_stage(strategy: Strategy, stage: ItemStage, t0: float) -> StageResult:
    """Execute one stage; its trace rows say which stage they belong to, and their times count
    from `t0` (the pattern's start), not from the stage's own."""
    if not stage.item_list:
        return StageResult(Tally(), tasks=0, wall_s=0.0)
    offset = time.perf_counter() - t0
    result = execute(strategy, stage)
    for row in result.trace:
        row["stage"] = stage.label
        row["t_s"] = round(row["t_s"] + offset, 6)
        if "submitted_s" in row:
            row["submitted_s"] = round(row["submitted_s"] + offset, 6)
    return result


def run_concurrently(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run the calls at once in threads of this flow, results in call order.

    Each thread runs in a copy of the caller's context, so Prefect sees the current flow run
    and its task runner there, as `task.submit` and subflow calls need.
    """
    if len(calls) <= 1:
        return [call() for call in calls]
    with ThreadPoolExecutor(min(len(calls), MAX_CONCURRENT_STAGES), thread_name_prefix="stage") as pool:
        futures = [pool.submit(contextvars.copy_context().run, call) for call in calls]
        return [f.result() for f in futures]


@dataclass
class Fold:
    """Results of a pattern's stages folded into one StageResult (see the module docstring)."""

    started: float = field(default_factory=time.perf_counter)
    tally: Tally = field(default_factory=Tally)
    tasks: int = 0
    batch_sizes: Counter[int] = field(default_factory=Counter)
    trace: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, result: StageResult, counted: bool) -> None:
        if counted:
            self.tally.merge(result.tally)
        else:  # its items are counted in the counted stage: keep only the work it did
            self.tally.compute_s += result.tally.compute_s
            self.tally.retries += result.tally.retries
        self.tasks += result.tasks
        self.batch_sizes.update(result.batch_sizes)
        self.trace.extend(result.trace)
        self.notes.extend(n for n in result.notes if n not in self.notes)

    def result(self, *, flow_runs: int, routes: str) -> StageResult:
        trace = sorted(self.trace, key=lambda row: row.get("t_s", 0.0))
        # One line for the whole pattern instead of the adaptive strategy's line per stage.
        notes = [n for n in self.notes if not n.endswith(_INLINE_NOTE)]
        inline = [row for row in trace if row.get("mode") == "inline"]
        if inline:
            stages = len({row.get("stage") for row in inline})
            notes.append(f"{len(inline)} batches ({sum(r['items'] for r in inline)} items) in {stages} "
                         f"stage(s){_INLINE_NOTE}")
        return StageResult(self.tally, self.tasks, time.perf_counter() - self.started, self.batch_sizes,
                           trace, notes, flow_runs=flow_runs, routes=routes)


_INLINE_NOTE = " ran inline in the flow process"  # how harness.adaptive words its note


def describe_counts(counts: dict[str, int]) -> str:
    """`{"fast": 120, "standard": 60}` -> "fast=120;standard=60" (the runs.csv `routes` form)."""
    return ";".join(f"{name}={n}" for name, n in counts.items())


@dataclass
class PatternRun:
    """One run of a pattern: what its flow needs, registered under a short key (Prefect pickles
    a flow's parameters into every task context; this holds a Dask client and the workload)."""

    spec: Any  # WorkloadSpec
    options: Any  # the pattern's typed options (harness.workload.pattern_options)
    strategy: Strategy
    stage: Stage  # the items to run (all, or run.py's sample) and how
    runtime: Any
    variant: str  # "dynamic" or "twin"
    label: RunLabel | None = None  # the flow run's name and tags in the Prefect UI
    t0: float = field(default_factory=time.perf_counter)
    progress: SharedProgress = field(init=False)

    def __post_init__(self) -> None:
        self.progress = SharedProgress(self.stage.on_progress)
        if self.label is None:
            self.label = RunLabel(self.spec.name, str(self.strategy), variant=self.variant)

    def counted_stage(self, items: list[Item], label: str) -> ItemStage:
        """A stage whose outcomes are the run's (see the module docstring): it drives progress."""
        return sub_stage(self.stage, items, label, self.progress.stage(label))


# Calls waiting for their flow run, by key: (the body to run, its argument).
_pending: dict[str, tuple[Callable[[Any], Any], Any]] = {}


def _run_pending(call_key: str, strategy: str = "", items: int = 0, batch_size: int | None = None,
                 stage: str = "") -> Any:
    """The flow function of every pattern: run the body registered under `call_key`. The other
    parameters are only there to be read in the Prefect UI (labels.shown_parameters)."""
    from prefect.context import TagsContext

    body, value = _pending[call_key]
    # The flow run is tagged (call_flow); its task runs are not: Prefect makes an API call per
    # tagged task run for tag concurrency limits, an overhead the measurement must not carry.
    with TagsContext(current_tags=set()):
        return body(value)


def pattern_flow(name: str) -> Flow:
    """A flow named `name` that runs the body `call_flow` hands it.

    Prefect ships the flow object (and so its function) and its parameters to the Dask
    workers with every task, so the flow takes a short key, not the run (which holds the
    workload and a Dask client that cannot be pickled), and its function is this module's
    `_run_pending`, which workers unpickle by reference. Keep the flow a module-level object of
    its pattern, so that each is built once.
    """
    return flow(_run_pending, name=name, validate_parameters=False, persist_result=False)


def strategy_parameters(strategy: Strategy, items: int, stage: str = "") -> dict[str, Any]:
    """The readable parameters of a flow running `strategy` over `items` items."""
    batch_size = 1 if strategy.kind == "per_item" else strategy.batch_size  # None: chosen at run time
    return shown_parameters(str(strategy), items, batch_size, stage)


def call_flow(flow_obj: Flow, body: Callable[[T], Any], value: T, runtime: Any, name: str | None = None, *,
              label: RunLabel | None = None, parameters: dict[str, Any] | None = None) -> Any:
    """Run `body(value)` in `flow_obj` (renamed `name` if given, on the runtime's Dask task
    runner), its flow run named and tagged by `label` and showing `parameters`; inside a running
    flow this makes it a subflow."""
    key = uuid.uuid4().hex
    _pending[key] = (body, value)
    options: dict[str, Any] = {"task_runner": runtime.task_runner()}
    if name is not None:
        options["name"] = name
    if label is not None:  # a template Prefect formats with the parameters: braces doubled
        options["flow_run_name"] = label.flow_run_name.replace("{", "{{").replace("}", "}}")
    try:
        with tags(*(label.tags if label is not None else ())):
            return flow_obj.with_options(**options)(key, **(parameters or {}))
    finally:
        del _pending[key]


def launch(flow_obj: Flow, body: Callable[[PatternRun], StageResult], run: PatternRun) -> StageResult:
    """Run a pattern: its body inside `flow_obj` (as "<workload>-<flow>-<variant>") for Prefect
    strategies; for the reference strategies (raw_dask, joblib_auto) the same body bare."""
    if not is_prefect(run.strategy):
        return body(run)
    with run.runtime.submitting():
        return call_flow(flow_obj, body, run, run.runtime, f"{run.spec.name}-{flow_obj.name}-{run.variant}",
                         label=run.label, parameters=strategy_parameters(run.strategy, run.stage.items))
