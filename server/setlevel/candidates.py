"""A candidate set: the M best items by a pre-score, with what a set-level strategy needs of each.

An immutable value, like the top-K: `merged` returns a new one and leaves self as it was, so a
session's state is swapped whole. To stay O(M) per batch without copying the held rows every
batch, the rows live in append-only chunks (only a batch's survivors are copied, once); an
evicted row stays in its chunk until the chunks hold more than 2M rows, when the held rows are
gathered into one chunk (amortised O(1) copies per row). So memory is ≤ 2M rows + one batch.

Order: score descending, then id ascending, like the top-K; `sorted()` hands the set over in
that order, so what a strategy picks never depends on how the pool was cut into batches."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from poolscore.server.topk.numpy_topk import best_per_id

Rows = Mapping[str, np.ndarray]  # column name → [n, ...] rows: "embedding", "log_probs"


@dataclass(frozen=True)
class Candidates:
    m: int
    scores: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))  # [≤ M], unordered
    ids: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    chunk: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # which chunk holds the row
    row: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # and where in it
    chunks: tuple[dict[str, np.ndarray], ...] = ()
    stored: int = 0  # rows in the chunks, evicted ones included (≤ 2M)

    def __len__(self) -> int:
        return len(self.ids)

    def cut(self, scores: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Indices of the rows that would enter: beating the M-th held pair, at most M of them."""
        scores, ids = np.asarray(scores, np.float64), np.asarray(ids, np.int64)
        idx = np.arange(len(ids))
        if len(self.ids) == self.m:
            worst = self._worst()
            s, i = self.scores[worst], self.ids[worst]
            idx = np.flatnonzero((scores > s) | ((scores == s) & (ids < i)))
        if len(idx) > self.m:
            if len(np.unique(ids[idx])) < len(idx):  # an id sent twice in this batch: each id's best competes
                idx = idx[best_per_id(scores[idx], ids[idx])]
            idx = idx[best_m(scores[idx], ids[idx], self.m)]
        return idx

    def merged(self, scores: np.ndarray, ids: np.ndarray, rows: Rows) -> "Candidates":
        """A new set with these rows (already cut: see `cut`) merged in; self stays as it was."""
        if len(ids) == 0:
            return self
        s = np.concatenate([self.scores, np.asarray(scores, np.float64)])
        i = np.concatenate([self.ids, np.asarray(ids, np.int64)])
        chunk = np.concatenate([self.chunk, np.full(len(ids), len(self.chunks), np.int64)])
        row = np.concatenate([self.row, np.arange(len(ids), dtype=np.int64)])
        chunks = self.chunks + ({k: np.ascontiguousarray(v) for k, v in rows.items()},)
        keep = best_m(s, i, self.m) if len(i) > self.m else np.arange(len(i))
        merged = Candidates(self.m, s[keep], i[keep], chunk[keep], row[keep], chunks, self.stored + len(ids))
        return merged._compacted() if merged.stored > 2 * self.m else merged

    def sorted(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """(scores, ids, rows) of the held set, best first (score descending, id ascending); an id
        sent twice is handed over once, with its best score."""
        order = np.lexsort((self.ids, -self.scores))
        first = np.unique(self.ids[order], return_index=True)[1]
        if len(first) < len(order):
            order = order[np.sort(first)]
        return self.scores[order], self.ids[order], self._gather(order)

    def column(self, name: str) -> np.ndarray | None:
        """One column of the held rows, in the held order (None if the rows have no such column)."""
        if name not in _columns(self.chunks):
            return None
        return self._gather(np.arange(len(self.ids)), (name,))[name]

    def _worst(self) -> int:
        low = np.flatnonzero(self.scores == self.scores.min())
        return int(low[np.argmax(self.ids[low])])

    def _gather(self, order: np.ndarray, names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        if not self.chunks:
            return {}
        chunk, row = self.chunk[order], self.row[order]
        out = {}
        for name, first in _columns(self.chunks).items():
            if names is not None and name not in names:
                continue
            dest = np.empty((len(order),) + first.shape[1:], first.dtype)
            for c in np.unique(chunk):
                at = np.flatnonzero(chunk == c)
                have = self.chunks[c].get(name)
                dest[at] = have[row[at]] if have is not None else _MISSING[name]
            out[name] = dest
        return out

    def _compacted(self) -> "Candidates":
        every = np.arange(len(self.ids))
        rows = self._gather(every)
        return Candidates(self.m, self.scores, self.ids, np.zeros(len(every), np.int64), every, (rows,), len(every))


# what a row of a chunk made before its column existed holds (a checkpoint from an older server)
_MISSING = {"classes": -1}


def _columns(chunks) -> dict[str, np.ndarray]:
    """Every column name the chunks hold, each with one chunk's array of it (its dtype and width)."""
    return {name: a for chunk in reversed(chunks) for name, a in chunk.items()}


def best_m(scores: np.ndarray, ids: np.ndarray, m: int) -> np.ndarray:
    """Indices of the m best (score descending, id ascending) in O(n): a partition, then the ties
    at the m-th score settled by id."""
    if len(scores) <= m:
        return np.arange(len(scores))
    kth = np.partition(scores, len(scores) - m)[len(scores) - m]
    above = np.flatnonzero(scores > kth)
    tied = np.flatnonzero(scores == kth)
    tied = tied[np.argsort(ids[tied], kind="stable")[:m - len(above)]]
    return np.concatenate([above, tied])
