"""Adaptive benchmarking and batching harness for Prefect 3 flows on Dask."""

__version__ = "0.1.0"

__all__ = ["benchmark"]


def __getattr__(name: str):
    # Imported on first use: `import harness` (which every worker process does) stays light.
    if name == "benchmark":
        from harness.api import benchmark

        return benchmark
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
