"""A cache of one migrated Prefect database, copied into each new server's home.

A server on a fresh SQLite database spends most of its start-up migrating it; one seeded with
an already-migrated copy skips that (docs/runtime-notes.md, "Server start-up and the database
template").
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from harness.runtime.cache import cache_dir

DB_NAME = "prefect.db"


def template_path() -> Path:
    """One template per Prefect release: a database migrated by a newer Prefect carries
    migrations an older server does not know, so one venv's cache must not seed another's."""
    from importlib.metadata import version

    return cache_dir() / "template" / version("prefect") / DB_NAME


def seed_home(home: Path) -> bool:
    """Copy the template into a new server home; False if there is no template yet."""
    template = template_path()
    if not template.exists():
        return False
    shutil.copyfile(template, home / DB_NAME)
    return True


def save_template(home: Path) -> None:
    """Keep the first cleanly migrated database, so later servers skip the migrations."""
    template = template_path()
    db = home / DB_NAME
    if template.exists() or not db.exists():
        return
    template.parent.mkdir(parents=True, exist_ok=True)
    tmp = template.with_suffix(f".{os.getpid()}.tmp")  # atomic: concurrent runs never see half a file
    shutil.copyfile(db, tmp)
    tmp.replace(template)
