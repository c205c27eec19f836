"""How many threads the kernels get: the rest of the machine is gRPC's (no torch import here)."""
from __future__ import annotations

import os


def scoring_threads(requested: int = 0) -> int:
    """Intra-op threads for the kernels: `requested` when > 0, else half the usable cores.

    The server's other work is CPU too: gRPC receives and copies every message, and on one
    machine the client serializes them. On 2 cores, kernels on both made an 80 MB pool
    10 ms slower end to end than kernels on one (98 against 87 ms)."""
    if requested > 0:
        return requested
    try:
        cores = len(os.sched_getaffinity(0))  # a container's CPU set, not the host's cores
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // 2)
