"""SessionStore: the sessions by (owner, id), with the limits (count, idle TTL) and expiry.

Each principal has its own namespace of session ids: another principal's session is not
found, and its ids never collide with yours.

Lock order: the store's lock, then a session's; never the other way round."""
from __future__ import annotations

import logging
import threading
import time
import secrets

from poolscore.server.errors import (
    BadInput, NotDurable, OverLimit, SessionConflict, SessionElsewhere, SessionNotFound, SessionUnrestorable,
)
from poolscore.server.models.feed import Feed
from poolscore.server.runtime.budget import MemoryBudget
from poolscore.server.sessions.checkpoints import Checkpoints
from poolscore.server.sessions.session import Session, State
from poolscore.server.strategies import Spec


log = logging.getLogger(__name__)

MAX_SESSION_ID = 128  # characters of a caller-chosen session id


class SessionStore:
    def __init__(self, max_sessions: int, ttl_s: float, budget: MemoryBudget | None = None,
                 checkpoints: Checkpoints | None = None) -> None:
        self._sessions: dict[tuple[str, str], Session] = {}  # (owner, id) → session
        self._lock = threading.Lock()  # guards _sessions and each session's `used`; held for dict work only
        self.max_sessions, self.ttl_s = max_sessions, ttl_s
        self.budget = budget or MemoryBudget(2**62)
        self.checkpoints = checkpoints  # None: sessions live in memory only

    def restore(self, sessions: list[Session]) -> None:
        """Sessions loaded from the state dir at start: each reserves its memory again; one that
        does not fit (a smaller budget or --max-sessions than before) stays on disk, refused by name."""
        for session in sessions:
            try:
                if len(self._sessions) >= self.max_sessions:
                    raise OverLimit(f"sessions: all {self.max_sessions} in use (--max-sessions)")
                session.reserve(session.state, self.budget)
            except OverLimit as err:
                self.checkpoints.files.refuse(self.checkpoints.files.root / self.checkpoints.files.name(session.owner, session.id),
                                        SessionUnrestorable, str(err))
                continue
            self._sessions[session.owner, session.id] = session

    def create(self, spec: Spec, first: State, session_id: str = "", feed: Feed | None = None,
               owner: str = "") -> Session:
        if len(session_id) > MAX_SESSION_ID:
            raise BadInput("session_id", f"{len(session_id)} characters, over the limit of {MAX_SESSION_ID}")
        with self._lock:
            self._expire()
            if session_id and (owner, session_id) not in self._sessions:
                self._take_over(owner, session_id)  # on disk, from a replica that has stopped: a reopen
            if session_id and (owner, session_id) in self._sessions:  # a retried create, or a reopen
                return _same(self._sessions[owner, session_id], Session(session_id, spec, first, feed))
            if len(self._sessions) >= self.max_sessions:
                raise OverLimit(f"sessions: all {self.max_sessions} in use; delete finished ones")
            self._refuse_damaged(owner, session_id)  # never written over silently
            session = Session(session_id or secrets.token_hex(16), spec, first, feed=feed, owner=owner)  # unguessable
            session.reserve(first, self.budget)  # its top-K (or a candidate set's index): refused here, before any batch
            self._sessions[owner, session.id] = session
        if self.checkpoints is not None:
            try:
                self.checkpoints.created(session)  # on disk before the create returns
            except SessionElsewhere:
                self._discard(session)  # another replica's: its files are not ours to touch
                raise
            except OSError as err:
                self._discard(session)
                self.checkpoints.files.forget(owner, session.id)
                raise NotDurable(f"--state-dir: session {session.id!r} could not be written: {err}") from None
        return session

    def _take_over(self, owner: str, session_id: str) -> None:
        """A session in the state dir but not here (a replica sharing it served it, and stopped):
        restored and held. Called with the store's lock held."""
        if self.checkpoints is None or (session := self.checkpoints.files.fetch(owner, session_id)) is None:
            return
        try:
            session.reserve(session.state, self.budget)
        except OverLimit:
            self.checkpoints.files.let_go(owner, session_id)  # a replica with room may take it
            raise
        self._sessions[owner, session_id] = session

    def _discard(self, session: Session) -> None:
        with self._lock:
            if self._sessions.get((session.owner, session.id)) is session:
                del self._sessions[session.owner, session.id]
        session.close(self.budget)

    def get(self, session_id: str, owner: str = "") -> Session:
        """The caller's session, its idle clock restarted; NOT_FOUND once it has been idle past
        the TTL, and for another principal's."""
        now = time.monotonic()
        with self._lock:
            session = self._sessions.get((owner, session_id))
            if session is not None and self._idle(session, now):
                self._drop((owner, session_id))  # expired: as if the last create had swept it
                session = None
            if session is None:
                self._take_over(owner, session_id)
                session = self._sessions.get((owner, session_id))
            if session is not None:
                session.used = now
            else:
                self._refuse_damaged(owner, session_id)
        if session is None:
            raise SessionNotFound(session_id)
        return session

    def delete(self, session_id: str, owner: str = "") -> Session | None:
        """The deleted session; None when what was deleted was only a damaged state file."""
        with self._lock:
            if (owner, session_id) not in self._sessions:
                self._take_over(owner, session_id)  # a stopped replica's: deleted here, files and all
            session = self._drop((owner, session_id))
        if session is None and self.checkpoints is not None and self.checkpoints.files.problem(owner, session_id):
            self.checkpoints.files.forget(owner, session_id)  # a torn file, deleted on purpose: the id is free again
            return None
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
        for key in [key for key, s in self._sessions.items() if self._idle(s, now)]:
            self._drop(key)

    def _drop(self, key: tuple[str, str]) -> Session | None:
        session = self._sessions.pop(key, None)
        if session is not None:
            session.close(self.budget)
            if self.checkpoints is not None:
                try:
                    self.checkpoints.removed(session)
                except OSError as err:  # the session is gone here; its file is tried again at the next start
                    log.error("state dir: the files of session %r were not removed: %s", session.id, err)
        return session

    def _refuse_damaged(self, owner: str, session_id: str) -> None:
        """A session whose file was not loaded at start raises why (DATA_LOSS, FAILED_PRECONDITION)."""
        problem = self.checkpoints.files.problem(owner, session_id) if self.checkpoints is not None and session_id else None
        if problem is not None:
            raise problem

    def _idle(self, session: Session, now: float) -> bool:
        """Idle past the TTL: dropped, as if it had never been created."""
        return session.used < now - self.ttl_s


def _same(session: Session, asked: Session) -> Session:
    """The existing session when it is the one asked for (a retried create, a pipeline
    reopening it to resume); else SessionConflict, rather than scoring into the wrong one."""
    def key(s: Session) -> tuple:
        return s.spec, s.k, None if s.feed is None else s.feed.key

    if key(session) != key(asked):
        raise SessionConflict(session.id, session.describe(), asked.describe())
    return session
