"""Wire tensors → (dtype name, shape) checked against their bytes; no torch, no copy.

Each backend then views the bytes as its own array type (torch_backend, onnx_backend)."""
from __future__ import annotations

import math

from poolscore.server.errors import BadInput
from poolscore.server.wire import RawTensor
from poolscore.v1 import scoring_pb2 as pb

NAMES = {pb.FP16: "float16", pb.BF16: "bfloat16", pb.FP32: "float32", pb.FP64: "float64", pb.INT64: "int64"}
ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8, "int64": 8}
WIRE = {name: code for code, name in NAMES.items()}


def checked(t: RawTensor, field: str) -> tuple[str, list[int]]:
    """The tensor's dtype name and shape; BadInput names the field when they and the bytes disagree."""
    name = NAMES.get(t.dtype)
    if name is None:
        known = ", ".join(pb.DataType.Name(k) for k in NAMES)
        sent = pb.DataType.Name(t.dtype) if t.dtype in pb.DataType.values() else t.dtype
        raise BadInput(f"{field}.dtype", f"{sent} is not one of {known}")
    shape = list(t.shape)
    if any(n < 0 for n in shape):
        raise BadInput(f"{field}.shape", f"negative size in {shape}")
    want = math.prod(shape) * ITEMSIZE[name]
    if len(t.data) != want:
        raise BadInput(f"{field}.data", f"{len(t.data)} bytes, shape {shape} of {pb.DataType.Name(t.dtype)} needs {want}")
    return name, shape


def check_ids(t, rows: int, field: str = "ids") -> None:
    """Sent ids must be int64 [rows]."""
    if str(t.dtype).removeprefix("torch.") != "int64" or t.ndim != 1:
        raise BadInput(field, f"needs int64 [N], got {str(t.dtype).removeprefix('torch.')} {list(t.shape)}")
    if t.shape[0] != rows:
        raise BadInput(field, f"{t.shape[0]} ids for {rows} rows")
