"""Scoring backends behind base.py's Protocols: torch (compiled kernels) and onnx (no torch).

Each is imported only when chosen, so `--backend onnx` never loads torch."""
from __future__ import annotations

from typing import Callable

from poolscore.server.backends.base import Backend


def load(name: str, device: str, *, compile: str = "background", threads: int = 0,
         on_compiled: Callable[[int], None] | None = None) -> Backend:
    """The backend `name` on `device` ("auto": CUDA when there is one, else the CPU)."""
    if name == "onnx":
        from poolscore.server.backends.onnx.backend import OnnxBackend
        return OnnxBackend(device, threads=threads)
    if name == "torch":
        from poolscore.server.backends.torch.backend import TorchBackend
        return TorchBackend(device, compile, on_compiled=on_compiled, threads=threads)
    raise ValueError(f"--backend must be torch or onnx, got {name!r}")
