"""The public Python API (`harness.benchmark`, `harness.adaptive_map`, `harness.local_runtime`):
the top layer but the command line; may import everything below it.
"""
