"""Every scoring backend this machine has, behind one call: the parity suite's seam.

`score(backend, name, x, ...)` takes NumPy arrays and returns float64 NumPy scores, so one test
holds the torch backend (CPU, and CUDA where there is one) and the ONNX backend to the same
reference and the same exactness rules."""
from __future__ import annotations

import numpy as np
import torch

from poolscore.server.backends.base import Backend
from poolscore.server.strategies import ScoreOptions, strategy_named

NAMES = ["torch-cpu", "onnx-cpu"] + (["torch-cuda"] if torch.cuda.is_available() else [])


def make(name: str, threads: int = 2) -> Backend:
    """A backend by NAMES entry; `threads` > 1 lets the ONNX backend split a batch's rows."""
    kind, device = name.split("-")
    if kind == "onnx":
        from poolscore.server.backends.onnx.backend import OnnxBackend
        return OnnxBackend(device, threads=threads)
    from poolscore.server.backends.torch.backend import TorchBackend
    return TorchBackend(device, "off", threads=0)


def score(backend: Backend, name: str, x: np.ndarray | None = None, emb: np.ndarray | None = None,
          ids: np.ndarray | None = None, **options) -> np.ndarray:
    def arr(a):
        return None if a is None else backend.from_numpy(np.ascontiguousarray(a))

    out = backend.score(strategy_named(name), arr(x), embedding=arr(emb), ids=arr(ids), options=ScoreOptions(**options))
    return backend.to_numpy(out).astype(np.float64)
