"""Which Prefect settings a task would lose under `lean`: the flow process's against each worker's.

Under `stock`, prefect-dask ships the flow's whole settings object with every task, so a task
sees what the flow sees: its profile, its environment, a `temporary_settings` around the call.
Under `lean`, a task sees the settings of its worker's own environment instead. The two agree
only where every worker's environment gives the same value, so `lean` is exact only then
(docs/runtime-notes.md, "The lean profile"; README, "The lean profile"). This module compares
every setting, names each that differs, and refuses (exit 2) unless the user allowed the loss.

Settings are compared as Prefect's own environment variables (`to_environment_variables`), so
what the harness sets identically on both sides never shows up. A secret (PREFECT_API_KEY) is
compared by digest and never written anywhere.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from harness.errors import SpecError

SECRET = "(secret)"
ALLOW_FLAG = "--allow-setting-loss"


def settings_view(settings: Any = None) -> dict[str, str]:
    """Every Prefect setting of `settings` (default: the current ones) as {ENV_NAME: value};
    a secret's value is replaced by a digest, so views can be compared and shipped safely."""
    from prefect.settings import get_current_settings

    settings = settings if settings is not None else get_current_settings()
    masked = settings.to_environment_variables(include_secrets=False)
    full = settings.to_environment_variables(include_secrets=True)
    return {
        name: value if masked.get(name) == value else "sha256:" + hashlib.sha256(value.encode()).hexdigest()
        for name, value in full.items()
    }


def non_default_settings(settings: Any = None) -> dict[str, str]:
    """The settings given a value by the environment, a profile or `temporary_settings` (not
    left at Prefect's default), secrets shown as "(secret)": what a report says lean assumed."""
    from prefect.settings import get_current_settings

    settings = settings if settings is not None else get_current_settings()
    given = settings.to_environment_variables(exclude_unset=True, include_secrets=False)
    view = settings_view(settings)
    return {name: _shown(view.get(name, value)) for name, value in sorted(given.items())}


def _shown(value: str | None) -> str:
    if value is None:
        return "(unset)"
    return SECRET if value.startswith("sha256:") else value


def _worker_settings_view() -> dict[str, str]:
    """Runs on each Dask worker: the settings a task sees there when no settings are shipped."""
    return settings_view()


# Settings only a flow run reads, never a task: a task that sees its worker's value loses nothing.
# The heartbeat frequency is one, and the harness unsets it for its own flow runs
# (client_env.without_flow_heartbeat), inside the flow process only.
FLOW_RUN_ONLY = frozenset({"PREFECT_FLOWS_HEARTBEAT_FREQUENCY"})


def differing(flow: dict[str, str], workers: dict[str, dict[str, str]]) -> dict[str, dict[str, Any]]:
    """{setting: {"flow": value, "workers": {address: value}}} for each setting some worker sees
    otherwise than the flow process (secrets shown as "(secret)"), but those of FLOW_RUN_ONLY."""
    found: dict[str, dict[str, Any]] = {}
    for address, seen in sorted(workers.items()):
        for name in sorted((flow.keys() | seen.keys()) - FLOW_RUN_ONLY):
            if flow.get(name) != seen.get(name):
                entry = found.setdefault(name, {"flow": _shown(flow.get(name)), "workers": {}})
                entry["workers"][address] = _shown(seen.get(name))
    return dict(sorted(found.items()))


def _describe_loss(lost: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, entry in lost.items():
        on_workers = sorted(set(entry["workers"].values()))
        lines.append(f"{name}: flow process {entry['flow']}, worker(s) {' / '.join(on_workers)}")
    return "\n  ".join(lines)


@dataclass
class SettingsCheck:
    """The `lean` profile's settings verdict: compared at start-up (preflight), and again on a
    submit whose settings are not the ones compared (a `temporary_settings` inside the flow).

    With `allow_loss`, settings that differ are recorded, not refused; `describe()` goes to
    env.json either way, so a report's `lean` figures say which settings they assumed.
    """

    workers: dict[str, dict[str, str]]
    allow_loss: bool
    assumed: dict[str, str] = field(default_factory=dict)
    compared: int = 0
    lost: dict[str, dict[str, Any]] = field(default_factory=dict)
    _seen: list[Any] = field(default_factory=list, repr=False)  # settings objects already judged

    def check(self, settings: Any = None, *, when: str = "at start-up") -> None:
        """Compare `settings` (default: the current ones) with every worker's; SpecError naming
        each that differs unless the loss is allowed. A settings object is judged once."""
        from prefect.settings import get_current_settings

        settings = settings if settings is not None else get_current_settings()
        # The per-submit path: inside a flow the settings object is the one judged at start-up,
        # so one identity test; an equal copy (a no-op temporary_settings) costs a comparison.
        if any(settings is seen for seen in self._seen) or any(settings == seen for seen in self._seen):
            return
        flow = settings_view(settings)
        if not self._seen:
            self.assumed = non_default_settings(settings)
            self.compared = len(flow.keys() | set().union(*(w.keys() for w in self.workers.values())))
        lost = differing(flow, self.workers)
        if lost and not self.allow_loss:
            raise SpecError(
                f"the lean profile would lose Prefect settings {when}: each task would see its "
                f"Dask worker's value instead of the flow's:\n  {_describe_loss(lost)}\n"
                f"Give the workers the same settings, use --profile stock, or pass {ALLOW_FLAG} "
                "to run anyway (the report then lists the settings lost)."
            )
        self.lost.update(lost)
        self._seen.append(settings)

    def describe(self) -> dict[str, Any]:
        if not self.lost:
            verdict = f"all {self.compared} Prefect settings the same in the flow process and on every worker"
        else:
            verdict = f"tasks saw their worker's value of {', '.join(self.lost)} ({ALLOW_FLAG})"
        return {
            "verdict": verdict,
            "compared": self.compared,
            "assumed": self.assumed,
            "lost": self.lost,
        }


def check_settings(client: Any, allow_loss: bool) -> SettingsCheck:
    """The preflight of the `lean` profile: the flow process's settings against every worker's."""
    check = SettingsCheck(workers=client.run(_worker_settings_view), allow_loss=allow_loss)
    check.check()
    return check
