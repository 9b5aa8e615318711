"""Workers the Dask cluster lost during a stage, for every strategy's notes.

Read from the scheduler's event stream as it happens (`Client.subscribe_topic("all")`), not
from its event log afterwards: the log keeps only `low-level-log-length` events per topic
(harness.runtime.cluster sets 16), so a `remove-worker` event is pushed out of it long before
a stage ends. A subscription gets each event once, whatever the log keeps, and works on a
LocalCluster and on a joined scheduler alike.
"""

from __future__ import annotations

import threading
from typing import Any

# The scheduler publishes worker arrivals and removals (and little else) on this topic.
TOPIC = "all"


def current_workers(client: Any) -> set[str] | None:
    """The addresses of the workers the scheduler knows now; None if it cannot be asked."""
    try:
        return set(client.scheduler_info()["workers"])
    except Exception:  # noqa: BLE001 - a run is not lost for want of a note
        return None


class WorkerWatch:
    """`with WorkerWatch(client, known) as watch: ...; watch.notes()`: the workers removed
    meanwhile, and the workers of `known` (the cluster as the previous stage left it) gone by
    the end. The second catches what the event stream misses: a worker killed between two
    stages (no subscription then), or one whose nanny restarts it under a new address before
    the scheduler's removal reaches the subscription. `watch.after` is the cluster at the end,
    the next stage's `known`."""

    def __init__(self, client: Any, known: set[str] | None = None) -> None:
        self.client = client
        self.known = known
        self.after: set[str] | None = None
        self._removed: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._error = ""

    def _event(self, event: tuple[float, Any]) -> None:
        _, message = event
        if isinstance(message, dict) and message.get("action") == "remove-worker":
            with self._lock:
                self._removed.append(message)

    def __enter__(self) -> WorkerWatch:
        if self.client is not None:
            if self.known is None:
                self.known = current_workers(self.client)
            try:
                self.client.subscribe_topic(TOPIC, self._event)
            except Exception as exc:  # noqa: BLE001 - a run is not lost for want of a note: say so
                self._error = f"{type(exc).__name__}: {exc}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None and not self._error:
            try:
                self.client.unsubscribe_topic(TOPIC)
            except Exception:  # noqa: BLE001 - a closed client has nothing to unsubscribe
                pass
        if self.client is not None:
            self.after = current_workers(self.client)

    def notes(self) -> list[str]:
        """One line per lost worker, with the tasks Dask re-ran because of it."""
        if self._error:
            return [f"could not watch the cluster for lost workers ({self._error})"]
        with self._lock:
            removed = list(self._removed)
        notes = [f"worker {m.get('worker')} lost: Dask re-ran {len(m.get('processing-tasks') or ())} running "
                 f"and {len(m.get('lost-computed-tasks') or ())} finished tasks elsewhere"
                 for m in removed if not m.get("expected")]
        said = {m.get("worker") for m in removed}
        if self.known is not None and self.after is not None:
            notes += [f"worker {address} lost: in the cluster when the previous stage ended, gone by the end of "
                      "this one (a LocalCluster's nanny restarts a dead worker under a new address; Dask re-ran "
                      "what it held)" for address in sorted(self.known - self.after - said)]
        return notes
