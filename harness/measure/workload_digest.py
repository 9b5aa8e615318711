"""The workload digest: a hash of the normalized workload (every table of the file but [run],
[cluster] and the description) and of the items it generates, recorded in env.json so that
`compare` can refuse two runs of different work."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any


def workload_digest(spec: Any, expected_compute_s: float) -> str:
    """sha256 of the normalized workload and its items' total generated cost (12 hex digits)."""
    fields = {k: v for k, v in dataclasses.asdict(spec).items()
              if k not in ("run", "cluster", "source", "description")}
    text = json.dumps({"spec": fields, "items_compute_s": round(expected_compute_s, 6)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
