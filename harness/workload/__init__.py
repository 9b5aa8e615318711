"""The workload file and its rules: the vocabulary (strategy, cost and pattern names), the
frozen models a TOML file is read into, every validation message. Imports nothing of the harness
but `harness.errors`; no Prefect, no Dask.
"""
