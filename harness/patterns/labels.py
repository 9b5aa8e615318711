"""How a measured run shows in the Prefect UI: its flow runs' names and tags, and the readable
parameters they carry (README, "Browsing runs in the Prefect UI").

Pure: no Prefect import, so run.py builds labels before anything starts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

# The tag every flow run of the harness carries, so one filter finds them all.
HARNESS_TAG = "harness"


@dataclass(frozen=True)
class RunLabel:
    """Which measured run a flow run belongs to.

    `repeat` counts from 0, as runs.csv's `repeat` column does; None is the warm-up. `run_id`
    is the run folder's name (results/<workload>/<run id>), empty outside a `harness run`.
    """

    workload: str
    strategy: str
    repeat: int | None = None
    run_id: str = ""
    variant: str = "dynamic"
    warm_up: bool = False
    part: str = ""  # a subflow's own part of the run ("load:csv"), "" for the run's flow

    @property
    def flow_run_name(self) -> str:
        """"small/static:64/r0", "small/static:1/warm-up", "subflows-x/adaptive/r1/twin",
        "subflows-x/adaptive/r1/load:csv"."""
        parts = [self.workload, self.strategy]
        if self.warm_up:
            parts.append("warm-up")
        elif self.repeat is not None:
            parts.append(f"r{self.repeat}")
        if self.variant != "dynamic":
            parts.append(self.variant)
        if self.part:
            parts.append(self.part)
        return "/".join(parts)

    @property
    def tags(self) -> list[str]:
        tags = [HARNESS_TAG, f"workload:{self.workload}", f"strategy:{self.strategy}"]
        if self.warm_up:
            tags.append("warm-up")
        elif self.repeat is not None:
            tags.append(f"repeat:{self.repeat}")
        if self.variant != "dynamic":
            tags.append(f"variant:{self.variant}")
        if self.run_id:
            tags.append(f"run:{self.run_id}")
        return tags

    def child(self, part: str) -> RunLabel:
        """The label of a subflow doing `part` of this run."""
        return replace(self, part=part)


def shown_parameters(strategy: str, items: int, batch_size: int | None, stage: str = "") -> dict[str, Any]:
    """What a flow run's parameters show a reader beside the call key: the strategy, how many
    items, and the batch size (None where it is chosen at run time)."""
    shown: dict[str, Any] = {"strategy": strategy, "items": items, "batch_size": batch_size}
    if stage:
        shown["stage"] = stage
    return shown
