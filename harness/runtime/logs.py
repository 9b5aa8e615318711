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
