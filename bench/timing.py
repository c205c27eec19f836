"""Wall-clock timing for the benchmarks: the best of a few runs, CUDA-synchronised."""
from __future__ import annotations

import time
from typing import Callable

import torch


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work, so a timer measures the kernels and not their launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def once(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds for one call of fn, synchronised before and after."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def best_of(fn: Callable[[], object], repeats: int, device: torch.device = torch.device("cpu")) -> float:
    """The fastest of `repeats` calls, in seconds (the least disturbed by the rest of the machine)."""
    return min(once(fn, device) for _ in range(max(repeats, 1)))
