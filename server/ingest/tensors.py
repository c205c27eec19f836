"""Wire bytes → checked views: a tensor's dtype and shape checked against its bytes, no copy.

A transport hands over a `Batch` of `RawTensor`s (slices of the message it received); each
backend then views the bytes as its own array type. Nothing is allocated in proportion to a
shape before that shape is checked against the bytes that came with it."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, NamedTuple, Sequence

from poolscore.server.errors import BadInput
from poolscore.server.ingest.dtypes import BY_WIRE, DType, name_of

TENSOR_FIELDS = ("ids", "logits", "embedding", "inputs", "labeled")  # what a batch may carry
MAX_KEY_CHARS = 1024  # a string id longer than this is refused: keys are held for every item in a top-K


class RawTensor(NamedTuple):
    dtype: str  # the wire name, "FP32"; anything else the transport read ("DATA_TYPE_UNSPECIFIED", "7")
    shape: tuple[int, ...]
    data: memoryview  # little-endian, C order


@dataclass(frozen=True)
class Batch:
    """One batch as any transport received it: raw tensors by field name, and string keys."""
    tensors: Mapping[str, RawTensor] = field(default_factory=dict)
    keys: Sequence[str] = ()

    def tensor(self, name: str) -> RawTensor | None:
        return self.tensors.get(name)

    @property
    def carries_rows(self) -> bool:
        """Anything but a header (ScorePool's first message may carry only strategy and k)."""
        return bool(self.tensors) or bool(self.keys)

    @property
    def nbytes(self) -> int:
        return sum(len(t.data) for t in self.tensors.values())


def checked(t: RawTensor, field: str) -> tuple[DType, list[int]]:
    """The tensor's dtype and shape; BadInput names the field when they and the bytes disagree."""
    dtype = BY_WIRE.get(t.dtype)
    if dtype is None:
        raise BadInput(f"{field}.dtype", f"{t.dtype} is not one of {', '.join(BY_WIRE)}")
    shape = list(t.shape)
    if any(n < 0 for n in shape):
        raise BadInput(f"{field}.shape", f"negative size in {shape}")
    want = math.prod(shape) * dtype.itemsize
    if len(t.data) != want:
        raise BadInput(f"{field}.data", f"{len(t.data)} bytes, shape {shape} of {t.dtype} needs {want}")
    if want == 0 and shape and shape[0] > 0:  # rows claimed with no values: nothing backs the count
        raise BadInput(f"{field}.shape", f"{shape[0]} rows of no values in shape {shape}: every row must carry data")
    return dtype, shape


def check_keys(keys: Sequence[str]) -> None:
    if keys and max(map(len, keys)) > MAX_KEY_CHARS:
        row = next(i for i, k in enumerate(keys) if len(k) > MAX_KEY_CHARS)
        raise BadInput("keys", f"{len(keys[row])} characters, over the limit of {MAX_KEY_CHARS}", row)


def check_ids(ids, rows: int, field: str = "ids") -> None:
    """Sent ids must be int64 [rows] (a torch tensor or a NumPy array)."""
    if name_of(ids) != "int64" or ids.ndim != 1:
        raise BadInput(field, f"needs int64 [N], got {name_of(ids)} {list(ids.shape)}")
    if ids.shape[0] != rows:
        raise BadInput(field, f"{ids.shape[0]} ids for {rows} rows")


def rows_of(x, ids, keys: Sequence[str]) -> int:
    """How many rows a batch holds: its predictions', else its ids', else its keys' count."""
    if x is not None and x.ndim > 0:
        return x.shape[0]
    if ids is not None and ids.ndim == 1:
        return ids.shape[0]
    return len(keys)
