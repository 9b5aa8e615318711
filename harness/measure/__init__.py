"""Measuring a run and its records: the checks before it starts, the run itself (warm-up,
repeats x strategies), the machine's conditions, and the run folder's files. May import every
layer below it (runtime, patterns, strategies, policy, analysis, work, workload).
"""
