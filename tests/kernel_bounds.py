"""What a stage of synthetic cpu items must measure as compute: its items' own requested costs,
within the cpu kernel's accuracy (tests/test_workloads.py measures it)."""

from __future__ import annotations

from collections.abc import Iterable

from harness.work.synthetic import Item

# A worker calibrates the cpu kernel once (CPU time, the median round) and runs its items by that
# rate for the rest of its life. These VMs' fast and slow states differ 1.7x, and under load one
# calibrate-then-measure round landed at 0.6-1.7 of the requested CPU time (test_workloads). An
# item's compute_s is its wall time, never less than its CPU time. So a stage measures at least
# half its items' cost as compute; compute not measured per item (none, or one item per batch:
# 1/16 here) falls far below.
KERNEL_LOW = 0.5


def ok_cost_s(items: Iterable[Item], retries: int) -> float:
    """The requested cost in seconds of the items that succeed within `retries` (a failed item
    raises before its work: it measures no compute)."""
    return sum(i.cost_ms for i in items if not i.permanent and i.transient_failures <= retries) / 1000
