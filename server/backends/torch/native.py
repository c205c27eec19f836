"""The native kernels (backends/native) behind the torch kernels' signature."""
from __future__ import annotations

from typing import Callable

import torch

from poolscore.server.backends.native.library import POINTWISE, SAMPLE_AXIS, Library


def serves(strategy: str, kind: str, dtype: torch.dtype, rank: int, device: str) -> bool:
    """float32 on the CPU, for the strategies kernels.cpp holds: [N, T, C], and [N, C] pointwise."""
    ranked = rank == 3 and strategy in SAMPLE_AXIS or rank == 2 and strategy in POINTWISE
    return device == "cpu" and dtype == torch.float32 and ranked


class NativeKernel:
    """Scores through the library where it takes the shape (T * C ≤ MAX_ROW_FLOATS), else
    through `fallback` (a torch kernel for the same key)."""

    def __init__(self, library: Library, strategy: str, fallback: Callable) -> None:
        self.library, self.strategy, self.fallback = library, strategy, fallback

    def __call__(self, x: torch.Tensor, emb: torch.Tensor | None, inv_t: torch.Tensor, kind: str) -> torch.Tensor:
        if not self.library.serves(self.strategy, kind, tuple(x.shape)):
            return self.fallback(x, emb, inv_t, kind)
        scores = self.library.score(self.strategy, x.detach().contiguous().numpy(), float(inv_t), kind,
                                    threads=torch.get_num_threads())
        return torch.from_numpy(scores)
