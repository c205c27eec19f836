"""Durable sessions: each session's committed state, written to --state-dir, restored at start.

One file per session (write, fsync, rename, fsync the directory: a reader sees the old file or
the new one, never half of one), named by a hash of (owner, id), so ids need no escaping and
one principal's file never collides with another's. A candidate set's chunks of rows, which
never change once made, go into segment files beside it, each chunk written once: a checkpoint
writes the rows that entered since the last one (one segment) and the small index, and removes
a segment only once no durable index refers to it. Files, not SQLite: measured (bench/durable.py), SQLite's
WAL is 2x faster for a 40 KiB top-K but 5x slower for a 20 MiB set, and it does not work on the
network volumes Kubernetes mounts.

When: a session is written once `every_batches` batches are committed past its durable one, or
`every_s` seconds after its first undurable commit, by one writer thread, from the state value
committed last (states are immutable, so it is read without any lock and intermediate ones
are skipped). A stream whose session runs `2 × every_batches` batches ahead of its durable one
waits for the writer (so a client keeps at most that many batches to resend), and fails with
UNAVAILABLE if the writer cannot catch up within `stall_s`.

Lock order: the store's lock, then a session's, then `_io` (file writes and removals), then
`_cond` (the dirty set); the writer never holds `_cond` while writing a file."""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from poolscore.server.errors import NotDurable, PoolscoreError, SessionCorrupt, SessionUnrestorable
from poolscore.server.sessions import codec
from poolscore.server.sessions.files import PARTIAL, ROWS, ChunkFiles, atomic_write, named_in, sync_dir
from poolscore.server.sessions.session import Session

log = logging.getLogger(__name__)

SUFFIX = ".session"

Revive = Callable[[Mapping[str, Any]], Session]  # a saved header → the session it describes, with its first state
Describe = Callable[[Session], Mapping[str, Any]]  # a session → what Revive needs (its spec and model, on the wire)


@dataclass(frozen=True)
class Problem:
    """Why a session file was not loaded: raised (as its kind) to whoever asks for the session."""
    kind: type  # SessionCorrupt (DATA_LOSS) or SessionUnrestorable (FAILED_PRECONDITION)
    path: str
    reason: str

    def error(self, session_id: str) -> PoolscoreError:
        return self.kind(session_id, self.path, self.reason)


class Checkpoints:
    def __init__(self, root: Path, describe: Describe, every_batches: int = 8, every_s: float = 1.0,
                 stall_s: float = 30.0, on_written: Callable[[int, float], None] | None = None) -> None:
        if every_batches < 1 or every_s <= 0:
            raise ValueError(f"checkpoints every {every_batches} batches / {every_s} s: both must be > 0")
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.describe, self.every_batches, self.every_s, self.stall_s = describe, every_batches, every_s, stall_s
        self.on_written = on_written or (lambda nbytes, seconds: None)
        self.problems: dict[str, Problem] = {}  # file name → why it was not loaded
        self.error: str | None = None  # the writer's last failure, until a write succeeds
        self._io = threading.Lock()  # guards the files: a write never resurrects a removed session
        self._cond = threading.Condition()  # guards _dirty; the writer waits on it
        self._dirty: dict[int, tuple[Session, float]] = {}  # id(session) → (session, first undurable commit)
        self._chunks: dict[str, ChunkFiles] = {}  # session stem → its chunks on disk (guarded by _io)
        self._closed = False
        self._writer = threading.Thread(target=self._write_loop, name="poolscore-checkpoints", daemon=True)
        self._writer.start()

    # --- the store's calls -------------------------------------------------------------------------

    def created(self, session: Session) -> None:
        """A new session is on disk before its create returns (so a crash right after keeps it)."""
        self._save(session, session.state)

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
            if not self._cond.wait_for(lambda: self._behind(session) < limit or session.closed, self.stall_s):
                raise NotDurable(f"--state-dir {self.root}: session {session.id!r} is {self._behind(session)} batches "
                                 f"ahead of its last checkpoint after {self.stall_s:g} s"
                                 + (f" (last error: {self.error})" if self.error else "")
                                 + "; retry: what was acked durable is kept")

    def removed(self, session: Session) -> None:
        """Deleted or expired: its file goes (the session is already closed, so no write follows)."""
        with self._cond:
            self._dirty.pop(id(session), None)
        self.forget(session.owner, session.id)

    def forget(self, owner: str, session_id: str) -> bool:
        """Remove a session's files, whole or damaged; True if there was one."""
        name = self.name(owner, session_id)
        stem = name.removesuffix(SUFFIX)
        with self._io:
            self.problems.pop(name, None)
            self._chunks.pop(stem, None)
            try:
                (self.root / name).unlink()
                found = True
            except FileNotFoundError:
                found = False
            for chunk in self.root.glob(f"{stem}.*{ROWS}"):  # after the index: never an index without its rows
                chunk.unlink(missing_ok=True)
            sync_dir(self.root)
            return found

    def problem(self, owner: str, session_id: str) -> PoolscoreError | None:
        """Why this session's file was not loaded at start, if it was not."""
        found = self.problems.get(self.name(owner, session_id))
        return None if found is None else found.error(session_id)

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

    # --- loading at start --------------------------------------------------------------------------

    def load(self, revive: Revive) -> list[Session]:
        """Every session file under root, restored; a torn, altered or unrestorable one is logged
        by name and kept on disk, and asking for its session raises why (never a silent loss)."""
        sessions = []
        for path in sorted(self.root.iterdir()):
            if path.name.endswith(PARTIAL):
                log.warning("state dir: removed %s, a checkpoint write cut short (the previous one stands)", path)
                path.unlink()
                continue
            if not path.name.endswith(SUFFIX):
                continue
            try:
                sessions.append(self._restored(path, revive))
            except _NotLoaded as err:
                self.refuse(path, err.kind, err.reason)
        self._remove_stray_chunks()
        return sessions

    def _remove_stray_chunks(self) -> None:
        """Chunk files no index names: written by a checkpoint that did not finish, or left by a
        removal cut short. Those of a session refused at start are kept with it."""
        named = {ref.partition("#")[0] for files in self._chunks.values() for _, ref in files.on_disk.values()}
        for path in self.root.glob(f"*{ROWS}"):
            stem = path.name.split(".")[0]
            if path.name not in named and stem + SUFFIX not in self.problems:
                log.info("state dir: removed %s, a chunk no checkpoint names", path)
                path.unlink()

    def refuse(self, path: Path, kind: type, reason: str) -> None:
        """Keep `path` on disk, unloaded: its session raises `kind` with `reason` when asked for."""
        self.problems[path.name] = Problem(kind, str(path), reason)
        log.error("state dir: %s not loaded: %s", path, reason)

    def _restored(self, path: Path, revive: Revive) -> Session:
        try:
            header, arrays = codec.read(path.read_bytes())
            owner, session_id = str(header["owner"]), str(header["id"])
            if self.name(owner, session_id) != path.name:
                raise codec.Corrupt("its name does not match the session it holds")
            session = revive(header)
            stem, read, segments = path.name.removesuffix(SUFFIX), [], {}
            session.state = codec.restored_state(header["state"], arrays, session.state,
                                                 lambda ref: self._read_chunk(stem, ref, read, segments))
            self._chunks[stem] = ChunkFiles.loaded(stem, read, session.state.top)
        except (PoolscoreError, OSError) as err:  # whole, but not restorable on this server as it is now
            raise _NotLoaded(SessionUnrestorable, str(err)) from None
        except Exception as err:  # noqa: BLE001 - a checksummed file that does not parse: refused, named, kept
            raise _NotLoaded(SessionCorrupt, str(err) if isinstance(err, codec.Corrupt) else f"{type(err).__name__}: {err}") from None
        session.durable_seq = session.state.next_seq
        return session

    def _read_chunk(self, stem: str, ref: str, read: list[str], segments: dict) -> Mapping[str, np.ndarray]:
        """One chunk of rows, "<segment>#<i>", each segment file read once and checked."""
        name, _, i = ref.partition("#")
        if not (name.startswith(stem + ".") and name.endswith(ROWS)) or "/" in name or not i.isdigit():
            raise codec.Corrupt(f"refers to rows {ref!r} that are not its own")
        if name not in segments:
            try:
                segments[name] = codec.read((self.root / name).read_bytes())
            except FileNotFoundError:
                raise codec.Corrupt(f"its rows file {name} is missing") from None
            except codec.Corrupt as err:
                raise codec.Corrupt(f"its rows file {name}: {err}") from None
        header, arrays = segments[name]
        if header.get("segment") != name or int(i) >= len(header["columns"]):
            raise codec.Corrupt(f"its rows file {name} does not hold {ref}")
        read.append(ref)
        return {col: arrays[f"{i}.{col}"] for col in header["columns"][int(i)]}

    # --- writing -----------------------------------------------------------------------------------

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
            for session in ready:
                self._write(session)

    def _due(self) -> list[Session]:
        now = time.monotonic()
        return [s for s, since in self._dirty.values()
                if self._behind(s) >= self.every_batches or now - since >= self.every_s or s.closed]

    def _wait_s(self) -> float:
        oldest = min((since for _, since in self._dirty.values()), default=None)
        return self.every_s if oldest is None else max(0.001, oldest + self.every_s - time.monotonic())

    def _write(self, session: Session) -> None:
        state = session.state  # the latest committed value: immutable, read without a lock
        try:
            self._save(session, state)
        except OSError as err:
            self.error = f"{type(err).__name__}: {err}"
            log.error("state dir: checkpoint of session %r failed: %s (retried in %g s)", session.id, err, self.every_s)
            with self._cond:
                self._dirty.setdefault(id(session), (session, time.monotonic()))
            return
        self.error = None
        with self._cond:
            self._cond.notify_all()  # streams waiting for room

    def _save(self, session: Session, state) -> None:
        start = time.perf_counter()
        name = self.name(session.owner, session.id)
        with self._io:
            if session.closed or state.next_seq < session.durable_seq:
                return  # deleted meanwhile (its file stays gone), or a newer state is on disk already
            chunks = self._chunks.setdefault(name.removesuffix(SUFFIX), ChunkFiles(name.removesuffix(SUFFIX)))
            fields, arrays = codec.state_parts(state, chunks.name)
            header = {"owner": session.owner, "id": session.id, **self.describe(session), "state": fields}
            try:
                nbytes = 0
                if chunks.new:
                    nbytes += atomic_write(self.root / chunks.segment, *chunks.segment_parts(), sync=False)
                    sync_dir(self.root)  # the rows are durable before any index names them
                nbytes += atomic_write(self.root / name, header, arrays)
            except BaseException:
                chunks.abandon()
                raise
            for file in chunks.written(named_in(fields)):  # in no durable index now
                (self.root / file).unlink(missing_ok=True)
            if state.next_seq > session.durable_seq:
                session.durable_seq = state.next_seq
        self.on_written(nbytes, time.perf_counter() - start)

    @staticmethod
    def name(owner: str, session_id: str) -> str:
        return hashlib.sha256(f"{owner}\0{session_id}".encode()).hexdigest()[:40] + SUFFIX


class _NotLoaded(Exception):
    def __init__(self, kind: type, reason: str) -> None:
        self.kind, self.reason = kind, reason
