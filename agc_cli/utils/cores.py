"""How many CPUs this process may use, without importing torch (`agc stats` needs it)."""

from __future__ import annotations

import math
import os
from pathlib import Path


def available_cores() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota.

    A container limited to 2 CPUs on a 64-core host still sees 64 cores in its affinity mask;
    the quota (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``) says how many it gets.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    quota = cgroup_cpu_quota()
    return max(1, min(cores, math.floor(quota))) if quota else cores


def cgroup_cpu_quota() -> float | None:
    """CPUs granted by the cgroup quota, or None when unlimited or unknown."""
    try:
        fields = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if len(fields) == 2 and fields[0] != "max":
            return int(fields[0]) / int(fields[1])
    except (OSError, ValueError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            return quota / period
    except (OSError, ValueError):
        pass
    return None
