"""Reading the adaptive trace of a run: where, within each stage, the execution mode changed
and the controller's reason for it (the adaptive pipeline's question: where and why did the
strategy in use change?)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def mode_changes(trace: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per trace row whose `mode` differs from the previous row of the same stage
    (rows in time order; rows without a stage form one stage): stage, t_s, from, to,
    batch_size and the controller's reason."""
    last: dict[str, str] = {}
    changes = []
    for row in sorted(trace, key=lambda r: r.get("t_s") or 0.0):
        stage, mode = row.get("stage") or "", row.get("mode")
        if mode is None:
            continue
        before = last.get(stage)
        if before is not None and mode != before:
            changes.append({"stage": stage, "t_s": row.get("t_s"), "from": before, "to": mode,
                            "batch_size": row.get("batch_size"), "reason": row.get("reason", "")})
        last[stage] = mode
    return changes
