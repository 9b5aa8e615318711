"""Adaptive benchmarking and batching harness for Prefect 3 flows on Dask."""

__version__ = "0.1.0"

__all__ = ["Failed", "ItemsFailed", "adaptive_map", "adaptive_map_async", "benchmark", "local_runtime"]

# The public API, imported on first use: `import harness` (which every worker process does, and
# `harness --help`) stays free of Prefect and Dask. name -> module.
_LAZY = {
    "benchmark": "harness.api.benchmark",
    "adaptive_map": "harness.api.adaptive_map", "adaptive_map_async": "harness.api.adaptive_map",
    "Failed": "harness.api.adaptive_map", "ItemsFailed": "harness.api.adaptive_map",
    "local_runtime": "harness.api.local_runtime",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
