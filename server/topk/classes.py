"""The predicted class of each item a pointwise top-K holds, beside it: for the selected-class shares.

The top-K itself stays (score, id) pairs; this map is appended to by each batch that changed the
top (only the rows that entered it are classified, not the whole batch), and pruned to the held
ids once it holds twice as many entries as there are held ids, so it is O(K) memory and
amortised O(entries) work, like the top-K's pending pairs. An id sent more than once keeps
the class of its best-scoring row, as the top-K keeps that row's score (the latest, on a tie)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_SLACK = 1024  # entries kept beyond 2 × held before a prune, so a small K is not pruned every batch


@dataclass(frozen=True)
class ClassMap:
    ids: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # in entry order, repeats allowed
    scores: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))  # aligned: each entry's row's score
    classes: np.ndarray = field(default_factory=lambda: np.empty(0, np.int32))  # aligned

    def __len__(self) -> int:
        return len(self.ids)

    def reserved_bytes(self) -> int:
        """What it holds now and a prune's copy: it grows with what enters the top (≤ 5K + slack
        entries beside a top-K of K), so a session reserves it as it grows, not up front."""
        return 2 * 20 * len(self.ids)

    def entered(self, ids: np.ndarray, scores: np.ndarray, classes: np.ndarray, held: np.ndarray) -> "ClassMap":
        """A new map with these entries added (then pruned to `held`, the top's ids, when it has grown)."""
        ids = np.concatenate([self.ids, np.asarray(ids, np.int64)])
        scores = np.concatenate([self.scores, np.asarray(scores, np.float64)])
        classes = np.concatenate([self.classes, np.asarray(classes, np.int32)])
        if len(ids) > 2 * len(held) + _SLACK:
            best = best_of_each(ids, scores)
            best = np.sort(best[np.isin(ids[best], held)])  # entry order kept: the latest still wins a tie
            ids, scores, classes = ids[best], scores[best], classes[best]
        return ClassMap(ids, scores, classes)

    def of(self, ids: np.ndarray) -> np.ndarray:
        """The class of each of `ids` (its best-scoring entry), -1 for an id the map never saw."""
        best = best_of_each(self.ids, self.scores)
        return lookup(self.ids[best], self.classes[best], ids)


def lookup(known: np.ndarray, classes: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """classes[j] where known[j] == id, for each of `ids` (-1 where none); `known` sorted, unique."""
    ids = np.asarray(ids, np.int64)
    if not len(known):
        return np.full(len(ids), -1, np.int64)
    at = np.minimum(np.searchsorted(known, ids), len(known) - 1)
    return np.where(known[at] == ids, classes[at], -1).astype(np.int64)


def best_of_each(ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Indices of each id's best-scoring entry (the latest among equal ones), in id order."""
    order = np.lexsort((-np.arange(len(ids)), -np.asarray(scores, np.float64), ids))
    first = np.ones(len(order), bool)
    first[1:] = ids[order][1:] != ids[order][:-1]
    return order[first]
