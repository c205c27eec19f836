"""A set-level session's state: its candidate set (and EER's reference sample, coreset's labeled
seeds), merged batch by batch; the strategy runs once, when the top-K is asked for.

It stands where a plain session keeps its top-K (State.top) and answers as one does (k,
scores, ids, held_ids), so sessions, replies and keys need nothing of their own for it. Like
the top-K it is an immutable value; the selection it computes is remembered on the value."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np

from poolscore.server.errors import BadInput
from poolscore.server.setlevel.candidates import Candidates
from poolscore.server.setlevel.eer import BLOCK_ELEMENTS as EER_BLOCK
from poolscore.server.setlevel.finish import select
from poolscore.server.setlevel.rows import Widths, log_probs, widths_of
from poolscore.server.strategies import Spec
from poolscore.server.topk.classes import best_of_each, lookup

_INDEX_BYTES = 44  # a held row's score, id, chunk, row, predicted class (and softrank's Gumbel draw)


@dataclass(frozen=True)
class CandidatePool:
    k: int
    spec: Spec
    candidates: Candidates
    reference: Candidates | None = None  # expected_error_reduction: a uniform sample of the pool
    labeled: np.ndarray | None = None  # coreset: [L, D] float32 embeddings of labeled items
    widths: Widths | None = None  # the rows' widths, fixed by the first batch with rows
    _memo: dict = field(default_factory=dict, compare=False, repr=False)
    _lock: Any = field(default_factory=threading.Lock, compare=False, repr=False)

    @classmethod
    def empty(cls, spec: Spec, k: int) -> "CandidatePool":
        if k <= 0:
            raise ValueError(f"k must be > 0, got {k}")
        sel = spec.selection
        reference = Candidates(sel.reference) if sel.kind == "expected_error_reduction" else None
        return cls(k, spec, Candidates(max(sel.m(k), k)), reference)

    @property
    def m(self) -> int:
        return self.candidates.m

    def __len__(self) -> int:
        return min(self.k, len(self.candidates))

    def held_ids(self) -> np.ndarray:
        ref = self.reference.ids if self.reference is not None else self.candidates.ids[:0]
        return np.union1d(self.candidates.ids, ref)

    def absorbed(self, host: Mapping[str, np.ndarray]) -> "CandidatePool":
        """A new pool with this batch's rows (host arrays: scores, ids, x, embedding, labeled,
        reference_scores); BadInput names what does not fit, and self stays as it was."""
        pool = self._with_labeled(host.get("labeled"))
        if len(host["ids"]) == 0:
            return pool
        widths = widths_of(pool.spec.strategy, host, pool.widths)
        if pool.labeled is not None and pool.labeled.shape[1] != widths.embedding:
            raise BadInput("labeled", f"{pool.labeled.shape[1]} wide, but the embeddings are {widths.embedding}")
        cands = pool._merged(pool.candidates, host["scores"], host)
        ref = pool.reference
        if ref is not None:
            ref = pool._merged(ref, host["reference_scores"], host)
        return replace(pool, candidates=cands, reference=ref, widths=widths, _memo={}, _lock=threading.Lock())

    def reserved_bytes(self) -> int:
        """What this pool may hold at its peak: 2M rows, a gathered copy, the finish's work. The
        rows' widths are known from the first batch; until then, what the ids and scores take."""
        w, m = self.widths or Widths(), self.m  # before the first batch: the index alone
        row = _INDEX_BYTES + w.row_bytes(self.spec.strategy.keeps)
        total = 3 * m * row + (0 if self.labeled is None else self.labeled.nbytes)
        if self.reference is not None:
            total += 3 * self.reference.m * (_INDEX_BYTES + w.row_bytes(("embedding", "log_probs")))
        if self.spec.selection.kind == "cluster_margin":
            total += m * (m - 1) // 2 * 8 * 2  # the condensed distance matrix, and linkage's copy of it
        if self.spec.selection.kind == "expected_error_reduction":
            total += 8 * EER_BLOCK * 8  # the blocks' temporaries
        return total

    @property
    def scores(self) -> np.ndarray:
        return self._selected()[0]

    @property
    def ids(self) -> np.ndarray:
        return self._selected()[1]

    def _selected(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:  # once per value, however many GetTopK ask at once
            if "top" not in self._memo:
                ref = self.reference.sorted() if self.reference is not None else None
                self._memo["top"] = select(self.spec, self.k, self.candidates.sorted(), ref, self.labeled)
            return self._memo["top"]

    def classes_of(self, ids: np.ndarray) -> np.ndarray:
        """Each of `ids`' predicted class, from the candidates' rows (-1 for one not held, or sent
        without predictions, or held from a checkpoint older than the class column)."""
        cands = self.candidates
        held = cands.column("classes")
        if held is None:
            return np.full(len(ids), -1, np.int64)
        best = best_of_each(cands.ids, cands.scores)  # an id held twice: its best row's, as sorted() hands over
        return lookup(cands.ids[best], held[best], ids)

    def _merged(self, cands: Candidates, scores: np.ndarray, host: Mapping[str, np.ndarray]) -> Candidates:
        idx = cands.cut(scores, host["ids"])
        return cands.merged(scores[idx], host["ids"][idx], self._rows(host, idx, cands is self.reference))

    def _rows(self, host: Mapping[str, np.ndarray], idx: np.ndarray, reference: bool) -> dict[str, np.ndarray]:
        keeps = ("embedding", "log_probs") if reference else self.spec.strategy.keeps
        rows = {"gumbel": host["gumbel"][idx]} if self.spec.selection.kind == "softrank" else {}
        if not reference and "classes" in host:  # for the selected-class shares
            rows["classes"] = host["classes"][idx]
        if "embedding" in keeps:
            rows["embedding"] = host["embedding"][idx].astype(np.float32)
        if "log_probs" in keeps:
            rows["log_probs"] = log_probs(host["x"][idx], self.spec.options)
        return rows

    def _with_labeled(self, labeled: np.ndarray | None) -> "CandidatePool":
        if labeled is None:
            return self
        if self.spec.selection.kind != "coreset":
            raise BadInput("labeled", f"labeled embeddings seed coreset, not {self.spec.strategy.name}")
        dim = self.widths.embedding if self.widths is not None else (
            self.labeled.shape[1] if self.labeled is not None else None)
        if labeled.ndim != 2 or (dim is not None and labeled.shape[1] != dim):
            raise BadInput("labeled", f"needs shape [L, {dim or 'D'}] (the embeddings' width), got {list(labeled.shape)}")
        if not np.isfinite(labeled).all():
            raise BadInput("labeled", "NaN or Inf", int(np.flatnonzero(~np.isfinite(labeled).all(axis=1))[0]))
        rows = labeled.astype(np.float32)
        return replace(self, labeled=rows if self.labeled is None else np.concatenate([self.labeled, rows]),
                       _memo={}, _lock=threading.Lock())
