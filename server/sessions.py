"""SessionStore: scoring sessions, each a streaming top-K committed batch by batch.

A batch is scored outside any lock but committed under the session's lock, and only if
its seq is still the next one: a session is always exactly "all batches < next_seq".
Lock order: the store's lock, then a session's; never the other way round.
"""
from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

from poolscore.server.errors import BadInput, OverLimit, SequenceGap, SessionConflict, SessionNotFound
from poolscore.server.spec import Feed, Spec


@dataclass
class Session:
    id: str
    spec: Spec
    top: object  # topk.TopK or topk_numpy.NumpyTopK, as the backend keeps it
    next_seq: int = 0
    items: int = 0
    feed: Feed | None = None  # the hosted model, when batches carry raw inputs
    keyed: bool | None = None  # set by the first batch: string keys or int64 ids, never both
    keys: dict[int, str] = field(default_factory=dict)  # surrogate id → key, for ids in top only
    used: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def commit(self, seq: int, top, rows: int, batch_keys: list[str] | None) -> None:
        """Apply a scored batch; the caller holds self.lock and checked seq == next_seq."""
        if batch_keys is not None and top is not self.top:
            first = self.items
            kept = {}
            for i in top.held_ids().tolist():  # ≤ 2K entries, once per batch that changed the top
                kept[i] = self.keys[i] if i < first else batch_keys[i - first]
            self.keys = kept
        if rows:
            self.keyed = batch_keys is not None
        self.top, self.next_seq, self.items, self.used = top, seq + 1, self.items + rows, time.monotonic()

    def check_seq(self, seq: int) -> bool:
        """True when `seq` is new; False when already committed (ack again, score nothing)."""
        if seq < 0:
            raise BadInput("seq", f"must be ≥ 0, got {seq}")
        if seq < self.next_seq:
            return False
        if seq > self.next_seq:
            raise SequenceGap(self.id, self.next_seq, seq)
        return True

    def check_keys(self, keyed: bool, seq: int) -> None:
        if self.keyed is not None and keyed != self.keyed:
            sent, then = ("keys", "ids") if keyed else ("ids", "keys")
            raise BadInput("keys", f"batch {seq} sends {sent} but the session's first batch sent {then}")


class SessionStore:
    def __init__(self, max_sessions: int, ttl_s: float) -> None:
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self.max_sessions, self.ttl_s = max_sessions, ttl_s

    def create(self, spec: Spec, top, session_id: str = "", feed: Feed | None = None) -> Session:
        with self._lock:
            self._expire()
            if session_id and session_id in self._sessions:  # a retried create, or a reopen
                return _same(self._sessions[session_id], spec, top.k, feed)
            if len(self._sessions) >= self.max_sessions:
                raise OverLimit(f"sessions: all {self.max_sessions} in use; delete finished ones")
            session = Session(session_id or uuid.uuid4().hex, spec, top, feed=feed)
            self._sessions[session.id] = session
            return session

    def get(self, session_id: str) -> Session:
        """The session, its idle clock restarted; NOT_FOUND once it has been idle past the TTL."""
        now = time.monotonic()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and self._idle(session, now):
                del self._sessions[session_id]  # expired: as if the last create had swept it
                session = None
            if session is not None:
                session.used = now
        if session is None:
            raise SessionNotFound(session_id)
        return session

    def delete(self, session_id: str) -> Session:
        with self._lock:
            session = self._sessions.pop(session_id, None)
        if session is None:
            raise SessionNotFound(session_id)
        return session

    def __len__(self) -> int:
        """Sessions held, idle ones past the TTL dropped first (the gauge reads this at scrape)."""
        with self._lock:
            self._expire()
            return len(self._sessions)

    def _expire(self) -> None:
        now = time.monotonic()
        for sid in [s.id for s in self._sessions.values() if self._idle(s, now)]:
            del self._sessions[sid]

    def _idle(self, session: Session, now: float) -> bool:
        """Idle past the TTL: dropped, as if it had never been created."""
        return session.used < now - self.ttl_s


def _same(session: Session, spec: Spec, k: int, feed: Feed | None) -> Session:
    """The existing session when it is the one asked for (a retried create, a pipeline
    reopening it to resume); else SessionConflict, rather than scoring into the wrong one."""
    def model(f: Feed | None) -> tuple | None:
        return None if f is None else (f.wire.name, f.samples, f.seed)

    if (session.spec.strategy.name, session.spec.options, session.top.k, model(session.feed)) != \
            (spec.strategy.name, spec.options, k, model(feed)):
        raise SessionConflict(session.id, _described(session.spec, session.top.k, session.feed),
                              _described(spec, k, feed))
    return session


def _described(spec: Spec, k: int, feed: Feed | None) -> str:
    o = spec.options
    text = (f"strategy {spec.strategy.name} ({o.input_kind.value}, temperature {o.temperature:g}, base {o.base:g}, "
            f"normalized {o.normalized}, seed {o.seed}), k={k}")
    return text + (f", model {feed.wire.name!r} ({feed.samples} samples, seed {feed.seed})" if feed else "")
