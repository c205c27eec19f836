"""Shared-memory regions: POSIX segments same-host clients write batches into, mapped here once.

A request's tensor may carry a SharedMemoryRef (region, offset, byte_size) instead of its
bytes; `resolved` turns it into a view of the mapping, so a CPU kernel reads the client's
memory with no copy. Regions belong to the principal that registered them: another one's name
is NOT_FOUND, as its sessions are. Segments are opened under /dev/shm by their POSIX name,
only names starting `poolscore-`, so a caller cannot map the host's other segments by name.

The client's ring: after a request is scored, the server stores the request's release mark at
bytes 8-15 of the segment, and the client may overwrite what it wrote before that mark. Views
of a request's bytes never outlive its scoring (the top-K and candidate sets copy what they
keep), so the mark is safe to publish once the batch is committed.

A client that dies leaks no memory here: an unused region is unmapped after `idle_s`.
"""
from __future__ import annotations

import gc
import mmap
import os
import re
import struct
import threading
import weakref
import time
from stat import S_ISREG
from dataclasses import dataclass, field

from poolscore.server.errors import BadInput, NoSharedMemory, OverLimit, RegionNotFound
from poolscore.server.ingest.tensors import RawTensor

SHM_DIR = "/dev/shm"
# a region's pages mapped at registration, not faulted in by the first pool's batches (0.5x -> 0.8x
# of the steady rate at C = 10, with the client's ring mapped so too)
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # Linux's
KEY = re.compile(r"poolscore-[A-Za-z0-9._-]{1,200}")
RELEASE_AT = 8  # the segment's bytes 8-15: the release mark (bytes 0-7: the client's nonce)
MAX_NAME = 256


@dataclass
class Region:
    owner: str
    name: str
    key: str
    size: int
    map: mmap.mmap
    view: memoryview
    used: float = field(default_factory=time.monotonic)

    @property
    def idle_s(self) -> float:
        return time.monotonic() - self.used

    def slice(self, offset: int, size: int, where: str) -> memoryview:
        if offset < 0 or size < 0 or offset + size > self.size:
            raise BadInput(where, f"[{offset}, {offset + size}) is outside region {self.name!r} of {self.size} bytes")
        self.used = time.monotonic()
        return self.view[offset:offset + size]

    def release(self, mark: int) -> None:
        if mark and self.size >= RELEASE_AT + 8:
            struct.pack_into("<Q", self.map, RELEASE_AT, mark)

    def close(self) -> bool:
        """Unmap it; False while a request still views it (it is unmapped when that view goes)."""
        self.view.release()
        try:
            self.map.close()
        except BufferError:
            return False
        return True


class Regions:
    """The registered regions of every principal, with the limits ServerInfo advertises."""

    def __init__(self, enabled: bool, max_bytes: int, max_regions: int, idle_s: float) -> None:
        self.enabled = enabled and os.path.isdir(SHM_DIR)
        self.max_bytes, self.max_regions, self.idle_s = max_bytes, max_regions, idle_s
        self._regions: dict[tuple[str, str], Region] = {}
        # dropped while a request still viewed them: they unmap when the last view goes, and a
        # cancelled stream's views can sit in a reference cycle (its traceback), so sweeps collect
        self._closing: list[weakref.ref] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._sweeper: threading.Thread | None = None  # started with the first region: dead clients' go unasked

    def register(self, owner: str, name: str, key: str, size: int) -> tuple[Region, int]:
        """The new region and the nonce (its first 8 bytes) as mapped here."""
        if not self.enabled:
            raise NoSharedMemory()
        if not name or len(name) > MAX_NAME:
            raise BadInput("name", f"a region needs a name of 1 to {MAX_NAME} characters (got {len(name)})")
        if not KEY.fullmatch(key):
            raise BadInput("key", f"{key!r} is not a segment name this server maps: poolscore-[A-Za-z0-9._-]+")
        if size < 16:
            raise BadInput("byte_size", f"{size}: a region holds at least its 16-byte header")
        self.sweep()
        with self._lock:
            if (owner, name) in self._regions:
                raise BadInput("name", f"region {name!r} is registered already; unregister it first")
            mine = sum(1 for o, _ in self._regions if o == owner)
            if mine >= self.max_regions:
                raise OverLimit(f"shared memory: {mine} regions registered, the limit per principal (--shm-max-regions)")
            mapped = sum(r.size for r in self._regions.values())
            if mapped + size > self.max_bytes:
                raise OverLimit(f"shared memory: {size} more bytes would map {mapped + size}, over --shm-max-mb "
                                f"({self.max_bytes} bytes)")
            region = self._map(owner, name, key, size)
            self._regions[(owner, name)] = region
            if self._sweeper is None:
                self._sweeper = threading.Thread(target=self._sweep_loop, name="poolscore-shm-sweep", daemon=True)
                self._sweeper.start()
        return region, struct.unpack_from("<Q", region.map, 0)[0]

    def _map(self, owner: str, name: str, key: str, size: int) -> Region:
        try:
            fd = os.open(os.path.join(SHM_DIR, key), os.O_RDWR | os.O_NOFOLLOW)  # a link could aim at any file
        except FileNotFoundError:
            raise RegionNotFound(f"shared-memory segment {key!r}: none on this server's host") from None
        except PermissionError:
            raise BadInput("key", f"segment {key!r} cannot be opened by the server's user (its mode)") from None
        except OSError as err:  # ELOOP: a symbolic link, refused (O_NOFOLLOW)
            raise BadInput("key", f"segment {key!r} cannot be mapped: {err.strerror}") from None
        try:
            stat = os.fstat(fd)
            have = stat.st_size
            if not S_ISREG(stat.st_mode):
                raise BadInput("key", f"{key!r} is not a shared-memory segment")
            if have < size:
                raise BadInput("byte_size", f"{size}, but segment {key!r} holds {have} bytes")
            mapping = mmap.mmap(fd, size, mmap.MAP_SHARED | _POPULATE, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        return Region(owner, name, key, size, mapping, memoryview(mapping))

    def unregister(self, owner: str, name: str) -> list[Region]:
        with self._lock:
            gone = [r for (o, n), r in self._regions.items() if o == owner and (not name or n == name)]
            if name and not gone:
                raise RegionNotFound(f"shared-memory region {name!r}")
            for r in gone:
                del self._regions[(owner, r.name)]
        self._close(gone)
        return gone

    def count(self) -> int:
        return len(self._regions)

    def mapped_bytes(self) -> int:
        with self._lock:
            return sum(r.size for r in self._regions.values())

    def of(self, owner: str) -> list[Region]:
        self.sweep()
        with self._lock:
            return [r for (o, _), r in self._regions.items() if o == owner]

    def get(self, owner: str, name: str) -> Region:
        with self._lock:
            region = self._regions.get((owner, name))
        if region is None:
            raise RegionNotFound(f"shared-memory region {name!r}")
        return region

    def sweep(self) -> None:
        """Unmap the regions unused for idle_s (their client died, or forgot them)."""
        now = time.monotonic()
        with self._lock:
            stale = [key for key, r in self._regions.items() if now - r.used > self.idle_s]
            gone = [self._regions.pop(key) for key in stale]
        self._close(gone)
        if any(ref() is not None for ref in list(self._closing)):
            gc.collect()  # the mapping goes with its last view
        with self._lock:
            self._closing = [ref for ref in self._closing if ref() is not None]

    def _close(self, regions: list[Region]) -> None:
        still = [weakref.ref(r.map) for r in regions if not r.close()]
        with self._lock:
            self._closing.extend(still)

    def _sweep_loop(self) -> None:
        while not self._stopped.wait(min(self.idle_s / 2, 10.0)):
            self.sweep()

    def close(self) -> None:
        self._stopped.set()
        with self._lock:
            gone, self._regions = list(self._regions.values()), {}
        self._close(gone)


def resolved(tensors: dict[str, RawTensor], refs: dict, regions: Regions, owner: str) -> tuple[dict, list]:
    """The tensors with each shm ref's bytes as a view of its region; and (region, mark) pairs to
    release once the request is scored."""
    out, marks = dict(tensors), []
    for name, (region_name, offset, size, mark) in refs.items():
        if not regions.enabled:
            raise NoSharedMemory()
        region = regions.get(owner, region_name)
        t = tensors[name]
        out[name] = RawTensor(t.dtype, t.shape, region.slice(offset, size, f"{name}.shm"))
        marks.append((region, mark))
    return out, marks
