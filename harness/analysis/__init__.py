"""The statistics: medians, exact intervals and tests, the overhead split, the stopping rule of
`repeats = "auto"`. Numbers in, numbers out: imports only `harness.workload` (its vocabulary).
"""
