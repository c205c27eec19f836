"""The streaming top-K in torch, kept on the scoring device (CUDA); see __init__.py."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class TorchTopK:
    k: int
    best_scores: torch.Tensor  # [≤ k] sorted, best first
    best_ids: torch.Tensor  # [≤ k] int64, aligned
    pending_scores: torch.Tensor = field(default=None)  # candidates that beat the K-th pair, unsorted
    pending_ids: torch.Tensor = field(default=None)

    @classmethod
    def empty(cls, k: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> "TorchTopK":
        if k <= 0:
            raise ValueError(f"k must be > 0, got {k}")
        none = torch.empty(0, dtype=dtype, device=device)
        no_ids = torch.empty(0, dtype=torch.int64, device=device)
        return cls(k, none, no_ids, none, no_ids)

    @property
    def scores(self) -> torch.Tensor:
        return self._sorted()[0]

    @property
    def ids(self) -> torch.Tensor:
        return self._sorted()[1]

    def __len__(self) -> int:
        return int(self._sorted()[1].shape[0])

    def reserved_bytes(self) -> int:
        """Its peak: 2K (score, id) pairs held, and a merge's sorted copy of them."""
        return 64 * self.k

    def held_ids(self) -> torch.Tensor:
        """Every id this value holds: the best K and the unsorted candidates (≤ 2K)."""
        return torch.cat([self.best_ids, self.pending_ids])

    def merged(self, scores: torch.Tensor, ids: torch.Tensor) -> "TorchTopK":
        """A new TopK of self and a batch; self is left as it was."""
        ids = ids.to(self.best_ids.device, torch.int64)  # from the wire, on the CPU; scores on the device
        if self.best_ids.shape[0] == self.k:  # only pairs that beat the K-th can enter
            scores, ids = _beating(scores, ids, self.best_scores[-1], self.best_ids[-1])
        if scores.shape[0] > self.k:  # a threshold, ties included, before anything piles up
            keep = _cut(scores, self.k)
            if torch.unique(ids[keep]).shape[0] < keep.shape[0]:  # an id sent twice: cut by each id's best
                ids, inverse = torch.unique(ids, return_inverse=True)
                scores = torch.full(ids.shape, -torch.inf, dtype=scores.dtype, device=scores.device).scatter_reduce(
                    0, inverse.to(scores.device), scores, "amax")
                keep = _cut(scores, self.k) if scores.shape[0] > self.k else torch.arange(scores.shape[0], device=scores.device)
            scores, ids = scores[keep], ids[keep]
        if scores.shape[0] == 0:
            return self
        pending_scores = torch.cat([self.pending_scores, scores.to(self.best_scores.dtype)])
        pending_ids = torch.cat([self.pending_ids, ids])
        if self.best_ids.shape[0] == self.k and pending_ids.shape[0] < self.k:
            return TorchTopK(self.k, self.best_scores, self.best_ids, pending_scores, pending_ids)
        return TorchTopK(self.k, *_sort(torch.cat([self.best_scores, pending_scores]), torch.cat([self.best_ids, pending_ids]), self.k),
                    pending_scores[:0], pending_ids[:0])

    def _sorted(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pending_ids.shape[0] == 0:
            return self.best_scores, self.best_ids
        return _sort(torch.cat([self.best_scores, self.pending_scores]), torch.cat([self.best_ids, self.pending_ids]), self.k)


def _cut(scores: torch.Tensor, k: int) -> torch.Tensor:
    kth = torch.topk(scores, k, sorted=False).values.min()
    return torch.nonzero(scores >= kth).squeeze(1)


def _beating(scores: torch.Tensor, ids: torch.Tensor, kth_score: torch.Tensor, kth_id: torch.Tensor):
    """Pairs above (kth_score, kth_id): a coarse cut in the batch's dtype, then the exact test."""
    near = _at_least(scores, kth_score)  # the one pass over the batch
    s, i = scores[near].to(kth_score.dtype), ids[near]
    keep = (s > kth_score) | ((s == kth_score) & (i < kth_id))
    return s[keep], i[keep]


def _at_least(scores: torch.Tensor, kth_score: torch.Tensor) -> torch.Tensor:
    """Indices of the scores ≥ the K-th score rounded down into their dtype (no false misses).
    (On the CPU the server keeps NumpyTopK instead: backends/torch/backend.py's empty_top.)"""
    floor = kth_score.to(scores.dtype)
    floor = torch.where(floor > kth_score, torch.nextafter(floor, torch.full_like(floor, -torch.inf)), floor)
    return torch.nonzero(scores >= floor).squeeze(1)


def _sort(scores: torch.Tensor, ids: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first k of (scores, ids) in score-descending, id-ascending order."""
    by_id = torch.argsort(ids, stable=True)
    by_score = torch.argsort(scores[by_id], descending=True, stable=True)
    order = by_id[by_score]
    unique, inverse = torch.unique(ids[order], return_inverse=True)
    if unique.shape[0] < order.shape[0]:  # an id sent twice keeps its best score
        at = torch.arange(order.shape[0], device=order.device)
        first = torch.full((unique.shape[0],), order.shape[0], dtype=torch.int64, device=order.device)
        order = order[torch.sort(first.scatter_reduce(0, inverse, at, "amin")).values]
    order = order[:k]
    return scores[order], ids[order]
