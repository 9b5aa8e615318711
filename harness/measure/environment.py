"""What env.json says about the machine and software a run ran on, and what differs between
two runs' accounts of it.

- `environment`: machine, CPU model, Python, package versions and git commit, merged with the
  run's own facts (env.json).
- `differences`: what differs between two env.json files in workload, profile, cluster layout,
  machine and package versions, one sentence each (`compare` refuses runs that differ).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from harness.work.user_task import digest_differences

# Versions recorded in env.json: what a reader needs to reproduce a number.
PACKAGES = ("prefect", "prefect-dask", "dask", "distributed", "numpy", "pandas", "joblib", "harness")
# env.json names each package as above; the harness is installed as the distribution
# "prefect-dask-harness" (pyproject.toml: "harness" on PyPI is another project).
DISTRIBUTIONS = {"harness": "prefect-dask-harness"}

# The spec fields env.json recorded before it carried a workload_digest (old run folders).
_LEGACY_WORKLOAD_FIELDS = ("name", "items", "seed", "cost")


def _git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def environment(extra: dict[str, Any]) -> dict[str, Any]:
    """Machine, Python, package versions and git commit, merged with the run's own facts."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(DISTRIBUTIONS.get(name, name))
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "packages": versions,
        "git_commit": _git_commit(),
        **extra,
    }


def cpu_model() -> str:
    """The processor's model name (from /proc/cpuinfo on Linux), else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --- likeness of two runs -----------------------------------------------------------------


def _layout(env: dict[str, Any]) -> list[tuple[Any, Any]]:
    workers = env.get("runtime", {}).get("workers", [])
    return sorted((w.get("nthreads"), w.get("memory_limit")) for w in workers)


def _workload(env: dict[str, Any]) -> tuple[str, Any]:
    if env.get("workload_digest"):
        return "workload digest", env["workload_digest"]
    w = env.get("workload", {})
    return "workload (" + ", ".join(_LEGACY_WORKLOAD_FIELDS) + ")", {k: w.get(k) for k in _LEGACY_WORKLOAD_FIELDS}


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Why two runs (their env.json) are not like for like: one sentence per difference."""
    out = []
    (what_a, wa), (what_b, wb) = _workload(a), _workload(b)
    if what_a != what_b:  # one side predates the digest: compare the fields both recorded
        what_a, wa = _workload({"workload": a.get("workload", {})})
        _, wb = _workload({"workload": b.get("workload", {})})
    if wa != wb:
        why = digest_differences(a.get("workload_parts"), b.get("workload_parts")) if what_a == "workload digest" else []
        out.append(f"{what_a}: A {_short(wa)}, B {_short(wb)}" + (f" ({'; '.join(why)})" if why else ""))
    checks = [
        ("runtime profile", a.get("runtime", {}).get("profile"), b.get("runtime", {}).get("profile")),
        ("cluster layout (threads, memory limit per worker)", _layout(a), _layout(b)),
        ("CPU count", a.get("cpu_count"), b.get("cpu_count")),
        ("CPU model", a.get("cpu_model"), b.get("cpu_model")),
        # Figures taken while drawing Dask performance reports include their cost (README, "Dask's
        # own diagnostics"); a run from before the option drew none.
        ("Dask performance reports (--dask-report)", bool(a.get("dask_report")), bool(b.get("dask_report"))),
    ]
    for what, x, y in checks:
        if x != y and x is not None and y is not None:  # None: an older run that did not record it
            out.append(f"{what}: A {_short(x)}, B {_short(y)}")
    pa, pb = a.get("packages", {}) or {}, b.get("packages", {}) or {}
    for name in sorted(set(pa) | set(pb)):
        if name != "harness" and pa.get(name) != pb.get(name):
            out.append(f"package {name}: A {pa.get(name)}, B {pb.get(name)}")
    return out


def _short(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
