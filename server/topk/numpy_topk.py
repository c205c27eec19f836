"""The streaming top-K in NumPy: the CPU's (either backend) and the ONNX backend's.

Same value semantics, same order, same amortised sorting as torch_topk.py; see __init__.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class NumpyTopK:
    k: int
    best_scores: np.ndarray
    best_ids: np.ndarray
    pending_scores: np.ndarray
    pending_ids: np.ndarray

    @classmethod
    def empty(cls, k: int, dtype=np.float64) -> "NumpyTopK":
        if k <= 0:
            raise ValueError(f"k must be > 0, got {k}")
        return cls(k, np.empty(0, dtype), np.empty(0, np.int64), np.empty(0, dtype), np.empty(0, np.int64))

    @property
    def scores(self) -> np.ndarray:
        return self._sorted()[0]

    @property
    def ids(self) -> np.ndarray:
        return self._sorted()[1]

    def __len__(self) -> int:
        return len(self._sorted()[1])

    def reserved_bytes(self) -> int:
        """Its peak: 2K (score, id) pairs held, and a merge's sorted copy of them."""
        return 64 * self.k

    def held_ids(self) -> np.ndarray:
        return np.concatenate([self.best_ids, self.pending_ids])

    def merged(self, scores: np.ndarray, ids: np.ndarray) -> "NumpyTopK":
        scores, ids = np.asarray(scores), np.asarray(ids, dtype=np.int64)
        if len(self.best_ids) == self.k:
            scores, ids = _beating(scores, ids, self.best_scores[-1], self.best_ids[-1])
        if len(scores) > self.k:
            keep = _cut(scores, self.k)
            if _repeats(ids[keep]):  # an id sent twice in this batch: cut by each id's best instead
                best = best_per_id(scores, ids)
                scores, ids = scores[best], ids[best]
                keep = _cut(scores, self.k) if len(scores) > self.k else np.arange(len(scores))
            scores, ids = scores[keep], ids[keep]
        if len(scores) == 0:
            return self
        pending_scores = np.concatenate([self.pending_scores, scores.astype(self.best_scores.dtype)])
        pending_ids = np.concatenate([self.pending_ids, ids])
        if len(self.best_ids) == self.k and len(pending_ids) < self.k:
            return NumpyTopK(self.k, self.best_scores, self.best_ids, pending_scores, pending_ids)
        best = _sort(np.concatenate([self.best_scores, pending_scores]), np.concatenate([self.best_ids, pending_ids]), self.k)
        return NumpyTopK(self.k, *best, pending_scores[:0], pending_ids[:0])

    def _sorted(self) -> tuple[np.ndarray, np.ndarray]:
        if len(self.pending_ids) == 0:
            return self.best_scores, self.best_ids
        return _sort(np.concatenate([self.best_scores, self.pending_scores]),
                     np.concatenate([self.best_ids, self.pending_ids]), self.k)


def _cut(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the scores ≥ the k-th largest (ties included)."""
    kth = np.partition(scores, len(scores) - k)[len(scores) - k]
    return np.flatnonzero(scores >= kth)


def _repeats(ids: np.ndarray) -> bool:
    return len(np.unique(ids)) < len(ids)


def best_per_id(scores: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Indices of each id's best score (the first of equal ones), for batches that repeat ids."""
    order = np.lexsort((-np.asarray(scores, np.float64), ids))
    first = np.ones(len(order), bool)
    first[1:] = ids[order][1:] != ids[order][:-1]
    return np.sort(order[first])


def at_least(scores: np.ndarray, kth_score: float) -> np.ndarray:
    """Indices of the scores ≥ the K-th score rounded down into their dtype (no false misses)."""
    floor = scores.dtype.type(kth_score)
    if floor > kth_score:
        floor = np.nextafter(floor, scores.dtype.type(-np.inf))
    return np.flatnonzero(scores >= floor)


def _beating(scores: np.ndarray, ids: np.ndarray, kth_score, kth_id) -> tuple[np.ndarray, np.ndarray]:
    near = at_least(scores, kth_score)
    s, i = scores[near].astype(np.float64), ids[near]
    keep = (s > kth_score) | ((s == kth_score) & (i < kth_id))
    return s[keep], i[keep]


def _sort(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((ids, -scores))
    first = np.unique(ids[order], return_index=True)[1]  # an id sent twice keeps its best score
    if len(first) < len(order):
        order = order[np.sort(first)]
    order = order[:k]
    return scores[order], ids[order]
