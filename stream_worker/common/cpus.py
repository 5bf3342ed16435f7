"""How many cores this process may use: what ``processes auto`` and ``inference_threads 0`` mean.

``os.cpu_count()`` counts the machine's cores.  In a container (Kubernetes with a CPU limit, ``docker run --cpus``)
or under ``taskset`` the process gets fewer: a pool sized by the node's 64 cores would start 64 processes of ~1 GiB
each in a 2-core pod.  So the answer is the smallest of
  1. the CPU affinity mask (``os.sched_getaffinity``: taskset, cpusets, Kubernetes' static CPU manager);
  2. the cgroup CPU quota, rounded up (cgroup v2 ``cpu.max``; v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``);
and at least 1.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def available_cores(cgroup_root: Path = CGROUP_ROOT) -> int:
    """The cores this process may use (see the module docstring)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota in cores, or None when there is none (or no cgroup file says so)."""
    try:
        fields = (root / "cpu.max").read_text().split()  # cgroup v2: "<quota> <period>" or "max <period>"
        if len(fields) == 2 and fields[0] != "max":
            return int(fields[0]) / int(fields[1])
        return None
    except (OSError, ValueError):
        pass
    for folder in (root / "cpu", root / "cpu,cpuacct", root):  # cgroup v1 layouts
        try:
            quota = int((folder / "cpu.cfs_quota_us").read_text())
            period = int((folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return quota / period if quota > 0 and period > 0 else None
    return None
