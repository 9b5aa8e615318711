"""The work a run measures: seeded synthetic items and their calibrated cost kernels, injected
faults, the tally of outcomes, and a user's own task. Imports `harness.workload` and
`harness.errors` only.
"""
