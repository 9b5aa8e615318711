"""The `lean` profile: Prefect's settings object left out of each Dask task's context.

The two ways of shipping Prefect context to Dask workers (recorded in every report):
  stock: prefect-dask as released: every submit serialises Prefect's whole settings object in
         the flow process and each task rebuilds it on the worker.
  lean:  the settings object is left out of the per-task context; workers read the same
         settings from their own environment, which the harness sets and checks (preflight)
         before the first task.
Why and by how much: docs/runtime-notes.md, "The lean profile".
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

PROFILES = ("lean", "stock")


@contextlib.contextmanager
def lean_task_context(profile: str) -> Iterator[None]:
    """While active, DaskTaskRunner submits leave Prefect's settings out of each task's context.

    prefect-dask calls `serialize_context` (a module global) once per submit; we swap it, so
    the stock path stays one argument away. Workers then use the settings of their own
    environment, which `check_workers` has verified.
    """
    if profile == "stock":
        yield
        return
    import prefect_dask.client as dask_client

    stock = dask_client.serialize_context
    dask_client.serialize_context = serialize_context_without_settings
    try:
        yield
    finally:
        dask_client.serialize_context = stock


def serialize_context_without_settings(asset_ctx_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """`prefect.context.serialize_context` (Prefect 3.9) minus the settings object.

    Dumping the settings is most of the flow's CPU per submit; the worker then rebuilds nothing
    and uses the settings of its own environment. Kept line for line with Prefect's function
    otherwise (tests/test_runtime.py compares their keys); the `stock` profile measures theirs.
    """
    from prefect.context import (
        AssetContext,
        EngineContext,
        TagsContext,
        TaskRunContext,
        _deployment_id,
        _deployment_parameters,
    )

    flow_run_context = EngineContext.get()
    task_run_context = TaskRunContext.get()
    tags_context = TagsContext.get()
    deployment_id = _deployment_id.get()
    return {
        "flow_run_context": flow_run_context.serialize() if flow_run_context else {},
        "task_run_context": task_run_context.serialize() if task_run_context else {},
        "tags_context": tags_context.serialize() if tags_context else {},
        "settings_context": {},
        "asset_context": AssetContext.from_task_and_inputs(**asset_ctx_kwargs).serialize()
        if asset_ctx_kwargs
        else {},
        "deployment_id": str(deployment_id) if deployment_id else None,
        "deployment_parameters": _deployment_parameters.get(),
    }
