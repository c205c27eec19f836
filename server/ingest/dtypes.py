"""The one dtype table: every tensor dtype the service reads, by the name the wire gives it.

poolscore.v1's `DataType` enum and the Open Inference Protocol's `datatype` strings share
these names (FP32, INT64, ...), so both transports look dtypes up here; each backend maps
`DType.name` to its own array type (torch.float32, numpy.float32)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DType:
    wire: str  # "FP32": poolscore.v1.DataType's name, and OIP's datatype
    name: str  # "float32": NumPy's and torch's name
    itemsize: int

    @property
    def is_float(self) -> bool:
        return self.name.startswith(("float", "bfloat"))


_ALL = (DType("FP16", "float16", 2), DType("BF16", "bfloat16", 2), DType("FP32", "float32", 4),
        DType("FP64", "float64", 8), DType("INT64", "int64", 8), DType("INT32", "int32", 4))

BY_WIRE: dict[str, DType] = {d.wire: d for d in _ALL}
BY_NAME: dict[str, DType] = {d.name: d for d in _ALL}
FLOATS = tuple(d.name for d in _ALL if d.is_float)  # what predictions may be sent as


def name_of(array) -> str:
    """A torch tensor's or NumPy array's dtype as the table names it ("float32")."""
    return str(array.dtype).removeprefix("torch.")


def wire_of(array) -> str:
    """The wire name of an array's dtype ("FP32"); KeyError for one the wire cannot carry."""
    return BY_NAME[name_of(array)].wire
