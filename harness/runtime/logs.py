"""Quieter Prefect and Dask loggers while a run is up, in this process and on the workers."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from distributed.diagnostics.plugin import WorkerPlugin

# Loggers already configured by the time the settings apply: a benchmark's console output is
# its progress and its report, not a line per flow run and per Dask life-cycle event.
QUIET_LOGGERS = ("prefect", "distributed")
# Injected faults fail tasks on purpose; each is counted in runs.csv, not logged as an ERROR.
TASK_RUN_LOGGER = "prefect.task_runs"


@contextlib.contextmanager
def quiet_loggers(roots: tuple[str, ...] = QUIET_LOGGERS) -> Iterator[None]:
    """The loggers under `roots` at WARNING, Prefect's task-run failures silent (when "prefect"
    is one of them); levels restored on exit. On a user's own API the harness quiets only Dask's
    ("distributed"): Prefect's loggers are theirs, and they decide what reaches the API."""
    import distributed  # noqa: F401  (creates its loggers, some with levels of their own)

    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in roots]
    names += list(roots)
    saved = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.WARNING)
    if "prefect" in roots:
        saved.setdefault(TASK_RUN_LOGGER, logging.getLogger(TASK_RUN_LOGGER).level)
        logging.getLogger(TASK_RUN_LOGGER).setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


# The worker loggers that report a failed task at ERROR: Prefect's task engine ("Task run
# failed with ...", the exception attached; then "Finished in state Failed('Task run
# encountered an exception NAME: ...')", its name in the text) and Dask's worker ("Compute
# Failed", the exception's repr among its arguments, for the raw_dask references).
WORKER_FAILURE_LOGGERS = ("prefect.task_runs", "distributed.worker")
INJECTED_FAULT_PLUGIN = "harness-quiet-injected-faults"


def _injected_fault_types() -> tuple[type[BaseException], ...]:
    from harness.strategies.resilience import PathFault
    from harness.work.faults import InjectedFault

    return (InjectedFault, PathFault)


class InjectedFaultFilter(logging.Filter):
    """Drops the records of tasks failed by the harness's own injected faults; a user's error
    still logs. Injected faults are counted in runs.csv, so a line each is only noise."""

    def __init__(self) -> None:
        super().__init__()
        self.types = _injected_fault_types()
        names: set[str] = set()
        stack = list(self.types)
        while stack:
            cls = stack.pop()
            names.add(cls.__name__)
            stack.extend(cls.__subclasses__())
        self.reprs = tuple(f"{name}(" for name in names)
        self.in_states = tuple(f"exception {name}: " for name in names)

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            return not isinstance(exc, self.types)
        args = record.args if isinstance(record.args, tuple) else ()
        # distributed.worker's "Compute Failed": args = (key, state, task, exception repr, traceback)
        if len(args) >= 4 and isinstance(args[3], str) and args[3].startswith(self.reprs):
            return False
        if record.levelno >= logging.ERROR and "Finished in state" in str(record.msg):
            return not any(s in record.getMessage() for s in self.in_states)
        return True


class QuietInjectedFaults(WorkerPlugin):
    """A Dask worker plugin: every worker, present and future, gets InjectedFaultFilter on the
    loggers that report failed tasks."""

    name = INJECTED_FAULT_PLUGIN

    def setup(self, worker: object) -> None:
        self.filter = InjectedFaultFilter()
        for name in WORKER_FAILURE_LOGGERS:
            logging.getLogger(name).addFilter(self.filter)

    def teardown(self, worker: object) -> None:
        for name in WORKER_FAILURE_LOGGERS:
            logging.getLogger(name).removeFilter(self.filter)
