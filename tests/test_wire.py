"""The hand-written wire paths agree with protobuf itself, both ways, and refuse garbage."""
from __future__ import annotations

import grpc
import numpy as np
import pytest
from hypothesis import given, strategies as st

from poolscore.client import Batch
from poolscore.client import wire as client_wire
from poolscore.client.tensors import decode as decode_tensor, fill
from poolscore.server.transport import wire as server_wire
from poolscore.v1 import scoring_pb2 as pb

shapes = st.lists(st.integers(0, 5), min_size=1, max_size=3)


@given(shape=shapes, seq=st.integers(-(2**63), 2**63 - 1), keyed=st.booleans(), dtype=st.sampled_from(["<f4", "<f2", "<f8", ">f4"]))
def test_client_bytes_parse_as_the_same_message_in_protobuf(shape: list[int], seq: int, keyed: bool, dtype: str) -> None:
    x = np.arange(np.prod(shape), dtype=dtype).reshape(shape)
    keys = [f"k{i}" for i in range(shape[0])] if keyed else None
    ids = None if keyed else np.arange(shape[0]) - 3
    data = client_wire.encode(pb.ScoreRequest(session_id="s", seq=seq, k=7), Batch(x, ids, None, keys), client_wire.SCORE_REQUEST)
    msg = pb.ScoreRequest.FromString(data)
    assert (msg.session_id, msg.seq, msg.k, list(msg.keys)) == ("s", seq, 7, keys or [])
    np.testing.assert_array_equal(decode_tensor(msg.logits), x)
    assert msg.HasField("ids") != keyed and not msg.HasField("embedding")


@given(shape=shapes, seq=st.integers(-(2**63), 2**63 - 1))
def test_server_reads_protobuf_bytes_without_copying_tensors(shape: list[int], seq: int) -> None:
    msg = pb.ScoreRequest(session_id="abc", seq=seq, keys=["a", "b"], k=3, strategy=pb.StrategySpec(name="bald", base=2))
    fill(msg.logits, np.ones(shape, np.float32))
    fill(msg.embedding, np.zeros((2, 2), np.float64))
    data = msg.SerializeToString()
    parsed = server_wire.score_request(data)
    assert (parsed.session_id, parsed.seq, list(parsed.keys), parsed.k, parsed.strategy.name) == ("abc", seq, ["a", "b"], 3, "bald")
    logits = parsed.batch.tensor("logits")
    assert (logits.dtype, logits.shape, bytes(logits.data)) == ("FP32", tuple(shape), msg.logits.data)
    assert logits.data.obj is data or not logits.data.nbytes  # a view of the received buffer, not a copy
    assert parsed.batch.tensor("ids") is None and parsed.batch.tensor("embedding").shape == (2, 2)


def test_unpacked_repeated_shape_is_read_too() -> None:
    # Tensor{dtype: FP32, shape: 2 then 3 as two unpacked varints, data: 24 bytes} in field 5
    tensor = b"\x08\x03" + b"\x10\x02" + b"\x10\x03" + b"\x1a\x18" + bytes(24)
    parsed = server_wire.score_request(b"\x2a" + bytes([len(tensor)]) + tensor)
    assert parsed.batch.tensor("logits").shape == (2, 3)


@pytest.mark.parametrize("garbage", [b"\x2a\x7f\x00", b"\x08\xff\xff\xff", b"\x0f"])
def test_a_malformed_message_is_invalid_argument(app, garbage: bytes) -> None:
    with grpc.insecure_channel(app.target) as channel:
        call = channel.unary_unary("/poolscore.v1.PoolScorer/ScoreBatch", None, pb.ScoreBatchReply.FromString)
        with pytest.raises(grpc.RpcError) as err:
            call(garbage, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "message: " in err.value.details()
