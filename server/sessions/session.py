"""A scoring session: its committed state as one immutable value, swapped in per batch.

A batch is scored and merged outside any lock, against the state it read; committing is a
compare-and-swap under the session's lock, taken only if no other batch was committed in
between. So GetTopK never waits behind a batch's kernels (or a model's forward), and a
session is always exactly "all batches < next_seq"."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import Mapping

import numpy as np

from poolscore.server.backends.base import Backend, TopK
from poolscore.server.errors import BadInput, ResendConflict, SequenceGap
from poolscore.server.models.feed import Feed
from poolscore.server.pipeline import Scored
from poolscore.server.runtime.budget import MemoryBudget
from poolscore.server.setlevel.pool import CandidatePool
from poolscore.server.strategies import Spec
from poolscore.server.topk.balanced import BalancedTopK
from poolscore.server.topk.classes import ClassMap


RESENDS = 1024  # how many committed batches a resend is checked against


@dataclass(frozen=True)
class State:
    top: TopK  # or a BalancedTopK (class_balanced), or a CandidatePool (set-level): each answers as a TopK
    next_seq: int = 0
    items: int = 0
    keyed: bool | None = None  # set by the first batch of rows: string keys or int64 ids, never both
    keys: Mapping[int, str] = field(default_factory=dict)  # surrogate id → key, for the ids `top` holds
    key_bytes: tuple[int, int] = (0, 0)  # the held keys' encoded bytes: in all, and the longest (set with keys)
    width: tuple[int, ...] | None = None  # the first batch's predictions past the rows: every batch's must match
    digests: np.ndarray = field(default_factory=lambda: np.zeros(RESENDS, np.uint32))  # the last RESENDS batches' digests
    classes: ClassMap = field(default_factory=ClassMap)  # a pointwise top's held ids → predicted class

    def after(self, seq: int, scored: Scored, digest: int | None = None) -> "State":
        """The state once `scored` (batch `seq`, scored from row `items`) is committed; self stays."""
        if scored.rows:  # a batch of no rows carries neither keys nor ids: it fits either kind of session
            self._check_keys(scored.keys is not None, seq)
        if scored.width is not None and self.width is not None and scored.width != self.width:
            raise BadInput("logits", f"shape [N, {', '.join(map(str, scored.width))}], but the session's first batch "
                                     f"had [N, {', '.join(map(str, self.width))}]")
        top = _merged(self.top, scored)
        keys, key_bytes = self.keys, self.key_bytes
        if scored.keys is not None and top is not self.top:
            first = self.items
            keys = {i: self.keys[i] if i < first else scored.keys[i - first]
                    for i in top.held_ids().tolist()}  # ≤ 2K entries, once per batch that changed the top
            sizes = [len(k.encode()) for k in keys.values()]
            key_bytes = (sum(sizes), max(sizes, default=0))
        keyed = (scored.keys is not None) if scored.rows else self.keyed
        width = self.width if self.width is not None else scored.width
        classes = self.classes
        if scored.classify is not None and top is not self.top:
            held, ids, scores, predicted = scored.classify(top.held_ids(), _lowest(top))
            classes = classes.entered(ids, scores, predicted, held)
        digests = self.digests
        if digest is not None:
            digests = digests.copy()
            digests[seq % RESENDS] = digest
        return replace(self, top=top, next_seq=seq + 1, items=self.items + scored.rows, keyed=keyed, keys=keys,
                       key_bytes=key_bytes, width=width, digests=digests, classes=classes)

    def check_resend(self, seq: int, digest: int, session_id: str) -> None:
        """A committed seq sent again must carry the same batch (within the last RESENDS seqs)."""
        if self.next_seq - RESENDS <= seq < self.next_seq and self.digests[seq % RESENDS] != digest:
            raise ResendConflict(session_id, seq)

    def reserved_bytes(self) -> int:
        """What this state may hold at its peak: its top-K (or candidate set) and its keys."""
        return self.top.reserved_bytes() + self.key_bytes[0] + 100 * len(self.keys) + self.classes.reserved_bytes()

    def selected_classes(self) -> np.ndarray | None:
        """The predicted class of each item the top-K answers, in its order (-1: not known, say a
        session restored from a checkpoint older than its class map); None when the strategy
        selects without predictions."""
        top = self.top
        if isinstance(top, (BalancedTopK, CandidatePool)):
            return top.classes_of(top.ids)
        return self.classes.of(_host(top.ids)) if len(self.classes) else None

    def reply_bytes(self) -> int:
        """An upper bound on the TopK reply: its k keys, each at most the longest held, with scores."""
        total, longest = self.key_bytes
        return min(total + 16 * len(self.keys), self.top.k * (longest + 16)) + 64

    def is_new(self, seq: int, session_id: str) -> bool:
        """True when `seq` is the next batch; False when it is committed (ack again, score nothing)."""
        if seq < 0:
            raise BadInput("seq", f"must be ≥ 0, got {seq}")
        if seq > self.next_seq:
            raise SequenceGap(session_id, self.next_seq, seq)
        return seq == self.next_seq

    def _check_keys(self, keyed: bool, seq: int) -> None:
        if self.keyed is not None and keyed != self.keyed:
            sent, then = ("keys", "ids") if keyed else ("ids", "keys")
            raise BadInput("keys", f"batch {seq} sends {sent} but the session's first batch sent {then}")


def _lowest(top) -> float:
    """The lowest score a pointwise top-K holds (of its best K and its pending candidates)."""
    lows = [float(s.min()) for s in (top.best_scores, top.pending_scores) if s.shape[0]]
    # a step down in float32: a held score may be a wider batch score rounded into a float32 top-K
    return float(np.nextafter(np.float32(min(lows)), np.float32(-np.inf))) if lows else -np.inf


def _host(a) -> np.ndarray:
    return a if isinstance(a, np.ndarray) else a.cpu().numpy()  # a TorchTopK's ids, on its device


def _merged(top, scored: Scored):
    if scored.host is not None:
        return top.absorbed(scored.host)
    if scored.classes is not None:
        return top.merged_by_class(scored.scores, scored.ids, scored.classes, scored.class_count)
    return top.merged(scored.scores, scored.ids)


def empty_state(spec: Spec, k: int, backend: Backend) -> State:
    """A session's first state: its selection's empty top-K (class_balanced keeps one per class,
    a set-level strategy a candidate set)."""
    if spec.selection.kind == "class_balanced":
        return State(BalancedTopK.empty(k, spec.selection.priors))
    if spec.selection.set_level:
        return State(CandidatePool.empty(spec, k))
    return State(backend.empty_top(k))


@dataclass
class Session:
    id: str
    spec: Spec
    state: State  # replaced whole, never changed in place: one read is a consistent snapshot
    feed: Feed | None = None  # the hosted model, when batches carry raw inputs
    used: float = field(default_factory=time.monotonic)  # the idle clock (the store's TTL)
    reserved: int = 0  # bytes of the memory budget this session holds (released when it goes)
    closed: bool = False  # deleted or expired: reserves nothing more
    owner: str = ""  # the principal that created it: the only one that finds it
    durable_seq: int = 0  # with --state-dir: batches < durable_seq are on disk (checkpoints.py sets it)
    # Guards only the swap of `state` in commit(); never held while scoring, nor while
    # taking the store's lock (lock order: the store's, then a session's).
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def k(self) -> int:
        return self.state.top.k

    def reserve(self, new: State, budget: MemoryBudget) -> None:
        """Reserve what `new` may hold beyond what is reserved, before it is committed; OverLimit
        (RESOURCE_EXHAUSTED, naming the budget) leaves the session as it was."""
        need = new.reserved_bytes()
        with self.lock:
            if need > self.reserved and not self.closed:
                budget.reserve(need - self.reserved, f"session {self.id}")
                self.reserved = need

    def close(self, budget: MemoryBudget) -> None:
        """Give back what the session reserved (it was deleted, expired, or its pool scored)."""
        with self.lock:
            budget.release(self.reserved)
            self.reserved, self.closed = 0, True

    def commit(self, read: State, new: State) -> bool:
        """Swap in `new` if the state is still the one it was computed from; False if another
        batch was committed meanwhile (the caller then acks from the state that won)."""
        with self.lock:
            if self.state is not read:
                return False
            self.state, self.used = new, time.monotonic()
            return True

    def describe(self) -> str:
        text = f"{self.spec.describe()}, k={self.k}"
        return text + (f", {self.feed.describe()}" if self.feed else "")
