"""Where a run's files go: run ids, and the run folder that appears under its real name only
when complete (written in a hidden partial folder, renamed into place; a killed run's partial
folder removed by the next run), and the JSON files written into it."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from harness.errors import RunError

def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def fresh_run_id(out: Path, workload: str) -> str:
    """A run id no folder under out/<workload> has yet (nothing is created: run_folder does)."""
    parent = Path(out) / workload
    while True:
        run_id = new_run_id()
        if not (parent / run_id).exists() and not any(parent.glob(f".{run_id}.*partial")):
            return run_id


def _partial_name(run_id: str) -> str:
    """A run's temporary folder: hidden, and named after the process that writes it, so a later
    run can tell a live run's folder (leave it) from a killed one's (remove it)."""
    return f".{run_id}.{os.getpid()}.partial"


def _owner_gone(partial: Path) -> bool:
    """True if the process named in `partial`'s name is gone: not running, or its pid now
    belongs to a process started after the folder was made."""
    try:
        pid = int(partial.name.removesuffix(".partial").rsplit(".", 1)[1])
        made = partial.stat().st_mtime
    except (IndexError, ValueError, OSError):
        return False  # another naming (an older harness's): not ours to judge
    try:
        return psutil.Process(pid).create_time() > made
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def remove_stale_partials(out: Path, workload: str) -> list[Path]:
    """Remove the temporary run folders of `out/workload` whose run was killed; return them."""
    parent = Path(out) / workload
    if not parent.is_dir():
        return []
    stale = [p for p in sorted(parent.glob(".*.partial")) if p.is_dir() and _owner_gone(p)]
    for partial in stale:
        shutil.rmtree(partial, ignore_errors=True)
    return stale


@contextlib.contextmanager
def run_folder(out: Path, workload: str, run_id: str | None = None) -> Iterator[tuple[Path, Path]]:
    """Yield (a temporary folder to write into, the final path). On success the temporary
    folder is renamed into place and `latest` points at it; on any error or interrupt it is
    removed, and so are the folders made for it if they are left empty, so a half-written
    run folder never exists under its real name and a failed run leaves nothing.

    `run_id` is the id the run's flow runs were tagged with (run.py draws it with
    `fresh_run_id` before they start); without one a fresh id is drawn. A given id taken
    meanwhile is a RunError: two runs of one workload into one folder would have to start in
    the same second and draw the same four hex digits.
    """
    out = Path(out)
    parent = out / workload
    made_out = not out.exists()
    given = run_id
    while True:  # two runs started in the same second may draw the same id: the second redraws
        run_id = given or new_run_id()
        final = parent / run_id
        partial = parent / _partial_name(run_id)
        if given and (final.exists() or any(parent.glob(f".{run_id}.*partial"))):
            raise RunError(f"{final}: run id {run_id} is already taken by another run")
        if final.exists():
            continue
        parent.mkdir(parents=True, exist_ok=True)
        try:
            partial.mkdir()
            break
        except (FileExistsError, FileNotFoundError):  # not found: a failed run just removed parent
            continue
    try:
        yield partial, final
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        for folder in (parent, out) if made_out else (parent,):
            with contextlib.suppress(OSError):  # not empty: another run's, keep it
                folder.rmdir()
        raise
    partial.rename(final)
    latest = parent / "latest"
    tmp_link = parent / f".latest.{run_id}"
    tmp_link.symlink_to(run_id)
    tmp_link.replace(latest)


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
