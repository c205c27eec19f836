"""NumPy arrays ↔ wire tensors (raw little-endian bytes + dtype + shape), without torch."""
from __future__ import annotations

import numpy as np

from poolscore.v1 import scoring_pb2 as pb

try:  # bfloat16 arrays, where ml_dtypes is installed
    from ml_dtypes import bfloat16 as _bf16
except ImportError:  # pragma: no cover
    _bf16 = None

_WIRE = {np.dtype(np.float16): pb.FP16, np.dtype(np.float32): pb.FP32, np.dtype(np.float64): pb.FP64,
         np.dtype(np.int64): pb.INT64}
if _bf16 is not None:
    _WIRE[np.dtype(_bf16)] = pb.BF16
_NUMPY = {v: k for k, v in _WIRE.items()}


def encode(a: np.ndarray) -> pb.Tensor:
    """A wire tensor of `a` (see fill)."""
    return fill(pb.Tensor(), a)


def wire_dtype(a: np.ndarray) -> tuple[int, np.ndarray]:
    """The wire dtype of `a`, and `a` as C-contiguous little-endian (a copy only if it was not).

    Other integer dtypes widen to int64; other floats must be converted by the caller."""
    a = np.asarray(a)
    if a.dtype.kind in "iu" and a.dtype != np.int64:
        a = a.astype(np.int64)
    wire = _WIRE.get(a.dtype.newbyteorder("=") if a.dtype.byteorder not in "=|" else a.dtype)
    if wire is None:
        raise TypeError(f"arrays of {a.dtype} cannot be sent; use float16/32/64, bfloat16 or int64")
    return wire, np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))


def fill(t: pb.Tensor, a: np.ndarray) -> pb.Tensor:
    """Write `a` into the message field `t` in place (tests and tools; the client uses wire.py)."""
    wire, data = wire_dtype(a)
    t.dtype = wire
    t.shape[:] = data.shape
    t.data = data.tobytes()
    return t


def decode(t: pb.Tensor) -> np.ndarray:
    return np.frombuffer(t.data, dtype=_NUMPY[t.dtype].newbyteorder("<")).reshape(tuple(t.shape))


NARROW = ("float16", "bfloat16")


def narrowed(a: np.ndarray, dtype: str | None) -> np.ndarray:
    """A float array as `dtype` ("float16" or "bfloat16") for the wire: half the bytes, at a
    cost in precision the README states (the top-K overlap with float32 scoring); None, an
    integer array, or one narrower already: as it is."""
    if dtype is None or a.dtype.kind != "f" or a.dtype.itemsize <= 2:
        return a
    if dtype == "float16":
        return a.astype(np.float16)
    if dtype == "bfloat16":
        if _bf16 is None:
            raise ValueError("wire_dtype='bfloat16' needs ml_dtypes (pip install ml_dtypes)")
        return a.astype(_bf16)
    raise ValueError(f"wire_dtype must be one of {', '.join(NARROW)} or None, got {dtype!r}")
