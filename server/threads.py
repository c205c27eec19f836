"""How many threads the kernels get: the rest of the machine is gRPC's (no torch import here)."""
from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def scoring_threads(requested: int = 0, cgroup: Path = CGROUP) -> int:
    """Intra-op threads for the kernels: `requested` when > 0, else half the usable cores.

    The server's other work is CPU too: gRPC receives and copies every message, and on one
    machine the client serializes them. On 2 cores, kernels on both made an 80 MB pool
    10 ms slower end to end than kernels on one (98 against 87 ms)."""
    if requested > 0:
        return requested
    return max(1, usable_cores(cgroup) // 2)


def usable_cores(cgroup: Path = CGROUP) -> int:
    """The cores this process may run on: its CPU set, capped by a container's CPU quota
    (a Kubernetes CPU limit shows in neither os.cpu_count nor the CPU set)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = cpu_quota(cgroup)
    return cores if quota is None else max(1, min(cores, math.ceil(quota)))


def cpu_quota(cgroup: Path = CGROUP) -> float | None:
    """CPUs allowed by the cgroup's CFS quota (v2 cpu.max, or v1 cpu.cfs_quota_us), None if unlimited."""
    try:
        if (cgroup / "cpu.max").exists():  # v2: "max 100000" or "200000 100000"
            quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        else:
            v1 = cgroup / "cpu"
            quota, period = ((v1 / name).read_text().strip() for name in ("cpu.cfs_quota_us", "cpu.cfs_period_us"))
        if quota in ("max", "-1") or int(period) <= 0:
            return None
        return int(quota) / int(period)
    except (OSError, ValueError):
        return None
