"""Shared arrays: NumPy arrays in POSIX segments a server on this host maps, so that `score_pool`
sends their batches as references: no copy at all, where the ring (shared_memory.py) makes one.

    logits = client.shared_array((n, 10))               # float32 zeros, in shared memory
    logits[:] = model(inputs)                           # the producer writes its output there
    top = client.score_pool(logits, "entropy", k=1000)  # each batch a (region, offset, size)

A tensor that lies in a shared array (C-contiguous, in the dtype the wire takes it in: no
`wire_dtype` narrowing) is referenced where it lies; anything else in the call (ids, keys, a
copy narrowed to float16) goes through the ring as before. The array must not be written while
a call reads it.

Each array is its own region on the server (--shm-max-regions counts it). Its segment's name
stays under /dev/shm while the array lives, so a region the server unmapped as idle is mapped
again by name on the next call; `client.free(array)`, `client.close()` or the array's garbage
collection unregisters it and unlinks the name (the memory goes with the last view of it). A
killed client leaves the names behind: `rm /dev/shm/poolscore-<pid>-*` removes them, and the
server unmaps its side after --shm-idle-s.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass, field

import grpc
import numpy as np

from poolscore.client.errors import PoolscoreError, mapped
from poolscore.client.shared_memory import ALIGN, FALLBACK, HEADER, create_segment, register
from poolscore.v1 import scoring_pb2 as pb

log = logging.getLogger("poolscore.client")


@dataclass
class _Segment:
    key: str
    path: str
    size: int
    nonce: int
    start: int  # the mapping's address here: a tensor's offset is its address minus this
    registered: bool = False
    refused: bool = False  # the server would not map it: copied for the rest of this call
    used: float = field(default_factory=time.monotonic)


class SharedArrays:
    """A client's shared arrays; thread-safe."""

    def __init__(self) -> None:
        self._segments: dict[str, _Segment] = {}
        self._orphans: list[str] = []  # regions of arrays collected unfreed: unregistered at the next call
        # keys of segments collected unfreed: noted by the finalizer without a lock (it may run in
        # any thread, inside any allocation, even one made while this lock is held), reaped under it
        self._collected: collections.deque[str] = collections.deque()
        self._lock = threading.Lock()
        self._registering = threading.Lock()  # two calls sending one array register it once
        self.fresh_s = float("inf")  # re-registered past this since its last use (half the server's idle limit)

    def new(self, shape, dtype=np.float32) -> np.ndarray:
        """A zeroed array of `shape` and `dtype` in a new segment."""
        dtype = np.dtype(dtype)
        if dtype.hasobject:
            raise ValueError(f"a shared array holds numbers, not {dtype}")
        shape = (shape,) if isinstance(shape, int) else tuple(int(n) for n in shape)
        if any(n < 0 for n in shape):
            raise ValueError(f"a shared array's shape has no negative sizes, got {list(shape)}")
        count = int(np.prod(shape, dtype=np.int64))
        size = HEADER + max(ALIGN, -(-count * dtype.itemsize // ALIGN) * ALIGN)
        key, path, segment, nonce = create_segment(size)
        start = _address(np.frombuffer(segment, np.uint8))
        with self._lock:
            self._segments[key] = _Segment(key, path, size, nonce, start)
        weakref.finalize(segment, self._gone, key, path)  # the array's last view gone: the name too
        return np.frombuffer(segment, dtype, count, offset=HEADER).reshape(shape)

    def __len__(self) -> int:
        return len(self._segments)

    def held(self, client, names: set[str] | None) -> None:
        """The regions the server says it holds (None: not asked): a segment not among them is
        registered again when next sent; those of arrays collected unfreed are unregistered."""
        with self._lock:
            self._reap()
            orphans, self._orphans = self._orphans, []
            for seg in self._segments.values():
                seg.registered = seg.registered and (names is None or seg.key in names)
                seg.refused = False  # a new call tries again
        for key in orphans:
            if names is None or key in names:
                _unregister(client, key)

    def alone(self, pool, ids, embedding) -> bool:
        """Whether `pool` is (a contiguous part of) one shared array with nothing beside it to
        copy into the ring: its batches may be larger than the ring's."""
        if ids is not None or embedding is not None or not isinstance(pool, np.ndarray) or not pool.flags.c_contiguous:
            return False
        with self._lock:
            return pool.nbytes > 0 and self._holding(pool) is not None

    def where(self, client, array: np.ndarray, dtype: np.dtype) -> tuple[str, int] | None:
        """(region, offset) of `array` where it can be sent as it lies, registered now if the
        server does not hold it; None to copy it (not in a shared array, not contiguous, another
        dtype on the wire, or a server that will not map it: said once)."""
        if not self._segments or array.dtype != dtype or not array.flags.c_contiguous or array.nbytes == 0:
            return None
        with self._lock:
            seg = self._holding(array)
        if seg is None or seg.refused:
            return None
        try:
            with self._registering:
                if not seg.registered or time.monotonic() - seg.used > self.fresh_s:
                    self._register(client, seg)
        except (PoolscoreError, OSError) as err:
            if isinstance(err, PoolscoreError) and err.code not in FALLBACK:
                raise
            log.warning("shared array %s not mapped by %s (%s): its batches are copied", seg.key, client.target, err)
            seg.refused = True
            return None
        seg.used = time.monotonic()
        return seg.key, _address(array) - seg.start

    def _holding(self, array: np.ndarray) -> _Segment | None:
        """Under the lock: the live segment whose data holds all of `array`'s bytes, if any."""
        self._reap()
        at = _address(array)
        return next((s for s in self._segments.values()
                     if s.start + HEADER <= at and at + array.nbytes <= s.start + s.size), None)

    def _register(self, client, seg: _Segment) -> None:
        if seg.registered:  # the server may have unmapped it as idle: map it afresh
            _unregister(client, seg.key)
            seg.registered = False
        register(client._stub, seg.key, seg.size, seg.nonce, client.timeout)
        seg.registered = True

    def free(self, client, array: np.ndarray) -> None:
        """Unregister and unlink the shared array `array` is (a view of)."""
        with self._lock:
            seg = self._holding(np.asarray(array))
            if seg is None:
                raise ValueError("not a shared array of this client (or freed already)")
            del self._segments[seg.key]
        self._release(client, seg)

    def close(self, client) -> None:
        with self._lock:
            self._reap()
            segments, self._segments = list(self._segments.values()), {}
            orphans, self._orphans = self._orphans, []
        for seg in segments:
            self._release(client, seg)
        for key in orphans:
            _unregister(client, key)

    def _release(self, client, seg: _Segment) -> None:
        if seg.registered:
            _unregister(client, seg.key)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(seg.path)

    def _gone(self, key: str, path: str) -> None:
        """The finalizer of a segment's mapping: its name goes now, its region at the next call."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # freed already: gone
        self._collected.append(key)

    def _reap(self) -> None:
        """Under the lock: drop the collected segments, their regions to unregister."""
        while self._collected:
            seg = self._segments.pop(self._collected.popleft(), None)
            if seg is not None and seg.registered:
                self._orphans.append(seg.key)


def _address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


def _unregister(client, key: str) -> None:
    try:
        with mapped():
            client._stub.UnregisterSharedMemory(pb.UnregisterSharedMemoryRequest(name=key), timeout=client.timeout)
    except PoolscoreError as err:
        if err.code != grpc.StatusCode.NOT_FOUND:  # NOT_FOUND: unmapped already (idle, a restart)
            raise
