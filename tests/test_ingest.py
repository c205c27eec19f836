"""ingest/: the one dtype table, and raw tensors checked against their bytes before any view."""
from __future__ import annotations

import numpy as np
import pytest

from poolscore.server.errors import BadInput
from poolscore.server.ingest.dtypes import BY_NAME, BY_WIRE, FLOATS, wire_of
from poolscore.server.ingest.tensors import Batch, RawTensor, check_ids, checked, rows_of
from poolscore.v1 import scoring_pb2 as pb


def test_the_table_names_every_wire_dtype_of_both_protocols() -> None:
    wire = {pb.DataType.Name(v) for v in pb.DataType.values() if v != pb.DATA_TYPE_UNSPECIFIED}
    assert wire <= set(BY_WIRE)  # poolscore.v1's DataType; OIP's FP32, INT64, ... are the same names
    for d in BY_WIRE.values():
        if d.name != "bfloat16":
            assert np.dtype(d.name).itemsize == d.itemsize
    assert FLOATS == ("float16", "bfloat16", "float32", "float64")
    assert wire_of(np.zeros(2, np.float64)) == "FP64" and BY_NAME["int64"].wire == "INT64"


def test_a_tensor_whose_bytes_fit_its_shape_passes() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    dtype, shape = checked(RawTensor("FP32", (2, 3), memoryview(a.tobytes())), "logits")
    assert (dtype.name, shape) == ("float32", [2, 3])


@pytest.mark.parametrize("raw, message", [
    (RawTensor("FP31", (2,), memoryview(bytes(8))), r"logits.dtype: FP31 is not one of FP16, BF16, FP32, FP64, INT64"),
    (RawTensor("DATA_TYPE_UNSPECIFIED", (2,), memoryview(bytes(8))), r"logits.dtype: DATA_TYPE_UNSPECIFIED is not"),
    (RawTensor("FP32", (-1, 4), memoryview(b"")), r"logits.shape: negative size in \[-1, 4\]"),
    (RawTensor("FP32", (2, 3), memoryview(bytes(20))), r"logits.data: 20 bytes, shape \[2, 3\] of FP32 needs 24"),
    (RawTensor("FP32", (2**40, 2**40), memoryview(bytes(4))), r"needs 4835703278458516698824704"),
])
def test_a_mismatch_is_named_before_anything_is_allocated(raw: RawTensor, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        checked(raw, "logits")


def test_ids_are_int64_one_per_row() -> None:
    check_ids(np.arange(3, dtype=np.int64), 3)
    with pytest.raises(BadInput, match=r"ids: needs int64 \[N\], got int32 \[3\]"):
        check_ids(np.arange(3, dtype=np.int32), 3)
    with pytest.raises(BadInput, match="ids: 3 ids for 4 rows"):
        check_ids(np.arange(3, dtype=np.int64), 4)


def test_rows_come_from_predictions_then_ids_then_keys() -> None:
    assert rows_of(np.zeros((5, 2)), None, ()) == 5
    assert rows_of(None, np.zeros(4, np.int64), ()) == 4
    assert rows_of(None, None, ["a", "b"]) == 2


def test_a_batch_knows_its_bytes_and_whether_it_carries_rows() -> None:
    t = RawTensor("FP32", (2, 2), memoryview(bytes(16)))
    assert Batch({"logits": t}).nbytes == 16 and Batch({"logits": t}).carries_rows
    assert not Batch().carries_rows and Batch(keys=["a"]).carries_rows
