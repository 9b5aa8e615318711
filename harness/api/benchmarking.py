"""Benchmark a strategy's mapping stage the way pytest-benchmark wants it: the one
implementation behind the pytest plugin's `harness_benchmark` (harness.api.pytest_plugin) and
the harness's own benchmark suite (tests/benchmarks).

How a Prefect strategy is measured: all rounds run inside ONE flow run, and each round times
the mapping stage alone (what runs.csv calls wall_s). A flow run costs a fixed ~0.1-0.3 s of
set-up plus a join of Prefect's heartbeat thread, which sleeps in 1 s steps
(prefect/flow_engine.py `_send_heartbeats`): 0-1 s of uniform noise at every flow exit,
measured 0.75-0.84 s here, more than a whole small stage. Timing whole flow calls would bury a
15 % regression of the stage in that noise.

`benchmark` below is a pytest-benchmark fixture (anything with `pedantic` and `extra_info`),
or None: the same rounds then run in a plain loop, untimed by pytest-benchmark. This module
imports no pytest.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.errors import RunError, SpecError
from harness.workload.vocabulary import STATIC, Strategy

if TYPE_CHECKING:
    from harness.analysis.stats import Ratio
    from harness.strategies import Stage, StageResult
    from harness.work.shipped import ShippedFunction

# Items of the warm-up before a call's rounds, per worker thread: two tasks of one item each per
# thread (static:1), so that every worker has run a Prefect task (its first imports Prefect's
# task engine, ~1-2 s) and unpickled the function (and imported what it imports) before any
# round is timed. A few tasks cost ~0.1-0.3 s; timing a cold first round cost up to 2 s here.
WARM_UP_TASKS_PER_THREAD = 2


# The harness's modules a measurement imports, imported before anything starts (`import_up_front`).
UP_FRONT = ("harness.strategies", "harness.work", "harness.policy", "harness.analysis")
UP_FRONT_MODULES = ("harness.patterns.flat_map", "harness.runtime", "harness.api.local_runtime")


def import_up_front() -> None:
    """Import in this (the main) thread what a measurement would import later on other threads
    (a strategy's module on the flow's, a result's classes on the Dask client's). pytest rewrites
    the asserts of every module of a distribution with a pytest11 entry point, so each first
    import parses the module's source, and CPython 3.11 parsing on two threads at once fails
    with "SystemError: AST constructor recursion depth mismatch" (python/cpython#106905,
    pytest-dev/pytest#10763): it did here, one child pytest run in three."""
    import importlib
    import pkgutil

    for name in UP_FRONT:
        package = importlib.import_module(name)
        for module in pkgutil.iter_modules(package.__path__, f"{name}."):
            importlib.import_module(module.name)
    for name in UP_FRONT_MODULES:
        importlib.import_module(name)


@contextlib.contextmanager
def one_flow_run(runtime: Any, flow_name: str) -> Iterator[Callable[[Callable[[], Any]], Any]]:
    """`with one_flow_run(rt, name) as inside: inside(fn)` runs `fn` inside one real flow run.

    It reuses the harness's own map flow (harness.patterns.flat_map), whose function the Dask
    workers import by reference (a flow defined in a test module would not unpickle there), and
    hands it `fn` as the body of that one call (harness.patterns.stages.call_flow).
    `runtime` is a harness.runtime.Runtime (LocalRuntime.runtime, or open_runtime's).
    """
    from harness.patterns import flat_map
    from harness.patterns.stages import call_flow

    def inside(fn: Callable[[], Any]) -> Any:
        with runtime.submitting():
            return call_flow(flat_map.mapped_stage, lambda _: fn(), None, runtime, flow_name)

    yield inside


@dataclass
class Measured:
    """Every round of one strategy: the StageResults, however pytest-benchmark was configured
    (with --benchmark-disable it runs the target once and keeps no stats; these remain)."""

    strategy: str
    results: list[StageResult] = field(default_factory=list)
    worker_threads: int = 1

    @property
    def walls(self) -> list[float]:
        return [r.wall_s for r in self.results]

    @property
    def wall_s(self) -> float:
        return statistics.median(self.walls)

    @property
    def tasks(self) -> int:
        return round(statistics.median(r.tasks for r in self.results))

    @property
    def items(self) -> int:
        return self.results[0].tally.items

    @property
    def overhead_per_task_s(self) -> float:
        """Median over rounds of (wall x threads - compute) / tasks, as runs.csv defines it."""
        return statistics.median(
            max(0.0, r.wall_s * self.worker_threads - r.tally.compute_s) / max(r.tasks, 1) for r in self.results
        )

    def extra_info(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "rounds": len(self.results),
            "items": self.items,
            "tasks": self.tasks,
            "stage_wall_s_median": round(self.wall_s, 4),
            "items_per_s": round(self.items / self.wall_s, 1),
            "overhead_per_task_ms": round(self.overhead_per_task_s * 1000, 2),
            "compute_s_median": round(statistics.median(r.tally.compute_s for r in self.results), 4),
        }


def time_rounds(benchmark: Any | None, strategy: Strategy, make_stage: Callable[[], Stage], rounds: int,
                worker_threads: int) -> Measured:
    """`rounds` rounds of `strategy`, each on a fresh stage from `make_stage`, timed by
    pytest-benchmark's pedantic mode when `benchmark` is given (the stage is built in its
    setup, untimed). A Prefect strategy must be inside a flow run (`one_flow_run`)."""
    from harness.strategies import execute

    record = Measured(str(strategy), worker_threads=worker_threads)

    def fresh_stage() -> tuple[tuple[Strategy, Stage], dict[str, Any]]:
        return (strategy, make_stage()), {}

    def one_round(name: Strategy, stage: Stage) -> StageResult:
        result = execute(name, stage)
        record.results.append(result)
        return result

    if benchmark is None:
        for _ in range(rounds):
            args, _ = fresh_stage()
            one_round(*args)
    else:
        benchmark.pedantic(one_round, setup=fresh_stage, rounds=rounds, iterations=1, warmup_rounds=0)
    return record


def measure_strategy(benchmark: Any | None, runtime: Any, make_stage: Callable[[], Stage], strategy: Strategy,
                     rounds: int) -> Measured:
    """`time_rounds` of one strategy, inside one flow run of its own when it is a Prefect one
    (the reference strategies run bare), its figures added to the benchmark's extra_info."""
    def all_rounds() -> Measured:
        return time_rounds(benchmark, strategy, make_stage, rounds, runtime.worker_threads)

    if strategy.needs_flow:
        with one_flow_run(runtime, f"bench-{strategy.kind}") as inside:
            record = inside(all_rounds)
    else:
        record = all_rounds()
    if benchmark is not None:
        benchmark.extra_info.update(record.extra_info())
    return record


# ----------------------------------------------------------------------------- a user's function


@dataclass(frozen=True)
class StrategyResults:
    """What `harness_benchmark(...)` returns: every strategy's rounds of one call."""

    measured: dict[str, Measured]  # by strategy name, in the order given

    @property
    def strategies(self) -> list[str]:
        return list(self.measured)

    def _of(self, strategy: str) -> Measured:
        if strategy not in self.measured:
            raise SpecError(f"harness_benchmark result: found strategy {strategy!r}, expected one this call "
                            f"measured: {', '.join(self.measured)}")
        return self.measured[strategy]

    def median(self, strategy: str) -> float:
        """The median over rounds of the strategy's mapping stage, in seconds."""
        return self._of(strategy).wall_s

    def ratio(self, a: str, b: str) -> Ratio:
        """median(a) / median(b) with the exact distribution-free 95 % interval of the
        harness's statistics (harness.analysis.stats.ratio): `.value`, `.low`, `.high`; `low` and
        `high` are NaN when the rounds are too few for an interval (4 a side at least)."""
        from harness.analysis.stats import ratio

        return ratio(a, self._of(a).walls, b, self._of(b).walls)

    @property
    def identical(self) -> bool:
        """Every round of every strategy returned the same results (the same checksum of the
        results' digests, harness.work.outcomes.Tally)."""
        return len({(r.tally.items_ok, r.tally.checksum) for m in self.measured.values() for r in m.results}) == 1

    @property
    def best_static(self) -> str | None:
        """The static:N of this call with the smallest median, if it measured any."""
        statics = [name for name in self.measured if STATIC.read(name) is not None]
        return min(statics, key=self.median) if statics else None


def user_stage_maker(kernel: ShippedFunction, values: Sequence[Any], runtime: Any,
                     indices: Sequence[int] | None = None) -> Callable[[], Stage]:
    """Fresh stages over the user's items (all of them, or `indices`), run by `kernel`."""
    from harness.strategies import Stage
    from harness.work.user_task import ItemList
    from harness.workload.spec import (BENCHMARK_SOURCE, FaultSpec, ItemsSpec, RunSpec, TaskSpec,
                                       WorkloadSpec)

    # The strategies read [faults] and [items] payload_bytes of the spec; the function itself
    # travels in `kernel`, so the task reference only names where it came from.
    spec = WorkloadSpec(name="harness-benchmark", items=ItemsSpec(count=len(values)),
                        task=TaskSpec("harness_benchmark:function"), faults=FaultSpec(retries=kernel.retries),
                        run=RunSpec(strategies=(Strategy("adaptive"),)), source=BENCHMARK_SOURCE)
    workload = ItemList(values, spec)

    def make() -> Stage:
        return Stage(workload, indices, kernel, kernel.retries, runtime.worker_threads, runtime.client)

    return make


def _check_outcomes(record: Measured, kernel: ShippedFunction) -> None:
    for result in record.results:
        tally = result.tally
        if tally.items_failed:
            first = "; ".join(f"item {i}: {why}" for i, why in tally.failure_examples[:3]) or \
                ", ".join(f"{n} {error}" for error, n in tally.errors.items())
            raise RunError(f"harness_benchmark: {kernel.name} raised on {tally.items_failed} of {tally.items} items "
                           f"under {record.strategy} ({first}); a benchmark needs a function that succeeds on every item")


def measure_function(runtime: Any, kernel: ShippedFunction, values: Sequence[Any], strategies: Sequence[Strategy],
                     rounds: int, fixture_for: Callable[[Strategy], Any | None], flow_name: str) -> StrategyResults:
    """Every strategy's `rounds` rounds of `kernel` over `values`, after a warm-up, inside one
    flow run (when any strategy needs one); each strategy timed by the pytest-benchmark fixture
    `fixture_for(strategy)` gives (None: untimed), whose extra_info gets the figures and the
    strategy's ratio to the best static size of the call. RunError when the function raised."""
    threads = max(1, runtime.worker_threads)
    warm = list(range(min(len(values), WARM_UP_TASKS_PER_THREAD * threads)))
    fixtures = {s: fixture_for(s) for s in strategies}

    def everything() -> StrategyResults:
        warm_up = Strategy("static", 1) if any(s.needs_flow for s in strategies) else Strategy("raw_dask", 1)
        time_rounds(None, warm_up, user_stage_maker(kernel, values, runtime, warm), 1, threads)
        make = user_stage_maker(kernel, values, runtime)
        measured = {}
        for strategy in strategies:
            record = time_rounds(fixtures[strategy], strategy, make, rounds, runtime.worker_threads)
            _check_outcomes(record, kernel)
            measured[str(strategy)] = record
        return StrategyResults(measured)

    if any(s.needs_flow for s in strategies):
        with one_flow_run(runtime, flow_name) as inside:
            results = inside(everything)
    else:
        results = everything()
    best = results.best_static
    for strategy, fixture in fixtures.items():
        if fixture is None:
            continue
        info = results.measured[str(strategy)].extra_info()
        info["identical_results"] = results.identical
        if best is not None:
            info["best_static"] = best
            info["over_best_static"] = round(results.median(str(strategy)) / results.median(best), 3)
        fixture.extra_info.update(info)
    return results


# ----------------------------------------------------------------------------- the session's runtime


class SessionRuntime:
    """The runtime a pytest session's benchmarks run on: opened (harness.local_runtime) on first
    use, closed by `close()`. A call asking another shape (workers, threads per worker) closes
    the open one and opens that shape: one runtime at a time. With `address` (an existing Dask
    scheduler) or `fixed` (a runtime someone else opened) the shape is what that cluster has."""

    def __init__(self, *, address: str = "", profile: str = "stock", fixed: Any = None) -> None:
        self.address = address
        self.profile = profile
        self._fixed = fixed
        self._stack: contextlib.ExitStack | None = None
        self._shape: tuple[int, int] | None = None
        self._runtime: Any = fixed
        self._failed: str = ""

    def get(self, workers: int, threads_per_worker: int) -> Any:
        """The harness.runtime.Runtime to run on; RunError/SpecError when it cannot start (the
        same error again at every later call, without a second attempt)."""
        if self._fixed is not None:
            return self._fixed
        if self._failed:
            raise RunError(f"{self._failed} (the session's runtime failed to start earlier)")
        shape = (workers, threads_per_worker)
        if self._runtime is not None and (self.address or shape == self._shape):
            return self._runtime
        self.close()
        from harness.api.local_runtime import local_runtime

        stack = contextlib.ExitStack()
        try:
            opened = stack.enter_context(local_runtime(workers, threads_per_worker, address=self.address or None,
                                                       profile=self.profile))
        except Exception as exc:
            stack.close()
            self._failed = str(exc) or type(exc).__name__
            raise
        self._stack, self._shape, self._runtime = stack, shape, opened.runtime
        return self._runtime

    def close(self) -> None:
        if self._stack is not None:
            stack, self._stack, self._runtime, self._shape = self._stack, None, None, None
            stack.close()


def positive_int(value: Any, where: str) -> int:
    """`value` as a whole number >= 1 (not a bool); SpecError naming `where` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"{where}: found {value!r}, expected a whole number >= 1")
    return value
