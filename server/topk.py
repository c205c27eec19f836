"""The K best (score, id) pairs of everything seen so far, as an immutable value.

Order is score descending, then id ascending, so a pool gives the same answer however it
is batched. Each merge first cuts the batch by the current K-th pair: late in a pool almost
no row beats it, so the sort only ever sees K + a few rows, and memory stays O(K + batch).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TopK:
    k: int
    scores: torch.Tensor  # [≤ k], best first
    ids: torch.Tensor  # [≤ k] int64, aligned with scores

    @classmethod
    def empty(cls, k: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> "TopK":
        if k <= 0:
            raise ValueError(f"k must be > 0, got {k}")
        return cls(k, torch.empty(0, dtype=dtype, device=device),
                   torch.empty(0, dtype=torch.int64, device=device))

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def merged(self, scores: torch.Tensor, ids: torch.Tensor) -> "TopK":
        """A new TopK of self and a batch; self is left as it was."""
        scores = scores.to(self.scores.dtype)
        ids = ids.to(torch.int64)
        if len(self) == self.k:  # only pairs that beat the K-th can enter
            scores, ids = _beating(scores, ids, self.scores[-1], self.ids[-1])
        if scores.shape[0] > self.k:  # a threshold, ties included, before any sort
            kth = torch.topk(scores, self.k, sorted=False).values.min()
            keep = scores >= kth
            scores, ids = scores[keep], ids[keep]
        if scores.shape[0] == 0:
            return self
        return TopK(self.k, *best(torch.cat([self.scores, scores]), torch.cat([self.ids, ids]), self.k))


def _beating(scores: torch.Tensor, ids: torch.Tensor, kth_score: torch.Tensor, kth_id: torch.Tensor):
    keep = (scores > kth_score) | ((scores == kth_score) & (ids < kth_id))
    return scores[keep], ids[keep]


def best(scores: torch.Tensor, ids: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first k of (scores, ids) in score-descending, id-ascending order."""
    by_id = torch.argsort(ids, stable=True)
    by_score = torch.argsort(scores[by_id], descending=True, stable=True)
    order = by_id[by_score[:k]]
    return scores[order], ids[order]
