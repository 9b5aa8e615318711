"""The workload digest: a hash of the normalized workload (every table of the file but [run],
[cluster] and the description) and of the items it generates (a [task]'s function and items:
harness.work.user_task), recorded in env.json so that `compare` can refuse two runs of different
work."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any


def workload_digest(spec: Any, expected_compute_s: float, task_parts: dict[str, Any] | None = None) -> str:
    """sha256 of the normalized workload, its items' total generated cost and, for a [task], its
    function's and items' parts (UserTask.digest_parts) (12 hex digits)."""
    fields = {k: v for k, v in dataclasses.asdict(spec).items()
              if k not in ("run", "cluster", "source", "description")}
    # A [task] without max_concurrency digests as before the key existed: earlier runs stay comparable.
    if fields.get("task") and fields["task"].get("max_concurrency") is None:
        del fields["task"]["max_concurrency"]
    content = {"spec": fields, "items_compute_s": round(expected_compute_s, 6)}
    text = json.dumps(content | ({"task": task_parts} if task_parts else {}), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
