"""Dask workers ready for a user's task: the workload file's folder on every worker's sys.path,
and a preflight that names any worker that still cannot import the function (exit 2).

A WorkerPlugin rather than a one-off `client.run`: Dask runs a registered plugin's `setup` on
every worker that joins later too (a restarted worker, a scaled-up cluster). Items of the
user's own classes are unpickled on the worker before the task's function runs, so the path
must be there before any task arrives, not added lazily by the kernel.
"""

from __future__ import annotations

import sys
from typing import Any

from distributed import WorkerPlugin

from harness.errors import SpecError
from harness.work.user_task import UserFunction


class ImportPathPlugin(WorkerPlugin):
    """Put one folder first on sys.path of every worker (idempotent)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.name = f"harness-import-path-{folder}"

    def setup(self, worker: Any) -> None:
        if self.folder not in sys.path:
            sys.path.insert(0, self.folder)


def _check_import(kernel: UserFunction) -> str:
    return kernel.check_import()


def prepare_workers(client: Any, kernel: UserFunction, source: str) -> None:
    """Register the import path on every worker, then check each can import the function."""
    if kernel.folder:
        client.register_plugin(ImportPathPlugin(kernel.folder))
    problems = {worker: why for worker, why in client.run(_check_import, kernel).items() if why}
    if problems:
        worker, why = sorted(problems.items())[0]
        others = f" (and {len(problems) - 1} other workers)" if len(problems) > 1 else ""
        raise SpecError(f"{source}: [task] function: worker {worker}{others} cannot import {why}; expected every "
                        f"Dask worker to import the module: on a cluster of your own, install it there or put its "
                        f"folder on the workers' PYTHONPATH (README \"Measure your own task\")")
