"""The state dir's files: written atomically, and a session's candidate-set rows in segments.

A file is written whole or not at all (write, fsync, rename, fsync the directory), so a reader
sees the old file or the new one, never half of one."""
from __future__ import annotations

import fcntl
import os
import resource
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from poolscore.server.sessions import codec

ROWS = ".rows"  # a candidate set's segment of chunks: <session stem>.<serial>.rows
PARTIAL = ".partial"  # a write cut short by a crash: never the durable copy


class ChunkFiles:
    """One session's candidate-set chunks on disk. The chunks new at a checkpoint go into one
    segment file (one fsync, however many batches made them); a chunk is referred to as
    "<segment>#<i>", and a segment is removed once no durable index refers to any of its chunks.
    A chunk is held here, not only its id, so that its id stays its own while it is on disk."""

    def __init__(self, stem: str, serial: int = 0) -> None:
        self.stem, self.serial = stem, serial
        self.on_disk: dict[int, tuple[Mapping, str]] = {}  # id(chunk) → (chunk, reference)
        self.new: list[Mapping] = []  # named by the checkpoint being written, not yet on disk

    @classmethod
    def loaded(cls, stem: str, refs: list[str], top) -> "ChunkFiles":
        """The chunks a restored state holds, read from `refs` in the order the codec read them."""
        files = cls(stem, max((int(r.split(".")[1]) for r in refs), default=0))
        chunks = [c for cands in (getattr(top, "candidates", None), getattr(top, "reference", None)) if cands is not None
                  for c in cands.chunks]
        files.on_disk = {id(c): (c, r) for c, r in zip(chunks, refs)}
        return files

    @property
    def segment(self) -> str:
        return f"{self.stem}.{self.serial}{ROWS}"

    def name(self, chunk: Mapping) -> str:
        found = self.on_disk.get(id(chunk))
        if found is not None:
            return found[1]
        if not self.new:
            self.serial += 1  # this checkpoint's segment
        ref = f"{self.segment}#{len(self.new)}"
        self.on_disk[id(chunk)] = (chunk, ref)
        self.new.append(chunk)
        return ref

    def segment_parts(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """This checkpoint's new chunks as one file's (header, arrays)."""
        header = {"segment": self.segment, "columns": [list(c) for c in self.new]}
        return header, {f"{i}.{col}": a for i, c in enumerate(self.new) for col, a in c.items()}

    def abandon(self) -> None:
        """The checkpoint failed: its new chunks are not on disk after all."""
        new = {id(c) for c in self.new}
        self.on_disk = {k: v for k, v in self.on_disk.items() if k not in new}
        self.new = []

    def written(self, refs: set[str]) -> list[str]:
        """The checkpoint is durable and refers to `refs`: the segments it no longer needs."""
        before = {ref.partition("#")[0] for _, ref in self.on_disk.values()}
        self.on_disk = {k: v for k, v in self.on_disk.items() if v[1] in refs}
        self.new = []
        return sorted(before - {ref.partition("#")[0] for _, ref in self.on_disk.values()})


def named_in(fields: Mapping[str, Any]) -> set[str]:
    top = fields["top"]
    return {ref for part in ("candidates", "reference") if part in top for ref in top[part]["chunks"]}


def atomic_write(path: Path, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray], sync: bool = True) -> int:
    partial = path.with_name(path.name + PARTIAL)
    with open(partial, "wb") as out:
        nbytes = codec.write(out, header, arrays)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)
    if sync:
        sync_dir(path.parent)
    return nbytes


def sync_dir(root: Path) -> None:
    """The rename (or unlink) itself made durable."""
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)



class Holds:
    """The sessions this process serves, each by an exclusive flock on `<stem>.lock` held while
    the session is in memory. Replicas that share a state volume so never serve one session at
    once: the one holding it writes it, and the lock goes with the process (a SIGKILL too), so
    another replica may then load it. flock works on local disks and on most network volumes
    (NFSv4 emulates it with byte-range locks)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._fds: dict[str, int] = {}  # stem → the open, locked lock file
        _raise_file_limit()

    def take(self, stem: str) -> bool:
        """Hold `stem` (True), or False if another process holds it."""
        if stem in self._fds:
            return True
        fd = os.open(self.root / f"{stem}{LOCK}", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fds[stem] = fd
        return True

    def holds(self, stem: str) -> bool:
        return stem in self._fds

    def drop(self, stem: str, remove: bool = False) -> None:
        """Let go of `stem`. The lock file itself stays (`remove` is accepted and ignored): a
        replica may have it open, and unlinking it would let two replicas lock two inodes."""
        fd = self._fds.pop(stem, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        for stem in list(self._fds):
            self.drop(stem)


LOCK = ".lock"


def _raise_file_limit() -> None:
    """One descriptor per session held: the soft limit raised to the hard one (often 1024 → 1M)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
