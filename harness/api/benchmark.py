"""`harness.benchmark`: the `run` command as a function, on a Python function and items.

    from harness import benchmark
    result = benchmark(peak, list(range(10_000)), strategies=["per_item", "static:64", "adaptive"])
    result.folder, result.runs        # the run folder, runs.csv as a DataFrame
    result.server_load                # per strategy: task runs, state changes, API requests per 1,000 items

The function runs in worker processes, which import it by reference ("module:attribute"),
exactly as a workload file's `[task] function`: it must be a module-level function of an
importable module. A function defined in the script you run (`__main__`) works when the script
is a file whose top-level code is guarded by `if __name__ == "__main__":` (the workers import
the script as a module by its file name); lambdas, nested functions and functions typed into
an interactive session cannot be imported, and are refused with a message saying so.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.server_load import per_thousand_items
from harness.errors import SpecError
from harness.measure.records import read_runs
from harness.workload.spec import (BENCHMARK_SOURCE, ClusterSpec, FaultSpec, ItemsSpec, RunSpec, TaskSpec, WorkloadSpec,
                          parse_strategy)
from harness.work.async_items import is_async_function
from harness.work.user_task import (ItemList, UserFunction, UserTask, check_items, check_max_concurrency, remember,
                                    take_items)

# The options `benchmark` takes besides its named parameters, and the workload-file key each stands for.
_OPTIONS = {"name": "name", "workers": "[cluster] workers", "threads_per_worker": "[cluster] threads_per_worker",
            "address": "[cluster] address", "retries": "[faults] retries", "batch_function": "[task] batch_function",
            "max_concurrency": "[task] max_concurrency", "profile": "--profile",
            "on_event": "progress messages (a callable taking a str)"}


@dataclass(frozen=True)
class BenchmarkResult:
    """What `benchmark` returns: the run folder and its runs.csv."""

    folder: Path
    runs: pd.DataFrame

    @property
    def server_load(self) -> pd.DataFrame:
        """What each strategy sent the Prefect API per 1,000 items (runs.csv's prefect_* columns,
        medians over repeats): columns task_runs, state_changes, api_requests, one row per strategy."""
        return per_thousand_items(self.runs)

    def __iter__(self):  # so that `folder, runs = benchmark(...)` works too
        return iter((self.folder, self.runs))


def function_reference(fn: Callable[..., Any], what: str = "fn") -> tuple[str, str]:
    """("module:qualname", the folder to import it from) for a function the workers can import."""
    if not callable(fn):
        raise SpecError(f"harness.benchmark: {what}: found a {type(fn).__name__}, expected a function")
    module_name = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if not module_name or not qualname:
        raise SpecError(f"harness.benchmark: {what}: found {fn!r}, expected a module-level function "
                        f"(worker processes import it by reference)")
    if "<lambda>" in qualname or "<locals>" in qualname:
        raise SpecError(f"harness.benchmark: {what}: found {qualname!r} in module {module_name!r}, a lambda or a "
                        f"function defined inside another one; worker processes import the function by reference, "
                        f"expected a function defined at the top level of a module (def, not lambda)")
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    if module_name == "__main__":
        if not file:
            raise SpecError(f"harness.benchmark: {what}: found {qualname!r} defined in an interactive session "
                            f"(__main__ has no file); worker processes import the function by reference, expected "
                            f"it in a module file (e.g. tasks.py next to your notebook: from tasks import {qualname})")
        # The workers import the script as a module by its file name; its `if __name__ == "__main__":`
        # block does not run there.
        return f"{Path(file).stem}:{qualname}", str(Path(file).resolve().parent)
    if not file:
        return f"{module_name}:{qualname}", ""
    root = Path(file).resolve().parent
    depth = module_name.count(".") + (1 if Path(file).name == "__init__.py" else 0)
    for _ in range(depth):
        root = root.parent
    return f"{module_name}:{qualname}", str(root)


def benchmark(fn: Callable[[Any], Any], items: Iterable[Any], *, strategies: Sequence[str] = ("per_item", "static:64",
              "adaptive"), sweep: Sequence[int] = (), repeats: int = 3, out: str | Path = "results",
              **options: Any) -> BenchmarkResult:
    """Run `fn` over `items` under every strategy (and `static:N` for each N of `sweep`), `repeats`
    times, as `harness run` does with a workload file's `[task]`; return the run folder and runs.csv.

    Options: name (the run's name, default the function's), workers and threads_per_worker (the
    local cluster), address (an existing Dask scheduler), retries (per failing call, default 3),
    batch_function (a plain function taking a list of items, returning a list of results; an
    async def one is refused: pass an async fn instead, its items run concurrently in each task),
    max_concurrency (for an async def fn, the most items one task awaits at once, under every strategy), profile
    ("stock" by default: your tasks see the settings your process has; "lean" leaves Prefect's
    settings out of each task's context: docs/prefect-and-dask.md, "The lean profile"), on_event (a callable given progress messages). Raises SpecError on bad input, before
    anything starts; the report is written into the run folder as by `harness run`.
    """
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise SpecError(f"harness.benchmark: unknown option {unknown[0]!r}, expected one of {', '.join(_OPTIONS)}")
    ref, folder = function_reference(fn)
    remember(ref, folder, fn)  # in this process, the object itself: a script is not imported twice
    batch_ref = ""
    if options.get("batch_function") is not None:
        batch_fn = options["batch_function"]
        batch_ref, batch_folder = function_reference(batch_fn, "batch_function")
        if is_async_function(batch_fn):  # as a workload file's [task] batch_function is (load_task)
            raise SpecError(f"harness.benchmark: batch_function: found {batch_ref!r}, an async def function; async "
                            f"batch functions are not supported, expected a plain one. Pass the per-item async def "
                            f"as fn without batch_function: its items already run concurrently in each task")
        remember(batch_ref, batch_folder, batch_fn)
        if batch_folder != folder:
            raise SpecError("harness.benchmark: batch_function: expected it in the same folder as fn")
    values = take_items(items, None, "harness.benchmark: items",  # an endless iterable stops at the limit
                        remedy="pass the first N, e.g. itertools.islice(items, N)")
    check_items(values, "harness.benchmark: items")
    name = options.get("name") or ref.rpartition(":")[2].lower().replace(".", "-")
    try:
        cluster = ClusterSpec(**{k: options[k] for k in ("workers", "threads_per_worker", "address") if k in options})
        run = RunSpec(strategies=tuple(parse_strategy(s, "harness.benchmark: strategies") for s in strategies),
                      sweep=tuple(sweep), repeats=repeats)
        faults = FaultSpec(retries=options.get("retries", 3))
        task_spec = TaskSpec(ref, batch_ref, max_concurrency=options.get("max_concurrency"))
        spec = WorkloadSpec(name=name, items=ItemsSpec(count=len(values)), task=task_spec,
                            faults=faults, cluster=cluster, run=run, source=BENCHMARK_SOURCE)
    except SpecError:
        raise
    except Exception as exc:  # noqa: BLE001 - pydantic's message names the argument
        raise SpecError(f"harness.benchmark: {exc}") from None
    check_max_concurrency(ref, folder, task_spec.max_concurrency, "harness.benchmark: max_concurrency")
    task = UserTask(UserFunction(ref, batch_ref, folder, faults.retries, max_concurrency=task_spec.max_concurrency),
                    ItemList(values, spec), f"{len(values)} items given to harness.benchmark")

    from harness.report.run_report import write_report
    from harness.measure.run import run_workload

    folder_out = run_workload(spec, Path(out), profile=options.get("profile", "stock"), task=task,
                              on_event=options.get("on_event"), on_committed=write_report)
    return BenchmarkResult(folder_out, read_runs(folder_out))
