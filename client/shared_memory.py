"""Batches through POSIX shared memory to a server on this host: one copy, no bytes on the wire.

A `Ring` is a segment this client creates under /dev/shm and registers on the server, which
maps it once. Each batch's tensors are written into the ring (one pass: a float16 wire dtype
is converted on the way in) and the request carries only their (region, offset, size). After
scoring a request the server stores its release mark in the segment's header, and the ring
reuses the bytes before that mark; a batch that finds the ring full waits for it.

Nothing is left behind on a crash: the segment's name is unlinked as soon as the server has
mapped it, so the memory goes when both processes have let go of it, and the server unmaps
a region no request has used for its idle time. The name lives only for the register call;
were a client killed inside that call, `rm /dev/shm/poolscore-<pid>-*` removes it.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import logging
import mmap
import os
import secrets
import struct
import threading
import time
from typing import Callable, Iterator

import grpc
import numpy as np

from poolscore.client.errors import PoolscoreError, mapped
from poolscore.client.pools import Batch
from poolscore.client.tensors import narrowed, wire_dtype
from poolscore.client.wire import _len_field, _varint, SCORE_REQUEST_INPUTS
from poolscore.v1 import scoring_pb2 as pb

log = logging.getLogger("poolscore.client")

SHM_DIR = "/dev/shm"
# pages mapped at creation (a reused ring's first pass faulted 64 MiB in: the first pool at 0.5x the
# steady rate, 0.8x with them mapped ahead)
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # Linux's
HEADER = 64  # bytes 0-7: this ring's nonce; 8-15: the server's release mark; the data after
ALIGN = 64
# 16 MiB batches (a quarter of the ring, so the next ones are written while one is scored): half
# the per-batch costs of 8 MiB ones, 1.1x end to end at C = 100-1000 on 2 cores
RING_BYTES = 64 * 2**20
BATCH_BYTES = 16 * 2**20  # a batch's tensor bytes through shared memory: the message no longer bounds it
LOCAL_HOSTS = ("localhost", "127.", "[::1]", "::1", "unix:")
# a server that cannot map this segment: not on this host, another user's, shared memory off
FALLBACK = {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.RESOURCE_EXHAUSTED}


def is_local(target: str) -> bool:
    host = target.split("://", 1)[-1]
    return any(host.startswith(prefix) for prefix in LOCAL_HOSTS) and os.path.isdir(SHM_DIR)


class Ring:
    """A registered segment, written as a ring of tensors; one stream's at a time."""

    def __init__(self, stub, timeout: float | None, size: int | None = None) -> None:
        size = size or _fitting(RING_BYTES)
        self.stub, self.timeout, self.capacity = stub, timeout, size - HEADER
        self.key, path, self.map, nonce = create_segment(size)
        try:
            try:
                register(stub, self.key, size, nonce, timeout)
            except BaseException:
                self.map.close()
                raise
        finally:
            os.unlink(path)  # the server has it mapped, or never will
        self.data = np.frombuffer(self.map, np.uint8)[HEADER:]
        self.batch_bytes = min(BATCH_BYTES, self.capacity // 4)  # room for the next batches while one is scored
        self.pos = 0  # bytes written since the start, wrapping included: a monotone mark
        self.stopped = threading.Event()  # the call has ended: a batch waiting for room gives up
        self.used = time.monotonic()
        self.fresh_s = float("inf")  # reused only within this (half the server's idle limit, set by _ring)
        # (array, dtype) -> (region, offset) where a tensor can be sent as it lies (a shared array), or None
        self.placed: Callable[[np.ndarray, np.dtype], tuple[str, int] | None] | None = None

    def encode(self, small, batch: Batch, numbers: dict[str, int], narrow: str | None = None) -> bytes:
        """`small` plus the batch's tensors as references into the ring (wire.encode's shape)."""
        parts = [small.SerializeToString()]
        if batch.keys is not None:
            parts[0] = pb.ScoreRequest(keys=batch.keys).SerializeToString() + parts[0]
        hosted = numbers["logits"] == SCORE_REQUEST_INPUTS["logits"]
        for name in ("logits", "embedding", "ids"):
            array = getattr(batch, name)
            if array is not None:
                array = np.asarray(array)
                if name != "ids" and not (hosted and name == "logits"):
                    array = narrowed(array, narrow)
                parts.append(self._tensor(numbers[name], array))
        return b"".join(parts)

    def _tensor(self, number: int, array: np.ndarray) -> bytes:
        code, a = _as_wire(array)
        where = self.placed(array, a.dtype) if self.placed is not None else None
        if where is not None:  # in a shared array the server maps: referenced where it lies, no copy
            key, offset, release = where[0], where[1], 0
        else:
            at, release = self._room(a.nbytes)
            dest = self.data[at:at + a.nbytes].view(a.dtype).reshape(a.shape)
            np.copyto(dest, array, casting="unsafe")  # the one copy (a dtype change on the way)
            key, offset = self.key, HEADER + at
        ref = (_len_field(1, len(key)) + key.encode() + b"\x10" + _varint(offset)
               + b"\x18" + _varint(a.nbytes) + b"\x20" + _varint(release))
        dims = b"".join(_varint(d) for d in a.shape)
        body = b"\x08" + _varint(code) + _len_field(2, len(dims)) + dims + _len_field(4, len(ref)) + ref
        return _len_field(number, len(body)) + body

    def _room(self, n: int) -> tuple[int, int]:
        """Where `n` bytes go (contiguous), once the server has released what was there; and the
        mark the server publishes when it is done with them."""
        if n > self.capacity:
            raise ValueError(f"a tensor of {n} bytes does not fit the shared-memory ring of {self.capacity}")
        start = -(-self.pos // ALIGN) * ALIGN
        if start % self.capacity + n > self.capacity:  # no wrapping inside a tensor
            start += self.capacity - start % self.capacity
        end = start + n
        self._wait(end - self.capacity)
        self.pos = end
        return start % self.capacity, end

    def _wait(self, mark: int) -> None:
        pause = 20e-6
        while self.released() < mark:
            if self.stopped.wait(pause):
                raise PoolscoreError(grpc.StatusCode.CANCELLED, "the call ended while a batch waited for the ring")
            pause = min(2 * pause, 1e-3)

    def released(self) -> int:
        return struct.unpack_from("<Q", self.map, 8)[0]

    def close(self) -> None:
        self.stopped.set()
        try:
            with mapped():
                self.stub.UnregisterSharedMemory(pb.UnregisterSharedMemoryRequest(name=self.key), timeout=self.timeout)
        except PoolscoreError as err:  # gone already (a restart, idle expiry): nothing is left to free
            log.debug("unregistering %s: %s", self.key, err)
        del self.data
        try:
            self.map.close()
        except BufferError:  # a view still in a request being sent: unmapped with it
            pass


def create_segment(size: int) -> tuple[str, str, mmap.mmap, int]:
    """A new segment under /dev/shm (mode 0600, its pages reserved: a full /dev/shm is ENOSPC
    now, not SIGBUS later), mapped here, its nonce in bytes 0-7: (key, path, map, nonce)."""
    key = f"poolscore-{os.getpid()}-{secrets.token_hex(8)}"
    path = os.path.join(SHM_DIR, key)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.ftruncate(fd, size)
            os.posix_fallocate(fd, 0, size)
            segment = mmap.mmap(fd, size, mmap.MAP_SHARED | _POPULATE)
        except BaseException:
            os.unlink(path)
            raise
    finally:
        os.close(fd)
    nonce = secrets.randbits(64)
    struct.pack_into("<Q", segment, 0, nonce)
    return key, path, segment, nonce


def register(stub, key: str, size: int, nonce: int, timeout: float | None) -> None:
    """Register segment `key` (named by its key) on the server, which must map this memory."""
    with mapped():
        reply = stub.RegisterSharedMemory(pb.RegisterSharedMemoryRequest(name=key, key=key, byte_size=size),
                                          timeout=timeout)
    if reply.nonce != nonce:  # a server on another host with a segment of the same name
        with mapped(), contextlib.suppress(PoolscoreError):
            stub.UnregisterSharedMemory(pb.UnregisterSharedMemoryRequest(name=key), timeout=timeout)
        raise PoolscoreError(grpc.StatusCode.NOT_FOUND, "the server maps other memory under this name")


def _as_wire(array: np.ndarray) -> tuple[int, "_Shape"]:
    """The wire dtype, and the destination's shape and dtype (nothing copied or allocated)."""
    code, probe = wire_dtype(np.empty(0, array.dtype))  # other integers widen to int64, any byte order to <
    return code, _Shape(array.shape, probe.dtype)


class _Shape:
    def __init__(self, shape: tuple, dtype: np.dtype) -> None:
        self.shape, self.dtype = shape, dtype
        self.nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


def _fitting(wanted: int) -> int:
    """The ring's size: `wanted`, or half of what /dev/shm has free (a container's is often
    64 MiB); under 4 MiB is not worth it (OSError: the bytes go in the messages)."""
    fs = os.statvfs(SHM_DIR)
    half = fs.f_bavail * fs.f_frsize // 2
    size = wanted if half >= wanted else half // 2**20 * 2**20
    if size < min(wanted, 4 * 2**20):
        raise OSError(errno.ENOSPC, f"{SHM_DIR} has {fs.f_bavail * fs.f_frsize} bytes free")
    return size


class Rings:
    """A client's rings between calls. A call takes one (or makes one) and gives it back when it
    succeeds: a fresh segment's pages cost more to fault in and free than the copy into them."""

    def __init__(self) -> None:
        self._idle: list[Ring] = []
        self._lock = threading.Lock()

    def take(self) -> Ring | None:
        """An idle ring still within its `fresh_s` (the server unmaps older ones), or None."""
        while True:
            with self._lock:
                if not self._idle:
                    return None
                ring = self._idle.pop()
            if time.monotonic() - ring.used < ring.fresh_s:
                ring.stopped.clear()
                return ring
            ring.close()

    def give(self, ring: Ring) -> None:
        ring.stopped.set()
        ring.used = time.monotonic()
        with self._lock:
            self._idle.append(ring)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for ring in idle:
            ring.close()


@contextlib.contextmanager
def ring_for(client, wanted: bool | None) -> Iterator[Ring | None]:
    """A ring for one call, or None to send bytes: shared memory off, a remote target, or a
    server that cannot map it (said once at debug level; wanted=True raises instead). The ring
    goes back to the client's idle ones if the call succeeds, and is unregistered if it fails."""
    ring = _ring(client, wanted)
    if ring is not None:
        ring.placed = functools.partial(client._shared.where, client)
    try:
        yield ring
    except BaseException:
        if ring is not None:
            ring.close()  # a request of the failed call may still be read: this ring is not reused
        raise
    if ring is not None:
        client._rings.give(ring)


def prepare(client, wanted: bool | None) -> None:
    """Make (or check) a ring now and keep it for the next call: its segment's pages and the
    register call (12-15 ms for 32 MiB, twice that for 64) are then paid before a first pool, not in it."""
    if client.replicas:
        return
    try:
        ring = _ring(client, wanted)
    except (PoolscoreError, OSError) as err:  # best effort (a token refused, /dev/shm full): the first call says so
        log.debug("no shared-memory ring made ahead for %s: %s", client.target, err)
        return
    if ring is not None:
        client._rings.give(ring)


def _registered(client) -> set[str]:
    """The names of the regions the server holds for this client's principal."""
    with mapped():
        regions = client._stub.SharedMemoryStatus(pb.SharedMemoryStatusRequest(), timeout=client.timeout).regions
    return {r.name for r in regions}


def _ring(client, wanted: bool | None) -> Ring | None:
    if wanted is False or not (wanted or is_local(client.target)):
        return None
    try:
        ring = client._rings.take()
        held = _registered(client) if ring is not None or client._shared else None
        client._shared.held(client, held)  # a shared array the server lost (a restart, idle) is registered again
        if ring is not None:
            if ring.key in held:  # one call, and it says the server takes shared memory
                return ring
            ring.close()  # the server restarted, or swept it
        info = client.info().shared_memory
        if not info.enabled:
            raise PoolscoreError(grpc.StatusCode.FAILED_PRECONDITION, "the server takes no shared memory")
        ring = Ring(client._stub, client.timeout)
        ring.fresh_s = client._shared.fresh_s = info.idle_s / 2
        return ring
    except (PoolscoreError, OSError) as err:
        if wanted or (isinstance(err, PoolscoreError) and err.code not in FALLBACK):
            raise
        log.debug("shared memory to %s not used: %s", client.target, err)
        return None
