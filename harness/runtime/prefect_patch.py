"""The two ways of shipping Prefect context to Dask workers, and the patch that makes `lean`.

Every runtime takes its profile as an explicit argument; the one default is the CLI's `run`
(the harness's own synthetic workloads, where `lean` is measured and recorded in every report).
A user's own flow gets `stock` unless it asks for `lean`. Why and by how much:
docs/runtime-notes.md, "The lean profile".
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, Literal

Profile = Literal["stock", "lean"]
STOCK: Profile = "stock"
LEAN: Profile = "lean"

PROFILES: dict[str, str] = {
    STOCK: "prefect-dask as released: every submit serialises Prefect's whole settings object in "
           "the flow process and each task rebuilds it on its worker, so a task sees exactly the "
           "flow's settings (its profile, environment and any temporary_settings).",
    LEAN: "the settings object is left out of each task's context: a task sees the settings of its "
          "worker's environment. It drops every setting the flow process has and the workers do "
          "not (a profile, PREFECT_API_KEY, a temporary_settings around a submit); the preflight "
          "compares all of them and refuses unless the loss is allowed. Saves most of the flow's "
          "CPU per submit and the worker's per task.",
}


def lean_unavailable() -> str | None:
    """Why this Prefect and prefect-dask cannot run `lean`, or None when they can.

    The patch needs three things of theirs: prefect-dask calling `serialize_context` through its
    module global, Prefect's `serialize_context` reading the settings with `SettingsContext.get()`,
    and that context kept in a ContextVar. Checked by behaviour, not by version number: Prefect's
    own function, run with the stand-in, must leave the settings out and keep everything else.
    """
    try:
        import prefect
        import prefect_dask.client as dask_client
        from prefect.context import SettingsContext, serialize_context
    except ImportError as exc:
        return f"lean unavailable ({exc}): stock used"
    version = getattr(prefect, "__version__", "?")
    current = getattr(dask_client, "serialize_context", None)
    if current is not serialize_context and not getattr(current, "harness_lean", False):  # ours: already lean
        return f"lean unavailable on Prefect {version}: prefect-dask does not call prefect.context.serialize_context; stock used"
    if not isinstance(getattr(SettingsContext, "__var__", None), ContextVar):
        return f"lean unavailable on Prefect {version}: SettingsContext has no ContextVar; stock used"
    try:
        stock = serialize_context()
        ours = serialize_context_without_settings()
    except Exception as exc:  # any failure means the patch does not fit this release
        return f"lean unavailable on Prefect {version} ({type(exc).__name__}: {exc}); stock used"
    if ours.get("settings_context") != {} or not stock.get("settings_context") or set(ours) != set(stock):
        return f"lean unavailable on Prefect {version}: its serialize_context does not leave the settings out; stock used"
    return None


class _SettingsLeftOut:
    """Stands in for the active SettingsContext while Prefect's `serialize_context` runs: the
    same settings to anything that reads them, nothing to serialise."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def serialize(self, include_secrets: bool = True) -> dict[str, Any]:
        return {}


def serialize_context_without_settings(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Prefect's own `prefect.context.serialize_context`, with the settings left out.

    Dumping the settings is most of the flow's CPU per submit. Rather than copy Prefect's private
    function (which changes between releases), this calls it with a stand-in settings context set
    in this thread's ContextVar only for the call: every other key is Prefect's, whatever the
    release, and no other thread or task sees the stand-in.
    """
    from prefect.context import SettingsContext, serialize_context

    token = SettingsContext.__var__.set(_SettingsLeftOut(SettingsContext.get()))
    try:
        return serialize_context(*args, **kwargs)
    finally:
        SettingsContext.__var__.reset(token)


serialize_context_without_settings.harness_lean = True  # type: ignore[attr-defined]


@contextlib.contextmanager
def lean_task_context(profile: Profile, check: Any = None) -> Iterator[None]:
    """While active, DaskTaskRunner submits follow `profile`.

    `stock` changes nothing. `lean` swaps prefect-dask's module-global `serialize_context` for
    `serialize_context_without_settings`, so tasks see their worker's settings. `check` (a
    settings_check.SettingsCheck from the preflight) is then asked on every submit whether the
    flow's current settings are ones it compared: a `temporary_settings` inside the flow that the
    workers do not have is refused (SpecError) or, if allowed, recorded. Without a check, `lean`
    drops whatever differs silently: callers outside open_runtime must pass one.
    """
    if profile == STOCK:
        yield
        return
    if profile != LEAN:
        raise ValueError(f"profile: found {profile!r}, expected one of {', '.join(PROFILES)}")
    import prefect_dask.client as dask_client

    if check is None:
        patched = serialize_context_without_settings
    else:
        from prefect.context import SettingsContext

        def patched(*args: Any, **kwargs: Any) -> dict[str, Any]:
            check.check(SettingsContext.get().settings, when="at a submit inside the flow")
            return serialize_context_without_settings(*args, **kwargs)

        patched.harness_lean = True  # type: ignore[attr-defined]

    stock = dask_client.serialize_context
    dask_client.serialize_context = patched
    try:
        yield
    finally:
        dask_client.serialize_context = stock
