"""The harness's cache folder: the migrated-database template, the servers' homes, the PEM."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """HARNESS_CACHE_DIR, else $XDG_CACHE_HOME/harness, else ~/.cache/harness (created)."""
    root = os.environ.get("HARNESS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "harness"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
