"""Pure policy: the adaptive controller and the circuit breaker. No Prefect, no Dask, no clock
of their own (time arrives as data); imports nothing of the harness but `harness.workload`.
"""
