"""Checkpoints: when durable sessions are written (StateDir, state_dir.py, says where and how).

A session is written once `every_batches` batches are committed past its durable one, or
`every_s` seconds after its first undurable commit, by one writer thread, from the state value
committed last (states are immutable, so it is read without any lock and intermediate ones
are skipped). A stream whose session runs `2 × every_batches` batches ahead of its durable one
waits for the writer (so a client keeps at most that many batches to resend), and fails with
UNAVAILABLE if the writer cannot catch up within `stall_s`.

Lock order: the store's lock, then a session's, then the StateDir's, then `_cond` (the dirty
set); the writer never holds `_cond` while writing a file."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable

from poolscore.server.errors import NotDurable, SessionNotFound
from poolscore.server.sessions.session import Session
from poolscore.server.sessions.state_dir import Describe, StateDir

log = logging.getLogger(__name__)


class Checkpoints:
    def __init__(self, root: Path, describe: Describe, every_batches: int = 8, every_s: float = 1.0,
                 stall_s: float = 30.0, on_written: Callable[[int, float], None] | None = None) -> None:
        if every_batches < 1 or every_s <= 0:
            raise ValueError(f"checkpoints every {every_batches} batches / {every_s} s: both must be > 0")
        self.files = StateDir(root, describe, on_written)
        self.every_batches, self.every_s, self.stall_s = every_batches, every_s, stall_s
        self.error: str | None = None  # the writer's last failure, until a write succeeds
        self._cond = threading.Condition()  # guards _dirty; the writer waits on it
        self._dirty: dict[int, tuple[Session, float]] = {}  # id(session) → (session, first undurable commit)
        self._writing: set[int] = set()  # id(session) of those being written now (one writer at a time each)
        self._closed = False
        self._writer = threading.Thread(target=self._write_loop, name="poolscore-checkpoints", daemon=True)
        self._writer.start()

    # --- the store's calls -------------------------------------------------------------------------

    def created(self, session: Session) -> None:
        """A new session is on disk before its create returns (so a crash right after keeps it).
        SessionElsewhere if another replica holds a session of that owner and id."""
        self.files.create(session)

    def committed(self, session: Session) -> None:
        """A batch was committed: the writer takes the session when it is due."""
        with self._cond:
            key = id(session)
            if key not in self._dirty:
                self._dirty[key] = (session, time.monotonic())
            if self._behind(session) >= self.every_batches:
                self._cond.notify_all()

    def room(self, session: Session) -> None:
        """Before a batch is scored: wait while the session is 2 × every_batches past its durable
        batch; NotDurable (UNAVAILABLE) if the writer cannot catch up within stall_s."""
        limit = 2 * self.every_batches
        with self._cond:
            if self._behind(session) < limit:
                return
            self._cond.notify_all()
            done = self._cond.wait_for(lambda: self._behind(session) < limit or session.closed, self.stall_s)
            if session.closed:
                raise SessionNotFound(session.id)
            if not done:
                raise NotDurable(f"--state-dir {self.files.root}: session {session.id!r} is {self._behind(session)} batches "
                                 f"ahead of its last checkpoint after {self.stall_s:g} s"
                                 + (f" (last error: {self.error})" if self.error else "")
                                 + "; retry: what was acked durable is kept")

    def removed(self, session: Session) -> None:
        """Deleted or expired: its file goes (the session is already closed, so no write follows)."""
        with self._cond:
            self._dirty.pop(id(session), None)
            self._cond.notify_all()  # a stream held back in room() for it stops waiting
        self.files.forget(session.owner, session.id)

    def flush_now(self, session: Session) -> None:
        """Write this session now if it has undurable batches (a stream ended: its last acks
        should say everything is on disk)."""
        with self._cond:  # the writer may be writing it right now: that write may be all it needs
            self._cond.wait_for(lambda: id(session) not in self._writing, self.stall_s)
            self._dirty.pop(id(session), None)
            if self._behind(session) <= 0:
                return
            self._writing.add(id(session))
        self._write_marked(session)

    def flush(self) -> None:
        """Write every session with undurable batches now (drain, stop)."""
        with self._cond:
            pending = [s for s, _ in self._dirty.values()]
            self._dirty.clear()
        for session in pending:
            self._write(session)

    def close(self) -> None:
        self.flush()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._writer.join(timeout=5)
        self.files.release_all()

    # --- the writer --------------------------------------------------------------------------------

    def _behind(self, session: Session) -> int:
        return session.state.next_seq - session.durable_seq

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                due = self._cond.wait_for(lambda: self._closed or self._due(), timeout=self._wait_s())
                if self._closed:
                    return
                if not due:
                    continue
                ready = self._due()
                for session in ready:
                    del self._dirty[id(session)]
                    self._writing.add(id(session))
            for session in ready:
                self._write_marked(session)

    def _due(self) -> list[Session]:
        now = time.monotonic()
        return [s for s, since in self._dirty.values() if id(s) not in self._writing
                and (self._behind(s) >= self.every_batches or now - since >= self.every_s or s.closed)]

    def _wait_s(self) -> float:
        oldest = min((since for _, since in self._dirty.values()), default=None)
        return self.every_s if oldest is None else max(0.001, oldest + self.every_s - time.monotonic())

    def _write_marked(self, session: Session) -> None:
        """Write a session its caller has marked in _writing, and unmark it (waking flush_now)."""
        try:
            self._write(session)
        finally:
            with self._cond:
                self._writing.discard(id(session))
                self._cond.notify_all()

    def _write(self, session: Session) -> None:
        state = session.state  # the latest committed value: immutable, read without a lock
        try:
            self.files.save(session, state)
        except Exception as err:  # noqa: BLE001 - the writer must outlive any one session's failure
            self.error = f"{type(err).__name__}: {err}"
            log.error("state dir: checkpoint of session %r failed: %s (retried in %g s)", session.id, err, self.every_s)
            with self._cond:
                self._dirty.setdefault(id(session), (session, time.monotonic()))
            return
        self.error = None
        with self._cond:
            self._cond.notify_all()  # streams waiting for room
