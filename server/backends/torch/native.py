"""The native kernels (backends/native) behind the torch kernels' signature."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from poolscore.server.backends.native.library import POINTWISE, SAMPLE_AXIS, Library
from poolscore.server.runtime.threads import kernel_threads

HALF = (torch.float16, torch.bfloat16)
# float32 floats a thread's chunk of widened half-precision rows holds: 1 MiB, read back from L2
CHUNK_FLOATS = 1 << 18


def serves(strategy: str, kind: str, dtype: torch.dtype, rank: int, device: str) -> bool:
    """float32 (or float16 / bfloat16, widened in chunks) on the CPU, for the strategies
    kernels.cpp holds: [N, T, C], and [N, C] pointwise."""
    ranked = rank == 3 and strategy in SAMPLE_AXIS or rank == 2 and strategy in POINTWISE
    return device == "cpu" and (dtype == torch.float32 or dtype in HALF) and ranked


class NativeKernel:
    """Scores through the library where it takes the shape (T * C ≤ MAX_ROW_FLOATS), else
    through `fallback` (a torch kernel for the same key)."""

    def __init__(self, library: Library, strategy: str, fallback: Callable) -> None:
        self.library, self.strategy, self.fallback = library, strategy, fallback

    def __call__(self, x: torch.Tensor, emb: torch.Tensor | None, inv_t: torch.Tensor, kind: str) -> torch.Tensor:
        if not self.library.serves(self.strategy, kind, tuple(x.shape)):
            return self.fallback(x, emb, inv_t, kind)
        threads, x = kernel_threads(torch.get_num_threads()), x.detach()
        if x.dtype != torch.float32:
            return torch.from_numpy(self._widened(x, float(inv_t), kind, threads))
        return torch.from_numpy(self.library.score(self.strategy, x.contiguous().numpy(), float(inv_t), kind,
                                                   threads=threads))

    def _widened(self, x: torch.Tensor, inv_t: float, kind: str, threads: int) -> np.ndarray:
        """Half-precision rows widened to float32 a chunk at a time and scored while the chunk is
        in cache: the widening (torch's, F16C) costs a sixth of the kernel, and [N, 100] float16
        scores at 1.3x the compiled float16 kernel, with nothing to compile. Exact: every
        float16 and bfloat16 value is a float32 one."""
        n = x.shape[0]
        rows = max(16, CHUNK_FLOATS * threads // math.prod(x.shape[1:]))
        chunk = torch.empty((min(rows, n), *x.shape[1:]), dtype=torch.float32)
        out = np.empty(n, np.float32)
        for lo in range(0, n, rows):
            part = chunk[: min(rows, n - lo)]
            part.copy_(x[lo:lo + rows])
            out[lo:lo + part.shape[0]] = self.library.score(self.strategy, part.numpy(), inv_t, kind, threads=threads)
        return out
