"""A cache of one migrated Prefect database, copied into each new server's home.

A server on a fresh SQLite database spends most of its start-up migrating it; one seeded with
an already-migrated copy skips that (docs/runtime-notes.md, "Server start-up and the database
template"). Copies go through SQLite's backup API, never a raw file copy, so a copy is a
consistent database even if the source has a journal or WAL beside it. A template that fails
SQLite's quick check is deleted and rebuilt by the next server that migrates a fresh database.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from harness.runtime.cache import cache_dir

DB_NAME = "prefect.db"


def template_path() -> Path:
    """One template per Prefect release: a database migrated by a newer Prefect carries
    migrations an older server does not know, so one venv's cache must not seed another's."""
    from importlib.metadata import version

    return cache_dir() / "template" / version("prefect") / DB_NAME


def _read_only_uri(path: Path) -> str:
    return f"{path.resolve().as_uri()}?mode=ro"


def copy_database(source: Path, target: Path) -> None:
    """`source` into a new database at `target`, page by page through SQLite's backup API."""
    with contextlib.closing(sqlite3.connect(_read_only_uri(source), uri=True)) as src, \
            contextlib.closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


def database_damage(path: Path) -> str | None:
    """None if `path` opens as an SQLite database and passes its quick check, else what is wrong."""
    try:
        with contextlib.closing(sqlite3.connect(_read_only_uri(path), uri=True)) as db:
            rows = db.execute("PRAGMA quick_check").fetchall()
            if not db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                return "it holds no tables"
    except sqlite3.DatabaseError as exc:
        return str(exc)
    if rows != [("ok",)]:
        return "; ".join(str(r[0]) for r in rows[:3])
    return None


def seed_home(home: Path, on_event: Callable[[str], None] | None = None) -> bool:
    """Copy the template into a new server home; False if there is no sound template (a
    damaged one is deleted, said through `on_event`, and rebuilt once this server answers)."""
    template = template_path()
    if not template.exists():
        return False
    damage = database_damage(template) or _holds_runs(template)
    if damage is not None:
        template.unlink(missing_ok=True)
        if on_event:
            on_event(f"the cached Prefect database template {template} was damaged ({damage}): "
                     "deleted; this server migrates a fresh database and becomes the new template")
        return False
    copy_database(template, home / DB_NAME)
    return True


def _holds_runs(path: Path) -> str | None:
    """What makes a sound database unfit as a template: flow runs in it (an older harness saved
    the template when a server stopped, with the runs made on it), or None."""
    with contextlib.closing(sqlite3.connect(_read_only_uri(path), uri=True)) as db:
        try:
            runs = db.execute("SELECT count(*) FROM flow_run").fetchone()[0]
        except sqlite3.Error:
            return None  # no flow_run table: not a Prefect database this check knows
    return f"it holds {runs} flow runs" if runs else None


def save_template(db: Path) -> None:
    """Keep the first cleanly migrated database `db` (its server answering, no run in it yet), so
    later servers skip the migrations. The backup API copies it consistently while it is open."""
    template = template_path()
    if template.exists() or not db.exists() or database_damage(db) is not None:
        return
    tmp = template.with_suffix(f".{os.getpid()}.tmp")  # atomic: concurrent runs never see half a file
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        tmp.unlink(missing_ok=True)
        copy_database(db, tmp)
        tmp.replace(template)
    except (OSError, sqlite3.Error):  # a full disk, a read-only cache: the next server migrates, as this one did
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
