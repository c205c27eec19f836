"""The scoring device, chosen once: CUDA when torch sees one (or when asked), else the CPU."""
from __future__ import annotations

import torch


def choose(requested: str = "auto") -> torch.device:
    """`auto` → cuda:0 when available, else cpu; `cpu`, `cuda`, `cuda:N` are taken as given."""
    if requested == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} asked for, but torch sees no CUDA device")
    return device


def describe(device: torch.device) -> str:
    """A human-readable name: `cpu (2 threads)` or `cuda:0 (NVIDIA H100 80GB HBM3)`."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
