"""How many threads the kernels get: the rest of the machine is gRPC's (no torch import here)."""
from __future__ import annotations

import contextlib
import contextvars
import math
import os
from pathlib import Path
from typing import Iterator

CGROUP = Path("/sys/fs/cgroup")


def scoring_threads(requested: int = 0, cgroup: Path = CGROUP) -> int:
    """Intra-op threads for the kernels: `requested` when > 0, else half the usable cores.

    The server's other work is CPU too: gRPC receives and copies every message, and on one
    machine the client serializes them. On 2 cores, kernels on both made an 80 MB pool
    10 ms slower end to end than kernels on one (98 against 87 ms)."""
    if requested > 0:
        return requested
    return max(1, usable_cores(cgroup) // 2)


_LENT: contextvars.ContextVar[int] = contextvars.ContextVar("poolscore_kernel_threads", default=0)


@contextlib.contextmanager
def lent(threads: int) -> Iterator[None]:
    """The native kernels called in this block (this thread's) run on `threads` threads (0: the
    backend's own count). A batch read from shared memory lends them every core: gRPC then
    receives a reference, not the bytes, so the cores scoring_threads keeps for it are idle."""
    token = _LENT.set(threads)
    try:
        yield
    finally:
        _LENT.reset(token)


def kernel_threads(own: int) -> int:
    """The threads a native kernel runs on here: what `lent` gave, else `own`."""
    return _LENT.get() or own


def usable_cores(cgroup: Path = CGROUP) -> int:
    """The cores this process may run on: its CPU set, capped by a container's CPU quota
    (a Kubernetes CPU limit shows in neither os.cpu_count nor the CPU set)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = cpu_quota(cgroup)
    return cores if quota is None else max(1, min(cores, math.ceil(quota)))


def cpu_quota(cgroup: Path = CGROUP, self_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """CPUs allowed by a CFS quota on this process's cgroup or its parents, None if unlimited.

    cgroup v2: `cpu.max` in the process's own cgroup (from /proc/self/cgroup) and each parent
    up to the mount's root. v1: `cpu.cfs_quota_us` / `cpu.cfs_period_us` in the cpu
    controller's root, mounted as `cpu` or `cpu,cpuacct`."""
    found = [q for q in map(_quota_in, _cgroup_dirs(cgroup, self_cgroup)) if q is not None]
    return min(found) if found else None


def _cgroup_dirs(cgroup: Path, self_cgroup: Path) -> list[Path]:
    dirs = [cgroup, cgroup / "cpu", cgroup / "cpu,cpuacct"]
    try:
        own = next(line.split(":", 2)[2] for line in self_cgroup.read_text().splitlines() if line.startswith("0::"))
    except (OSError, StopIteration, IndexError):
        return dirs
    path = cgroup / own.strip().lstrip("/")
    while path != cgroup and cgroup in path.parents:  # the process's cgroup, then its parents
        dirs.append(path)
        path = path.parent
    return dirs


def _quota_in(d: Path) -> float | None:
    try:
        if (d / "cpu.max").exists():  # v2: "max 100000" or "200000 100000"
            quota, period = (d / "cpu.max").read_text().split()[:2]
        elif (d / "cpu.cfs_quota_us").exists():  # v1
            quota, period = ((d / name).read_text().strip() for name in ("cpu.cfs_quota_us", "cpu.cfs_period_us"))
        else:
            return None
        if quota in ("max", "-1") or int(period) <= 0:
            return None
        return int(quota) / int(period)
    except (OSError, ValueError):
        return None
