"""Quieter Prefect and Dask loggers while a run is up."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

# Loggers already configured by the time the settings apply: a benchmark's console output is
# its progress and its report, not a line per flow run and per Dask life-cycle event.
QUIET_LOGGERS = ("prefect", "distributed")
# Injected faults fail tasks on purpose; each is counted in runs.csv, not logged as an ERROR.
TASK_RUN_LOGGER = "prefect.task_runs"


@contextlib.contextmanager
def quiet_loggers() -> Iterator[None]:
    """Prefect's and Dask's loggers at WARNING, task-run failures silent; levels restored on exit."""
    import distributed  # noqa: F401  (creates its loggers, some with levels of their own)

    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in QUIET_LOGGERS]
    names += list(QUIET_LOGGERS)
    saved = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.WARNING)
    saved.setdefault(TASK_RUN_LOGGER, logging.getLogger(TASK_RUN_LOGGER).level)
    logging.getLogger(TASK_RUN_LOGGER).setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
