"""The faults a synthetic workload injects: exceptions an attempt on an item raises.

Which items fail, and how often, is drawn with the items (harness.work.synthetic); the kernel
raises it (harness.work.kernels.run_item):
    transient  attempts 1..k raise TransientFault (k = the item's transient_failures), attempt
               k + 1 succeeds: a retry helps.
    permanent  every attempt raises PermanentFault, whatever the item's transient count.
The exceptions travel from Dask workers back to the flow by pickling (by reference to this
module), so it imports nothing of Prefect or Dask.
"""

from __future__ import annotations


class InjectedFault(Exception):
    """Base of the faults the workload injects; carries the item index and the attempt number."""

    kind = "injected"

    def __init__(self, index: int, attempt: int) -> None:
        # args = (index, attempt) so the default exception pickling rebuilds it as cls(*args).
        super().__init__(index, attempt)
        self.index = index
        self.attempt = attempt

    def __str__(self) -> str:
        return f"{self.kind} fault injected on item {self.index}, attempt {self.attempt}"


class TransientFault(InjectedFault):
    """A retryable fault: a later attempt on the same item succeeds."""

    kind = "transient"


class PermanentFault(InjectedFault):
    """A fault that every attempt on the item raises: never retry it."""

    kind = "permanent"
