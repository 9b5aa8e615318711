"""What an adaptive run learned, as the next run with the same function and runtime starts from
it (docs/controller.md, "Memory"). Pure data: no file, no Prefect; storing it is the
mechanism's (harness.runtime.learned_store).

`Controller.learned()` makes one after a run, `Controller(..., learned=...)` starts from one;
`to_dict()` / `from_dict()` are its stored form, a small JSON object with a schema name and a
version, checked strictly on the way in: anything foreign is a ValueError, never a guess.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

# The stored form's name and version: a reader refuses any other (a newer writer bumps the version).
SCHEMA = "harness.learned"
VERSION = 1


@dataclass(frozen=True)
class Learned:
    """The estimates a run ended with and the batch size it settled on.

    `per_item_s`: mean work per item, `c`; `item_cv`: relative scatter of one item's cost (0
    when too few tasks were seen to tell); `overhead_s`: fixed cost per task, `o`;
    `transfer_s`: per-item cost of a task beyond its work, `t`; `batch_size`: the size of the
    bulk of its tasks (the ramp and the tail left out); `worker_threads`: the threads it ran
    on; `items`: the items it observed.
    """

    per_item_s: float
    item_cv: float
    overhead_s: float
    transfer_s: float
    batch_size: int
    worker_threads: int
    items: int

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int":
                low = 0 if f.name == "items" else 1
                if not isinstance(value, int) or isinstance(value, bool) or value < low:
                    raise ValueError(f"Learned {f.name}: found {value!r}, expected an integer >= {low}")
            elif not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
                    or value < 0:
                raise ValueError(f"Learned {f.name}: found {value!r}, expected a finite number >= 0")

    def to_dict(self) -> dict[str, Any]:
        """The stored form: {"schema", "version", and each field}, JSON-ready."""
        return {"schema": SCHEMA, "version": VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: object) -> Learned:
        """The `Learned` of a stored form; ValueError naming what is wrong with anything else
        (not a dict, another schema or version, a field missing, unknown, negative or not finite)."""
        if not isinstance(data, dict):
            raise ValueError(f"a stored memory must be a JSON object, found {type(data).__name__}")
        if data.get("schema") != SCHEMA:
            raise ValueError(f"schema: found {data.get('schema')!r}, expected {SCHEMA!r}")
        if data.get("version") != VERSION:
            raise ValueError(f"version: found {data.get('version')!r}, expected {VERSION}")
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data]
        unknown = sorted(set(data) - set(names) - {"schema", "version"})
        if missing or unknown:
            raise ValueError(f"fields: missing {missing}, unknown {unknown}")
        return cls(**{n: data[n] for n in names})

    def describe(self) -> str:
        """A few words for a decision's reason."""
        return (f"{self.batch_size}/task learned over {self.items} items on {self.worker_threads} threads "
                f"(c={self.per_item_s * 1e3:.3g} ms/item, o={self.overhead_s * 1e3:.3g} ms/task, "
                f"t={self.transfer_s * 1e3:.3g} ms/item)")
