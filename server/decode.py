"""Wire tensors → torch views of the message bytes, checked for dtype, shape and size."""
from __future__ import annotations

import math
import warnings

import torch

from poolscore.server.errors import BadInput
from poolscore.server.wire import Parsed, RawTensor
from poolscore.v1 import scoring_pb2 as pb

DTYPES = {pb.FP16: torch.float16, pb.BF16: torch.bfloat16, pb.FP32: torch.float32,
          pb.FP64: torch.float64, pb.INT64: torch.int64}
WIRE_DTYPE = {v: k for k, v in DTYPES.items()}


def tensor(t: RawTensor, field: str) -> torch.Tensor:
    """A read-only view of `t.data` shaped `t.shape` (no copy); BadInput names what is off."""
    dtype = DTYPES.get(t.dtype)
    if dtype is None:
        names = ", ".join(pb.DataType.Name(k) for k in DTYPES)
        raise BadInput(f"{field}.dtype", f"{pb.DataType.Name(t.dtype) if t.dtype in pb.DataType.values() else t.dtype} is not one of {names}")
    shape = list(t.shape)
    if any(n < 0 for n in shape):
        raise BadInput(f"{field}.shape", f"negative size in {shape}")
    data = t.data
    want = math.prod(shape) * dtype.itemsize
    if len(data) != want:
        raise BadInput(f"{field}.data", f"{len(data)} bytes, shape {shape} of {pb.DataType.Name(t.dtype)} needs {want}")
    if want == 0:
        return torch.empty(shape, dtype=dtype)
    with warnings.catch_warnings():  # read-only is intended: kernels never write their input
        warnings.simplefilter("ignore", UserWarning)
        return torch.frombuffer(data, dtype=dtype).view(shape)


def optional(req: Parsed, name: str) -> torch.Tensor | None:
    raw = req.tensor(name)
    return None if raw is None else tensor(raw, name)


def ids(t: torch.Tensor | None, rows: int, first: int, field: str = "ids") -> torch.Tensor:
    """The batch's int64 ids: as sent, or row numbers `first, first+1, ...` when absent."""
    if t is None:
        return torch.arange(first, first + rows, dtype=torch.int64)
    if t.dtype != torch.int64 or t.dim() != 1:
        raise BadInput(field, f"needs int64 [N], got {str(t.dtype).removeprefix('torch.')} {list(t.shape)}")
    if t.shape[0] != rows:
        raise BadInput(field, f"{t.shape[0]} ids for {rows} rows")
    return t


def encode(t: torch.Tensor) -> pb.Tensor:
    """A tensor as raw little-endian bytes (for replies: scores)."""
    t = t.detach().contiguous().cpu()
    raw = t.view(torch.int16) if t.dtype == torch.bfloat16 else t
    return pb.Tensor(dtype=WIRE_DTYPE[t.dtype], shape=list(t.shape), data=raw.numpy().tobytes())
