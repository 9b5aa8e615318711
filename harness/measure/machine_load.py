"""What the machine was doing while a run ran, and whether that stretched its walls.

- `load_now`: the 1-minute load average and CPU count (env.json's load block).
- `LoadProbe`: the load average before and after a measured run, the share of CPU time
  idle and stolen (by a hypervisor) during it, and the share of the machine's CPU time that
  processes outside the harness used during it; appended to each row of runs.csv.
- `load_warnings`: a run's rows that ran on a busy machine.
"""

from __future__ import annotations

import contextlib
import math
import os
import time

import pandas as pd
import psutil

# Runs written before `other_cpu_pct` existed are judged by their load average: past 1.5x the
# cores, something was likely competing. It cannot tell the harness's own processes from
# others: on the 2-core machine the flow process, two workers and the API server alone keep the
# 1-minute load at 3-4 (17-33 of 35-45 runs of each bench workload, nothing else running).
LOAD_PER_CPU_WARNING = 1.5
# Other work: CPU time used during a run by processes outside the harness's own (this process
# and its children: the LocalCluster's workers, the API server it started), as a share of all
# the machine's CPU time in that run. Idle here it is 0-2 % (the kernel, the shell); at 10 %
# another process held a fifth of one of the two cores for the whole run and stretches walls
# measurably. Workers of an external cluster on this machine count as other work.
OTHER_CPU_PCT_WARNING = 10.0
# Steal is CPU time a hypervisor gave to other guests while this one wanted it; a few percent
# is usual on shared cloud VMs, 10 % and more stretches every wall measurably.
STEAL_PCT_WARNING = 10.0
LOAD_COLUMNS = ("load_before", "load_after", "cpu_idle_pct", "cpu_steal_pct", "other_cpu_pct")


def load_now() -> dict[str, float]:
    """The 1-minute load average and this instant's CPU count (env.json's load block)."""
    return {"load_1min": round(os.getloadavg()[0], 2), "cpu_count": os.cpu_count() or 1}


class LoadProbe:
    """Around one measured run: load average before and after, CPU idle and steal during it, and
    the share of CPU time that processes outside the harness used (OTHER_CPU_PCT_WARNING)."""

    def __enter__(self) -> LoadProbe:
        self.load_before = os.getloadavg()[0]
        psutil.cpu_times_percent(interval=None)  # starts the interval the exit reads
        # The machine's CPU time and the clock are read together, at each end: a scan of the
        # process tree between them (tens of ms when the machine is loaded and this process
        # waits for a core) would count the machine's work in that gap against a shorter span.
        self._own0 = _own_cpu_s()
        self._busy0, self._t0 = _machine_busy_s(), time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        busy = _machine_busy_s() - self._busy0
        span = (time.monotonic() - self._t0) * (psutil.cpu_count() or 1)
        times = psutil.cpu_times_percent(interval=None)
        self.load_after = os.getloadavg()[0]
        self.cpu_idle_pct = float(times.idle)
        self.cpu_steal_pct = float(getattr(times, "steal", 0.0))
        own = _own_cpu_s()
        own_used = sum(cpu - self._own0.get(pid, 0.0) for pid, cpu in own.items())
        other = busy - own_used
        self.other_cpu_pct = max(0.0, 100 * other / span) if span > 0 else math.nan

    def columns(self) -> dict[str, float]:
        return {"load_before": round(self.load_before, 2), "load_after": round(self.load_after, 2),
                "cpu_idle_pct": round(self.cpu_idle_pct, 1), "cpu_steal_pct": round(self.cpu_steal_pct, 1),
                "other_cpu_pct": round(self.other_cpu_pct, 1)}


def _machine_busy_s() -> float:
    """CPU seconds all processes have used since boot (user, nice, system, interrupts; guest
    time is inside user on Linux and not added twice)."""
    t = psutil.cpu_times()
    return sum(getattr(t, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq"))


def _own_cpu_s() -> dict[int, float]:
    """CPU seconds used so far by this process and each of its live descendants, by pid (a
    process that ended during the run takes its time with it: it counts as other work)."""
    me = psutil.Process()
    out = {}
    for proc in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            out[proc.pid] = t.user + t.system
    return out


def load_warnings(runs: pd.DataFrame, cpu_count: int | None) -> list[str]:
    """Sentences about rows measured on a busy machine (none when runs.csv has no load columns)."""
    if "load_before" not in runs or not cpu_count:
        return []
    out = []
    if "other_cpu_pct" in runs and runs["other_cpu_pct"].notna().any():
        other = runs[runs["other_cpu_pct"] > OTHER_CPU_PCT_WARNING]
        if len(other):
            out.append(f"{len(other)} of {len(runs)} measured runs had processes outside the harness use more "
                       f"than {OTHER_CPU_PCT_WARNING:.0f} % of the machine's CPU time (highest "
                       f"{other['other_cpu_pct'].max():.0f} %): other work was competing for the cores, walls "
                       "may be stretched")
    elif len(busy := runs[runs["load_before"] > LOAD_PER_CPU_WARNING * cpu_count]):
        # an older run: only its load average, which counts the harness's own processes too
        out.append(f"{len(busy)} of {len(runs)} measured runs started with a 1-minute load average above "
                   f"{LOAD_PER_CPU_WARNING}× the {cpu_count} CPUs (highest {busy['load_before'].max():.1f}): "
                   "other work was competing for the cores, walls may be stretched")
    if "cpu_steal_pct" in runs:
        stolen = runs[runs["cpu_steal_pct"] > STEAL_PCT_WARNING]
        if len(stolen):
            out.append(f"{len(stolen)} of {len(runs)} measured runs lost more than {STEAL_PCT_WARNING:.0f} % of CPU "
                       f"time to steal (highest {stolen['cpu_steal_pct'].max():.0f} %): the hypervisor was busy")
    return out
