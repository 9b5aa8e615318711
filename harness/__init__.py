"""Adaptive benchmarking and batching harness for Prefect 3 flows on Dask."""

__version__ = "0.1.0"
