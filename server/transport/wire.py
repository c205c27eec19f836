"""Zero-copy request decoding: tensor payloads stay slices of the received message bytes.

protobuf copies a bytes field into its arena on parse, and again into a new bytes object
on every access. For the messages that carry tensors, this module walks the top-level
fields itself: each Tensor's dtype and shape are read, its data becomes a memoryview of
the buffer gRPC handed over, and only the small remaining fields (ids of the session,
strategy, keys, ...) go through protobuf. The bytes are the standard protobuf encoding,
so any client works; this is only a faster reader.
"""
from __future__ import annotations

import functools
import zlib

import numpy as np

from google.protobuf.message import DecodeError

from poolscore.server.errors import BadInput
from poolscore.server.ingest.tensors import Batch, RawTensor
from poolscore.v1 import scoring_pb2 as pb


class Parsed:
    """A request message without its tensors, plus the tensors as RawTensor views. `refs`: the
    tensors whose bytes lie in shared memory, (region, offset, byte_size, release) each, until
    the RPC, which knows the caller, resolves them (shared_memory.resolved)."""

    def __init__(self, message, tensors: dict[str, RawTensor], refs: dict | None = None) -> None:
        self.message, self.tensors, self.refs = message, tensors, refs or {}
        self.marks: list = []  # (region, release mark) to publish once the request is scored

    def release(self) -> None:
        """Tell the client's ring this request's shared memory may be written again."""
        for region, mark in self.marks:
            region.release(mark)

    def __getattr__(self, name: str):  # session_id, seq, keys, strategy, k: the small fields
        return getattr(self.message, name)

    @functools.cached_property
    def batch(self) -> Batch:
        """The tensors and keys, for the pipeline (ScoreBatchRequest has no keys); made once."""
        return Batch(self.tensors, list(getattr(self.message, "keys", ())))


class Unparsable:
    """A message that could not be read: gRPC would report a deserializer's exception as
    INTERNAL, so the error waits here and is raised inside the RPC, where it maps to
    INVALID_ARGUMENT like any bad input."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, name: str):
        raise self.error

    @property
    def batch(self) -> Batch:
        raise self.error


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise BadInput("message", "truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise BadInput("message", "varint longer than 10 bytes")


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _fields(buf: memoryview):
    """(field number, wire type, value or payload view, start, end) for each top-level field."""
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise BadInput("message", f"field {number} runs past the end")
            value, pos = buf[pos:pos + size], pos + size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = buf[pos:pos + size], pos + size
        else:
            raise BadInput("message", f"field {number}: unsupported wire type {wire}")
        yield number, wire, value, start, pos


def _tensor(buf: memoryview, field: str) -> tuple[RawTensor, tuple | None]:
    dtype, shape, data, ref = 0, [], memoryview(b""), None
    for number, wire, value, _, _ in _fields(buf):
        if number == 1 and wire == 0:
            dtype = value
        elif number == 2 and wire == 2:  # packed shape
            pos = 0
            while pos < len(value):
                dim, pos = _varint(value, pos)
                shape.append(_signed(dim))
        elif number == 2 and wire == 0:  # an unpacked repeated encoding is valid too
            shape.append(_signed(value))
        elif number == 3 and wire == 2:
            data = value
        elif number == 4 and wire == 2:
            ref = _shm_ref(value, field)
    if ref is not None and len(data):
        raise BadInput(f"{field}.shm", "data and shm are both set: a tensor's bytes come from one of them")
    return RawTensor(dtype_name(dtype), tuple(shape), data), ref


def _shm_ref(buf: memoryview, field: str) -> tuple[str, int, int, int]:
    """SharedMemoryRef: (region, offset, byte_size, release)."""
    region, numbers = "", {2: 0, 3: 0, 4: 0}
    for number, wire, value, _, _ in _fields(buf):
        if number == 1 and wire == 2:
            try:
                region = bytes(value).decode()
            except UnicodeDecodeError:
                raise BadInput(f"{field}.shm.region", "not UTF-8") from None
        elif number in numbers and wire == 0:
            numbers[number] = _signed(value) if number != 4 else value
    return region, numbers[2], numbers[3], numbers[4]


_DTYPE_NAMES = {code: pb.DataType.Name(code) for code in pb.DataType.values()}  # once, not per tensor


def dtype_name(code: int) -> str:
    """poolscore.v1.DataType's name for a code ("FP32"); an unknown code as its number."""
    return _DTYPE_NAMES.get(code, str(code))


# Tensor-valued field numbers of each message that carries tensors (scoring.proto)
_SCORE_REQUEST = {3: "ids", 5: "logits", 6: "embedding", 10: "inputs", 11: "labeled"}
_SCORE_BATCH_REQUEST = {2: "logits", 3: "embedding", 4: "ids", 6: "inputs"}


def _parse(data: bytes, tensor_fields: dict[int, str], cls) -> Parsed | Unparsable:
    try:
        return _parse_or_raise(memoryview(data), tensor_fields, cls)
    except BadInput as err:
        return Unparsable(err)
    except DecodeError as err:
        return Unparsable(BadInput("message", f"not a valid {cls.__name__}: {err}"))


def _parse_or_raise(buf: memoryview, tensor_fields: dict[int, str], cls) -> Parsed:
    tensors, refs, rest = {}, {}, []
    for number, wire, value, start, end in _fields(buf):
        if number in tensor_fields and wire == 2:
            name = tensor_fields[number]
            tensors[name], ref = _tensor(value, name)  # last one wins, as in protobuf
            refs.pop(name, None)
            if ref is not None:
                refs[name] = ref
        else:
            rest.append(buf[start:end])
    return Parsed(cls.FromString(b"".join(rest)), tensors, refs)


def digest(req: Parsed) -> int:
    """A batch's content digest, for telling a resend from another batch under the same seq: its
    keys, every tensor's dtype and shape, and of each tensor's bytes both ends and every 1024th
    byte (a pipeline that re-reads its pool in another order changes those; microseconds)."""
    h = zlib.crc32(repr(list(getattr(req.message, "keys", ()))).encode())
    for name in sorted(req.tensors):
        t = req.tensors[name]
        h = zlib.crc32(f"{name}:{t.dtype}:{t.shape}".encode(), h)
        data = np.frombuffer(t.data, np.uint8)
        parts = (data,) if len(data) <= 16384 else (data[:4096], data[-4096:], data[::1024])
        for part in parts:
            h = zlib.crc32(np.ascontiguousarray(part), h)
    return h


def message(cls):
    """A deserializer for a tensor-free message: its parse, or an Unparsable that the RPC raises
    as INVALID_ARGUMENT (gRPC would report the deserializer's exception as INTERNAL)."""
    def parse(data: bytes):
        try:
            return cls.FromString(data)
        except Exception as err:  # noqa: BLE001 - DecodeError, or a bad UTF-8 string: the caller's bytes
            return Unparsable(BadInput("message", f"not a valid {cls.__name__}: {err}"))
    return parse


def score_request(data: bytes) -> Parsed:
    return _parse(data, _SCORE_REQUEST, pb.ScoreRequest)


def score_batch_request(data: bytes) -> Parsed:
    return _parse(data, _SCORE_BATCH_REQUEST, pb.ScoreBatchRequest)
