"""Serving that holds: a cap on streams that leaves health and unary calls their threads, idle
streams closed, limits on what a request may claim, and statuses for each."""
from __future__ import annotations

import threading

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from poolscore.client import BadBatch, Client, NotFound
from poolscore.server.app import build_server
from poolscore.server.config import ServeConfig
from poolscore.v1 import scoring_pb2 as pb


@pytest.fixture(scope="module")
def small_app():
    """A server with few threads, two stream slots and a short idle timeout."""
    app = build_server(ServeConfig(port=0, metrics_port=-1, device="cpu", compile="off", workers=6, max_streams=2,
                                   stream_idle_s=1.5)).start()
    with Client(app.target) as c:
        c.wait_ready()  # the batch path rehearsed: health says SERVING
    yield app
    app.stop(grace=None)


def open_idle_stream(channel: grpc.Channel, session_id: str, release: threading.Event):
    """A Score stream that sends one batch, then nothing until `release` is set."""
    score = channel.stream_stream("/poolscore.v1.PoolScorer/Score", request_serializer=lambda m: m.SerializeToString(),
                                  response_deserializer=pb.ScoreAck.FromString)

    def requests():
        yield pb.ScoreRequest(session_id=session_id, seq=0,
                              logits=pb.Tensor(dtype=pb.FP32, shape=[1, 2], data=np.zeros(2, np.float32).tobytes()))
        release.wait()

    call = score(requests())
    assert next(call).seq == 0  # the stream is open and holds its slot
    return call


def test_open_streams_leave_health_and_unary_calls_their_threads(small_app):
    release = threading.Event()
    with grpc.insecure_channel(small_app.target) as channel, Client(small_app.target) as client:
        sessions = [client.create_session("entropy", k=2) for _ in range(3)]
        calls = [open_idle_stream(channel, sid, release) for sid in sessions[:2]]
        try:
            with pytest.raises(grpc.RpcError) as refused:
                open_idle_stream(channel, sessions[2], release)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "--max-streams" in refused.value.details()
            health = health_pb2_grpc.HealthStub(channel)
            for _ in range(20):  # each answers within its deadline (bench/load.py measures how fast)
                assert health.Check(health_pb2.HealthCheckRequest(), timeout=2).status == health_pb2.HealthCheckResponse.SERVING
                assert client.get_session(sessions[0]).next_seq == 1
        finally:
            release.set()
            for call in calls:
                call.cancel()


def test_an_idle_stream_is_closed_and_its_slot_and_batches_kept(small_app):
    release = threading.Event()
    with grpc.insecure_channel(small_app.target) as channel, Client(small_app.target) as client:
        sid = client.create_session("entropy", k=2)
        call = open_idle_stream(channel, sid, release)
        with pytest.raises(grpc.RpcError) as closed:
            next(call)  # nothing more is sent: the server closes the stream after --stream-idle-s
        release.set()
        assert closed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "--stream-idle-s" in closed.value.details()
        assert client.get_session(sid).next_seq == 1  # the batch it committed is kept
        client.score(sid, np.zeros((3, 2), np.float32))  # and the slot is free again
        assert client.get_session(sid).items == 4


def test_rows_claimed_without_values_are_refused_before_anything_is_allocated(app):
    channel = grpc.insecure_channel(app.target)
    score_pool = channel.stream_unary("/poolscore.v1.PoolScorer/ScorePool",
                                              request_serializer=lambda m: m.SerializeToString(),
                                              response_deserializer=pb.TopK.FromString)
    peak = _peak_rss_mib()
    for strategy, shape in (("entropy", [2**40, 0]), ("random", [2**24, 0]), ("random", [2**31, 0])):
        req = pb.ScoreRequest(strategy=pb.StrategySpec(name=strategy), k=3, logits=pb.Tensor(dtype=pb.FP32, shape=shape))
        assert len(req.SerializeToString()) < 40
        with pytest.raises(grpc.RpcError) as refused:
            score_pool(iter([req]), timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "rows of no values" in refused.value.details()
    channel.close()
    assert _peak_rss_mib() - peak < 100  # ids for 2**31 phantom rows alone would be 16 GiB


def _peak_rss_mib() -> float:
    """This process's peak RSS (the server under test runs in it)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def test_long_keys_and_session_ids_are_refused_and_named_short(client: Client):
    with pytest.raises(BadBatch, match="over the limit of 1024"):
        client.score_pool(np.zeros((2, 3), np.float32), "entropy", 2, keys=["a", "b" * 5000])
    with pytest.raises(BadBatch, match="session_id: 300 characters"):
        client.create_session("entropy", k=2, session_id="s" * 300)
    with pytest.raises(NotFound) as missing:
        client.top_k("x" * 100_000)  # a status, not a metadata overflow: the id is cut short
    assert "100000 characters" in str(missing.value) and len(str(missing.value)) < 300


@pytest.mark.parametrize("method", ["CreateSession", "GetSession", "GetTopK", "DeleteSession", "ServerInfo",
                                    "ReloadModels", "ScoreBatch"])
def test_garbage_bytes_to_any_unary_method_are_invalid_argument(app, method):
    with grpc.insecure_channel(app.target) as channel:
        call = channel.unary_unary(f"/poolscore.v1.PoolScorer/{method}")
        for garbage in (b"\xff\xff\xff", b"\x0a\x05ab", b"\x12\x80\x80\x80\x80\x10"):
            with pytest.raises(grpc.RpcError) as refused:
                call(garbage, timeout=10)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (garbage, refused.value.details())


@pytest.mark.parametrize("method", ["ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata",
                                    "ModelInfer"])
def test_garbage_bytes_to_oip_are_invalid_argument(app, method):
    with grpc.insecure_channel(app.target) as channel:
        call = channel.unary_unary(f"/inference.GRPCInferenceService/{method}")
        with pytest.raises(grpc.RpcError) as refused:
            call(b"\xff\xff\xff", timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_every_session_reserves_its_top_k_from_the_budget():
    app = build_server(ServeConfig(port=0, metrics_port=-1, device="cpu", compile="off", session_memory_mb=1)).start()
    try:
        with Client(app.target) as client:
            from poolscore.client import OverLimit

            with pytest.raises(OverLimit, match=r"session-memory-mb"):
                client.create_session("entropy", k=100_000)  # 6.4 MB of top-K against a 1 MiB budget
            made = []
            with pytest.raises(OverLimit, match="free"):
                for _ in range(100):
                    made.append(client.create_session("margin", k=1000))  # 64 KB each
            assert 10 <= len(made) < 17
            with pytest.raises(OverLimit):
                client.score_pool(np.zeros((10, 3), np.float32), "entropy", 1000)  # ScorePool reserves too
            client.delete_session(made.pop())
            assert len(client.score_pool(np.zeros((10, 3), np.float32), "entropy", 1000)) == 10
            for sid in made:
                client.delete_session(sid)
            assert client.info().limits.session_memory_free_bytes == 2**20
    finally:
        app.stop(grace=None)


def test_a_session_keeps_its_first_batch_class_count(client: Client):
    sid = client.create_session("entropy", k=3)
    try:
        client.score(sid, np.zeros((4, 5), np.float32))
        with pytest.raises(BadBatch, match=r"shape \[N, 6\], but the session's first batch had \[N, 5\]"):
            client.score(sid, np.zeros((4, 6), np.float32))
        assert client.get_session(sid).items == 4
    finally:
        client.delete_session(sid)


def test_a_resend_of_a_committed_seq_must_carry_the_same_batch(app, client: Client, rng):
    sid = client.create_session("entropy", k=3)
    z = rng.normal(size=(5, 4)).astype(np.float32)

    def request(seq: int, logits: np.ndarray) -> bytes:
        return pb.ScoreRequest(session_id=sid, seq=seq, logits=pb.Tensor(dtype=pb.FP32, shape=list(logits.shape),
                                                                         data=logits.tobytes())).SerializeToString()

    with grpc.insecure_channel(app.target) as channel:
        score = channel.stream_stream("/poolscore.v1.PoolScorer/Score", response_deserializer=pb.ScoreAck.FromString)
        assert not next(score(iter([request(0, z)]))).replayed
        assert next(score(iter([request(0, z)]))).replayed  # the same batch again: acked, not scored
        other = z.copy()
        other[2, 1] += 1.0
        with pytest.raises(grpc.RpcError) as refused:
            next(score(iter([request(0, other)])))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "batch 0 was already committed, with other content" in refused.value.details()
    assert client.get_session(sid).items == 5
    client.delete_session(sid)


def test_replies_that_cannot_fit_are_refused_before_the_work():
    app = build_server(ServeConfig(port=0, metrics_port=-1, device="cpu", compile="off",
                                   max_message_bytes=200_000)).start()
    try:
        with Client(app.target) as c:
            from poolscore.client import OverLimit

            keys = [f"{i:0900d}" for i in range(300)]  # ~900 B each: 300 of them pass the 200 kB limit
            with pytest.raises(OverLimit, match="keys: the top-K's keys would make a reply"):
                c.score_pool(np.zeros((300, 3), np.float32), "entropy", 300, keys=keys)
            assert len(c.score_pool(np.zeros((50, 3), np.float32), "entropy", 50, keys=keys[:50])) == 50
            with grpc.insecure_channel(app.target) as channel:
                batch = channel.unary_unary("/poolscore.v1.PoolScorer/ScoreBatch")
                def req(n: int) -> bytes:  # float16 logits [n, 1] in, n float64 scores out: 4x the bytes
                    return pb.ScoreBatchRequest(strategy=pb.StrategySpec(name="entropy"), logits=pb.Tensor(
                        dtype=pb.FP16, shape=[n, 1], data=np.zeros(n, np.float16).tobytes())).SerializeToString()

                assert batch(req(15_000), timeout=10)  # 120 kB back: fits
                with pytest.raises(grpc.RpcError) as refused:
                    batch(req(30_000), timeout=10)  # 60 kB in, 240 kB back
                assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "ScoreBatch: 30000 scores" in refused.value.details()
    finally:
        app.stop(grace=None)
