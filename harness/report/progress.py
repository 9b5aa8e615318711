"""A live progress line for long runs (rich, which Prefect already ships): items done, throughput
and the current batch size of the stage being measured. Quiet when stderr is not a terminal,
so logs, pipes and CI output stay clean.

Mechanism only: strategies call `Stage.on_progress(items_done)` after each finished task; the
batch size shown is the growth of that count since the previous call (the items of the task
that just finished), so no strategy has to report it separately.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Self, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

# Redraw at most this often: a per_item stage reports hundreds of tasks a second, and
# redrawing each costs the flow process (the serial bottleneck: docs/runtime-notes.md) more than the task.
REFRESH_PER_SECOND = 4


class ProgressDisplay:
    """`with ProgressDisplay() as show: stage.on_progress = show.stage("static:64", n)`."""

    def __init__(self, stream: TextIO | None = None, *, force: bool | None = None) -> None:
        stream = stream or sys.stderr
        self.console = Console(file=stream, force_terminal=force)
        self.enabled = self.console.is_terminal if force is None else force
        self._progress = Progress(
            TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>10} items/s  batch {task.fields[batch]:>6}"), TimeElapsedColumn(),
            console=self.console, disable=not self.enabled, transient=True,
            refresh_per_second=REFRESH_PER_SECOND,
        )
        self._current: object | None = None

    def __enter__(self) -> Self:
        self._progress.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._progress.__exit__(exc_type, exc, tb)

    def _replace(self, name: str, total: int | None, **fields: str) -> object:
        if self._current is not None:
            self._progress.remove_task(self._current)
        self._current = self._progress.add_task(name, total=total, **fields)
        return self._current

    def startup(self, name: str) -> None:
        """Show a start-up stage (server, cluster, worker check, warm-up) and its elapsed time."""
        self._replace(f"start-up: {name}", None, rate="", batch="—")

    def stage(self, name: str, items: int) -> StageLine:
        """Start a progress bar for one measured stage and return its `on_progress` callback."""
        return StageLine(self._progress, self._replace(name, items, rate="—", batch="—"))

    @property
    def rows(self) -> list[dict[str, object]]:
        """What the display shows now (for tests and for a final summary)."""
        return [{"name": t.description, "completed": t.completed, "total": t.total, **t.fields}
                for t in self._progress.tasks]


class StageLine:
    """One measured stage's progress line: call it with the items finished so far; `submitted`
    shows tasks submitted while no result has arrived yet (per_item's first window)."""

    def __init__(self, progress: Progress, task: object) -> None:
        self._progress, self._task = progress, task
        self._started = time.perf_counter()
        self._last = 0

    def __call__(self, done: int) -> None:
        batch, self._last = done - self._last, done
        elapsed = time.perf_counter() - self._started
        rate = f"{done / elapsed:,.0f}" if elapsed > 0 else "—"
        self._progress.update(self._task, completed=done, rate=rate, batch=str(batch))

    def submitted(self, tasks: int) -> None:
        self._progress.update(self._task, rate=f"{tasks:,} sent")
