"""StateDir: where and how durable sessions are kept: one file per session, restored at start.

A session's file is named by a hash of (owner, id), so ids need no escaping and one principal's
file never collides with another's. It is written whole or not at all (files.py), checked by a
SHA-256 when read, and nothing in it is unpickled. A candidate set's chunks of rows, which never
change once made, go into segment files beside it, each chunk written once: a checkpoint writes
the rows that entered since the last one (one segment) and the small index, and removes a
segment only once no durable index refers to it. Files, not SQLite: measured (bench/durable.py),
SQLite's WAL is 2-4x faster for a 40 KiB top-K but 5x slower for a 20 MiB set, and it does not
work on the network volumes Kubernetes mounts.

Lock: `_io` guards the files, the holds and the chunk registry; a write never resurrects a
removed session. Taken after the store's lock and a session's, never before them."""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from poolscore.server.errors import PoolscoreError, SessionCorrupt, SessionElsewhere, SessionUnrestorable
from poolscore.server.sessions import codec
from poolscore.server.sessions.files import PARTIAL, ROWS, ChunkFiles, Holds, atomic_write, named_in, sync_dir
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


class StateDir:
    def __init__(self, root: Path, describe: Describe, on_written: Callable[[int, float], None] | None = None) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.describe = describe
        self.on_written = on_written or (lambda nbytes, seconds: None)
        self.problems: dict[str, Problem] = {}  # file name → why it was not loaded
        self._io = threading.Lock()
        self._chunks: dict[str, ChunkFiles] = {}  # session stem → its chunks on disk
        self._holds = Holds(root)  # the sessions this process serves
        self._revive: Revive | None = None  # set by load(): how a file becomes a session

    def create(self, session: Session) -> None:
        """A new session is on disk before its create returns (so a crash right after keeps it).
        SessionElsewhere if another replica holds a session of that owner and id."""
        with self._io:
            if not self._holds.take(self.stem(session.owner, session.id)):
                raise SessionElsewhere(session.id)
        self.save(session, session.state)

    def fetch(self, owner: str, session_id: str) -> Session | None:
        """A session on disk but not in memory (another replica served it, and has stopped):
        restored now; None if there is no such file. SessionElsewhere while that replica holds it;
        its problem if the file cannot be restored."""
        stem = self.stem(owner, session_id)
        path = self.root / f"{stem}{SUFFIX}"
        with self._io:
            if stem + SUFFIX in self.problems or self._revive is None or not path.exists():
                return None
            if not self._holds.take(stem):
                raise SessionElsewhere(session_id)
            try:
                session = self._restored(path, self._revive)
            except _NotLoaded as err:
                self.refuse(path, err.kind, err.reason)
                raise self.problem(owner, session_id) from None
            finally:
                self._remove_strays(stem)
        log.info("state dir: session %r taken over from %s", session_id, path)
        return session

    def let_go(self, owner: str, session_id: str) -> None:
        """Stop holding a session that was fetched but is not kept (its files stay)."""
        with self._io:
            self._holds.drop(self.stem(owner, session_id))
            self._chunks.pop(self.stem(owner, session_id), None)

    def forget(self, owner: str, session_id: str) -> bool:
        """Remove a session's files, whole or damaged; True if there was one."""
        name = self.name(owner, session_id)
        stem = name.removesuffix(SUFFIX)
        with self._io:
            if not self._holds.take(stem):
                raise SessionElsewhere(session_id)
            self.problems.pop(name, None)
            self._chunks.pop(stem, None)
            try:
                (self.root / name).unlink()
                found = True
            except FileNotFoundError:
                found = False
            for chunk in self.root.glob(f"{stem}.*{ROWS}"):  # after the index: never an index without its rows
                chunk.unlink(missing_ok=True)
            self._holds.drop(stem, remove=True)
            sync_dir(self.root)
            return found

    def problem(self, owner: str, session_id: str) -> PoolscoreError | None:
        """Why this session's file was not loaded at start, if it was not."""
        found = self.problems.get(self.name(owner, session_id))
        return None if found is None else found.error(session_id)

    def release_all(self) -> None:
        """Stop serving every session (at stop): another replica may take them over now."""
        with self._io:
            self._holds.close()

    def load(self, revive: Revive) -> list[Session]:
        """Every session file under root that no other replica holds, restored; a torn, altered or
        unrestorable one is logged by name and kept on disk, and asking for its session raises
        why (never a silent loss)."""
        self._revive = revive
        sessions = []
        stems = sorted({p.name.split(".")[0] for p in self.root.iterdir() if not p.name.startswith(".")})
        with self._io:
            for stem in stems:
                path = self.root / f"{stem}{SUFFIX}"
                if not self._holds.take(stem):
                    continue  # another replica serves it: fetched here once that one stops
                if not path.exists():
                    self._remove_strays(stem)
                    self._holds.drop(stem, remove=True)
                    continue
                try:
                    sessions.append(self._restored(path, revive))
                except _NotLoaded as err:
                    self.refuse(path, err.kind, err.reason)
                self._remove_strays(stem)
        return sessions

    def _remove_strays(self, stem: str) -> None:
        """A held session's files that no durable index names: writes cut short by a crash
        (`*.partial`: the previous checkpoint stands), segments of a checkpoint that did not
        finish or a removal cut short. Those of a session refused at start are kept with it."""
        if stem + SUFFIX in self.problems:
            return
        files = self._chunks.get(stem)
        named = {ref.partition("#")[0] for _, ref in files.on_disk.values()} if files is not None else set()
        for path in self.root.glob(f"{stem}.*"):
            if path.name.endswith(PARTIAL) or (path.name.endswith(ROWS) and path.name not in named):
                log.warning("state dir: removed %s, %s", path, "a write cut short" if path.name.endswith(PARTIAL)
                            else "rows no checkpoint names")
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

    def save(self, session: Session, state) -> None:
        start = time.perf_counter()
        name = self.name(session.owner, session.id)
        with self._io:
            if session.closed or state.next_seq < session.durable_seq or not self._holds.holds(stem := name.removesuffix(SUFFIX)):
                return  # deleted meanwhile (its file stays gone), a newer state is on disk, or not ours (let go at stop)
            chunks = self._chunks.setdefault(stem, ChunkFiles(stem))
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
    def stem(owner: str, session_id: str) -> str:
        return hashlib.sha256(f"{owner}\0{session_id}".encode()).hexdigest()[:40]

    @classmethod
    def name(cls, owner: str, session_id: str) -> str:
        return cls.stem(owner, session_id) + SUFFIX


class _NotLoaded(Exception):
    def __init__(self, kind: type, reason: str) -> None:
        self.kind, self.reason = kind, reason
