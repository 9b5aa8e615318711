"""Where a run's files go: run ids, and the run folder that appears under its real name only
when complete (written in a hidden partial folder, renamed into place; a killed run's partial
folder removed by the next run), and the files written into it, each whole or not at all.

A disk that fills while the measured records are written keeps them: the partial folder is
renamed `<run id>.incomplete`, and the error names it, the files it holds (each complete) and
the ones missing. Measurements that took minutes are not thrown away for a full disk."""

from __future__ import annotations

import contextlib
import errno
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

# The records a run writes, in the order it writes them: the small ones that a report needs
# first (harness.measure.run), so a disk that fills late loses the least.
RECORD_FILES = ("runs.csv", "env.json", "trace.csv", "tasks.csv", "results.json")
# What a full disk raises: no space left, or the user's quota spent.
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)

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
    partial: Path | None = None  # set before it is made: a Ctrl-C as mkdir returns removes it
    try:
        while True:  # two runs started in the same second may draw the same id: the second redraws
            run_id = given or new_run_id()
            final = parent / run_id
            if given and (final.exists() or any(parent.glob(f".{run_id}.*partial"))):
                raise RunError(f"{final}: run id {run_id} is already taken by another run")
            if final.exists():
                continue
            parent.mkdir(parents=True, exist_ok=True)
            partial = parent / _partial_name(run_id)
            try:
                partial.mkdir()
                break
            except (FileExistsError, FileNotFoundError):  # not found: a failed run just removed parent
                partial = None
        yield partial, final
    except OSError as exc:
        if partial is not None and exc.errno in DISK_FULL_ERRNOS and (partial / RECORD_FILES[0]).exists():
            raise _kept_on_full_disk(partial, parent / f"{run_id}.incomplete", exc) from exc
        _remove(partial, parent, out, made_out)
        raise
    except BaseException:
        _remove(partial, parent, out, made_out)
        raise
    partial.rename(final)
    latest = parent / "latest"
    tmp_link = parent / f".latest.{run_id}"
    tmp_link.symlink_to(run_id)
    tmp_link.replace(latest)


def _remove(partial: Path | None, parent: Path, out: Path, made_out: bool) -> None:
    """A failed run leaves nothing: its partial folder, and the folders made for it if empty."""
    if partial is not None:
        shutil.rmtree(partial, ignore_errors=True)
    for folder in (parent, out) if made_out else (parent,):
        with contextlib.suppress(OSError):  # not empty: another run's, keep it
            folder.rmdir()


def _kept_on_full_disk(partial: Path, kept: Path, exc: OSError) -> RunError:
    """Keep what a run measured when the disk filled while writing it: the partial folder under a
    visible name, and a one-line error saying where, what it holds and what is missing."""
    for part in partial.glob(".*.part"):  # a file cut short by the full disk: never kept
        part.unlink(missing_ok=True)
    partial.rename(kept)
    held = [name for name in RECORD_FILES if (kept / name).exists()]
    missing = [name for name in RECORD_FILES if name not in held]
    then = f" Free space, then `harness report {kept}` draws the report from them." if "env.json" in held else ""
    return RunError(f"{kept}: the disk is full ({os.strerror(exc.errno or errno.ENOSPC)}) while writing the run "
                    f"folder; kept the measurements written: {', '.join(held)} (each complete); missing: "
                    f"{', '.join(missing) or 'nothing'}.{then}")


@contextlib.contextmanager
def written(path: Path) -> Iterator[Path]:
    """A file written whole or not at all: write to the path this yields (a hidden name beside
    `path`), renamed into place once complete, so a full disk never leaves a file cut short."""
    part = path.with_name(f".{path.name}.part")
    try:
        yield part
        part.replace(path)
    finally:
        part.unlink(missing_ok=True)


def write_json(path: Path, data: dict[str, Any]) -> None:
    with written(path) as part:
        part.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
