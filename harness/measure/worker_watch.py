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


class WorkerWatch:
    """`with WorkerWatch(client) as watch: ...; watch.notes()`: the workers removed meanwhile."""

    def __init__(self, client: Any) -> None:
        self.client = client
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

    def notes(self) -> list[str]:
        """One line per lost worker, with the tasks Dask re-ran because of it."""
        if self._error:
            return [f"could not watch the cluster for lost workers ({self._error})"]
        with self._lock:
            removed = list(self._removed)
        return [f"worker {m.get('worker')} lost: Dask re-ran {len(m.get('processing-tasks') or ())} running "
                f"and {len(m.get('lost-computed-tasks') or ())} finished tasks elsewhere"
                for m in removed if not m.get("expected")]
