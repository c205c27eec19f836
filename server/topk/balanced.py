"""class_balanced's top-K: per predicted class, the K best (score, id) pairs, in NumPy on the host.

Each class keeps up to K pairs, so that a class short of its quota hands the rest to the best
of the others exactly: memory is O(C·K), whatever the pool. A merge cuts the batch by each
row's class's K-th pair (one vectorised comparison), then sorts the survivors with what is
held, by (class, score descending, id ascending), and keeps the first K of each class."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from poolscore.server.errors import BadInput
from poolscore.server.topk.classes import lookup


def quotas(k: int, classes: int, priors: tuple[float, ...] = ()) -> np.ndarray:
    """Per-class quotas summing to k: equal, or ∝ priors by largest remainder (ties: lower class)."""
    weights = np.asarray(priors, np.float64) if priors else np.ones(classes)
    exact = k * weights / weights.sum()
    q = np.floor(exact).astype(np.int64)
    order = np.lexsort((np.arange(classes), -(exact - q)))
    q[order[:k - int(q.sum())]] += 1
    return q


@dataclass(frozen=True)
class BalancedTopK:
    k: int
    priors: tuple[float, ...] = ()
    classes: int = 0  # the class count, from the first batch
    held_scores: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))  # sorted by (class, -score, id)
    held_ids_: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    held_classes: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    @classmethod
    def empty(cls, k: int, priors: tuple[float, ...] = ()) -> "BalancedTopK":
        if k <= 0:
            raise ValueError(f"k must be > 0, got {k}")
        return cls(k, priors)

    def __len__(self) -> int:
        return min(self.k, len(self.held_ids_))

    def reserved_bytes(self) -> int:
        """Its peak: K (score, id, class) triples per class and a merge's copy (K·2 per class before the first batch)."""
        return 2 * 24 * self.k * max(self.classes, 2)

    def held_ids(self) -> np.ndarray:
        return self.held_ids_

    @property
    def scores(self) -> np.ndarray:
        return self._selected()[0]

    @property
    def ids(self) -> np.ndarray:
        return self._selected()[1]

    def classes_of(self, ids: np.ndarray) -> np.ndarray:
        """Each of `ids`' predicted class, as held (-1 for one not held)."""
        order = np.argsort(self.held_ids_, kind="stable")
        return lookup(self.held_ids_[order], self.held_classes[order], ids)

    def merged_by_class(self, scores, ids, predicted, classes: int) -> "BalancedTopK":
        """A new value with this batch's rows, each under its predicted class; self stays as it was."""
        s, i, c = (np.asarray(a) for a in (scores, ids, predicted))
        s, i, c = s.astype(np.float64), i.astype(np.int64), c.astype(np.int64)
        if self.classes and classes != self.classes:
            raise BadInput("logits", f"{classes} classes, but the session's first batch had {self.classes}")
        if self.priors and len(self.priors) != classes:
            raise BadInput("strategy.class_priors", f"{len(self.priors)} priors for {classes} classes")
        kth_s, kth_i = self._kth(classes)
        keep = (s > kth_s[c]) | ((s == kth_s[c]) & (i < kth_i[c]))
        if not keep.any():
            return self if self.classes else BalancedTopK(self.k, self.priors, classes)
        s, i, c = (np.concatenate([h, a[keep]]) for h, a in ((self.held_scores, s), (self.held_ids_, i), (self.held_classes, c)))
        best = np.lexsort((i, -s))
        first = np.unique(i[best], return_index=True)[1]  # an id sent twice keeps its best score (and that row's class)
        if len(first) < len(best):
            s, i, c = s[best[first]], i[best[first]], c[best[first]]
        order = np.lexsort((i, -s, c))
        s, i, c = s[order], i[order], c[order]
        first = np.searchsorted(c, c, side="left")  # where each row's class starts
        kept = np.arange(len(c)) - first < self.k
        return BalancedTopK(self.k, self.priors, classes, s[kept], i[kept], c[kept])

    def _kth(self, classes: int) -> tuple[np.ndarray, np.ndarray]:
        """Each class's K-th held pair: -inf (anything enters) for a class holding fewer than K."""
        kth_s, kth_i = np.full(classes, -np.inf), np.full(classes, np.iinfo(np.int64).max)
        counts = np.bincount(self.held_classes, minlength=classes)
        full = np.flatnonzero(counts == self.k)
        last = np.cumsum(counts)[full] - 1
        kth_s[full], kth_i[full] = self.held_scores[last], self.held_ids_[last]
        return kth_s, kth_i

    def _selected(self) -> tuple[np.ndarray, np.ndarray]:
        """Each class's best within its quota, the quota a short class leaves to the best of the
        rest; all in score-descending, id-ascending order."""
        if not len(self.held_ids_):
            return self.held_scores, self.held_ids_
        q = quotas(self.k, self.classes, self.priors)
        rank = np.arange(len(self.held_classes)) - np.searchsorted(self.held_classes, self.held_classes, side="left")
        within = rank < q[self.held_classes]
        rest = np.flatnonzero(~within)
        rest = rest[np.lexsort((self.held_ids_[rest], -self.held_scores[rest]))][:self.k - int(within.sum())]
        pick = np.concatenate([np.flatnonzero(within), rest])
        s, i = self.held_scores[pick], self.held_ids_[pick]
        order = np.lexsort((i, -s))
        return s[order], i[order]
