"""Request bytes built by hand: each tensor's payload is joined in once, never re-copied.

protobuf would copy an array's bytes into the message, then again when serializing. Here
the small fields are serialized by protobuf and each tensor field is written in the
standard encoding around a view of the array, so `b"".join` is the one copy. Concatenated
encodings of one message type are a valid encoding of their merge (protobuf's rule), so
any server, not only poolscore's, reads these bytes.
"""
from __future__ import annotations

import numpy as np

from poolscore.client.pools import Batch
from poolscore.client.tensors import narrowed, wire_dtype
from poolscore.v1 import scoring_pb2 as pb

# tensor-valued field numbers (scoring.proto)
SCORE_REQUEST = {"ids": 3, "logits": 5, "embedding": 6}
SCORE_BATCH_REQUEST = {"logits": 2, "embedding": 3, "ids": 4}
# with a hosted model, a batch's array travels as `inputs` instead of `logits`
SCORE_REQUEST_INPUTS = {**SCORE_REQUEST, "logits": 10}
SCORE_BATCH_REQUEST_INPUTS = {**SCORE_BATCH_REQUEST, "logits": 6}


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64s take ten bytes, as protobuf writes them
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _len_field(number: int, size: int) -> bytes:
    return _varint(number << 3 | 2) + _varint(size)


def tensor_parts(number: int, array: np.ndarray) -> list:
    """Field `number` holding a Tensor of `array`: a small header, then a view of its bytes."""
    wire, a = wire_dtype(array)
    dims = b"".join(_varint(d) for d in a.shape)
    head = b"\x08" + _varint(wire) + _len_field(2, len(dims)) + dims + _len_field(3, a.nbytes)
    return [_len_field(number, len(head) + a.nbytes) + head, memoryview(a.reshape(-1).view(np.uint8))]


LABELED = 11  # ScoreRequest.labeled


def labeled_requests(labeled: np.ndarray | None, batch_bytes: int):
    """ScoreRequest bytes carrying only `labeled` rows, each under batch_bytes."""
    if labeled is None:
        return
    labeled = np.ascontiguousarray(labeled, np.float32)
    if labeled.ndim != 2:
        raise ValueError(f"labeled needs shape [L, D], got {list(labeled.shape)}")
    step = max(1, batch_bytes // max(1, labeled.shape[1] * 4))
    for start in range(0, len(labeled), step):
        yield b"".join(tensor_parts(LABELED, labeled[start:start + step]))


def encode(small, batch: Batch, numbers: dict[str, int], narrow: str | None = None) -> bytes:
    """`small` (a message without tensors) plus the batch's tensors, as one message's bytes.
    `narrow` ("float16", "bfloat16"): logits and embeddings go as that dtype (a model's raw
    inputs never: they go as the model takes them)."""
    parts: list = [small.SerializeToString()]
    if batch.keys is not None and isinstance(small, pb.ScoreRequest):
        parts[0] = pb.ScoreRequest(keys=batch.keys).SerializeToString() + parts[0]
    hosted = numbers["logits"] in (SCORE_REQUEST_INPUTS["logits"], SCORE_BATCH_REQUEST_INPUTS["logits"])
    for name in ("logits", "embedding", "ids"):
        array = getattr(batch, name)
        if array is not None:
            array = np.asarray(array)
            if name != "ids" and not (hosted and name == "logits"):
                array = narrowed(array, narrow)  # one batch at a time: the pool is never copied whole
            parts += tensor_parts(numbers[name], array)
    return b"".join(parts)
