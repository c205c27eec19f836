"""Every RPC through the real client against the real server on a free loopback port."""
from __future__ import annotations

import numpy as np
import pytest

import reference as ref
from poolscore.client import BadBatch, Batch, Client, NotFound, OverLimit, SessionExists


def full_top(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((ids, -scores))[:k]
    return ids[order], scores[order]


def test_score_batch_matches_the_reference(client: Client, rng: np.random.Generator) -> None:
    z = rng.normal(size=(1000, 12)).astype(np.float32)
    np.testing.assert_allclose(client.score_batch(z, "entropy", base=2), ref.entropy(ref.probs(z)) / np.log(2), rtol=1e-4)


def test_score_batch_splits_arrays_over_the_message_limit(client: Client, rng: np.random.Generator) -> None:
    z = rng.normal(size=(40_000, 10)).astype(np.float32)  # 1.6 MB in 64 kB batches
    np.testing.assert_allclose(client.score_batch(z, "margin"), ref.margin(ref.probs(z)), rtol=1e-4, atol=1e-6)


def test_score_pool_is_exact_with_ties_across_batches(client: Client, rng: np.random.Generator) -> None:
    p = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 30_000)] * 0.5 + 0.125  # few distinct scores: ties
    p[::7] = 0.25
    top = client.score_pool(p, "least_confidence", k=50, input_kind="probabilities")
    want_ids, want_scores = full_top(ref.least_confidence(p.astype(np.float64)), np.arange(len(p)), 50)
    np.testing.assert_array_equal(top.ids, want_ids)
    np.testing.assert_allclose(top.scores, want_scores, rtol=1e-6)
    assert top.items == len(p)


def test_score_pool_takes_an_iterable_of_id_batches_with_embeddings(client: Client, rng: np.random.Generator) -> None:
    z = rng.normal(size=(3000, 5)).astype(np.float32)
    h = rng.normal(size=(3000, 8)).astype(np.float32)
    ids = rng.choice(10**9, 3000, replace=False).astype(np.int64)
    pool = [(ids[i:i + 700], z[i:i + 700], h[i:i + 700]) for i in range(0, 3000, 700)]
    top = client.score_pool(pool, "expected_gradient_length", k=10)
    want_ids, _ = full_top(ref.expected_gradient_length(ref.probs(z), h), ids, 10)
    np.testing.assert_array_equal(top.ids, want_ids)


def test_string_keys_come_back_with_the_top(client: Client, rng: np.random.Generator) -> None:
    z = rng.normal(size=(500, 3)).astype(np.float32)
    keys = [f"s3://pool/img-{i:05d}.png" for i in range(500)]
    top = client.score_pool([(keys[:250], z[:250]), (keys[250:], z[250:])], "entropy", k=5)
    want_ids, _ = full_top(ref.entropy(ref.probs(z)), np.arange(500), 5)
    assert top.keys == [keys[i] for i in want_ids] and len(top.ids) == 0


def test_random_strategy_needs_only_ids(client: Client) -> None:
    top = client.score_pool([(np.arange(1000), None)], "random", k=3, seed=11)
    want_ids, want = full_top(ref.random(np.arange(1000), 11), np.arange(1000), 3)
    np.testing.assert_array_equal(top.ids, want_ids)
    np.testing.assert_array_equal(top.scores, want)


def test_an_empty_pool_gives_an_empty_top(client: Client) -> None:
    top = client.score_pool([], "entropy", k=5)
    assert len(top) == 0 and top.items == 0


def test_session_lifecycle(client: Client, rng: np.random.Generator) -> None:
    sid = client.create_session("bald", k=7, base=2)
    x = rng.normal(size=(900, 4, 3)).astype(np.float32)
    for i in range(0, 900, 300):
        ack = client.score(sid, x[i:i + 300], ids=np.arange(i, i + 300))
    assert (ack.items, ack.seq) == (900, 2)
    session = client.get_session(sid)
    assert (session.next_seq, session.items, session.k, session.strategy.name) == (3, 900, 7, "bald")
    want_ids, want = full_top(ref.bald(ref.probs(x)) / np.log(2), np.arange(900), 7)
    top = client.top_k(sid)
    np.testing.assert_array_equal(top.ids, want_ids)
    np.testing.assert_allclose(top.scores, want, rtol=1e-4)
    client.delete_session(sid)
    with pytest.raises(NotFound, match=f"session '{sid}' not found"):
        client.top_k(sid)


def test_nan_batch_is_rejected_and_leaves_top_k_alone(client: Client, rng: np.random.Generator) -> None:
    sid = client.create_session("entropy", k=5)
    client.score(sid, rng.normal(size=(100, 4)).astype(np.float32), ids=np.arange(100))
    before = client.top_k(sid)
    bad = (rng.normal(size=(10, 4)) + 10).astype(np.float32)  # would all enter the top
    bad[7, 2] = np.nan
    with pytest.raises(BadBatch, match=r"batch 1: logits: NaN in row 7 \(item 107 of the stream\)"):
        client.score(sid, bad, ids=np.arange(100, 110))
    assert client.top_k(sid) == before and client.get_session(sid).next_seq == 1


def test_a_pool_rejected_mid_stream_leaves_no_reading_thread_behind(client: Client, rng: np.random.Generator) -> None:
    import threading

    def pumps() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "poolscore-read-ahead"}

    before = pumps()
    good = rng.normal(size=(2000, 4)).astype(np.float32)
    bad = good.copy()
    bad[1500, 1] = np.inf

    def pool():  # the client keeps sending after the bad batch: the server must stop reading
        yield np.arange(2000), good
        yield np.arange(2000, 4000), bad
        for i in range(2, 40):
            yield np.arange(2000 * i, 2000 * (i + 1)), good

    with pytest.raises(BadBatch, match=r"^batch 1: logits: Inf in row 1500 \(item 3500 of the stream\)$"):
        client.score_pool(pool(), "entropy", k=5)
    for pump in pumps() - before:
        pump.join(timeout=30)
        assert not pump.is_alive()
    assert client.score_pool(good, "entropy", k=5).items == 2000  # and the server still serves


def test_a_resent_batch_is_acked_again_and_a_gap_is_refused(client: Client, app, rng: np.random.Generator) -> None:
    from poolscore.v1 import scoring_pb2 as pb, scoring_pb2_grpc as pb_grpc
    import grpc

    sid = client.create_session("entropy", k=3)
    batch = pb.ScoreRequest(session_id=sid, seq=0)
    from poolscore.client.tensors import fill
    fill(batch.logits, rng.normal(size=(20, 3)).astype(np.float32))
    with grpc.insecure_channel(app.target) as channel:
        stub = pb_grpc.PoolScorerStub(channel)
        acks = list(stub.Score(iter([batch, batch])))  # the same seq twice: scored once
        assert [(a.seq, a.items, a.acked_seq, a.replayed) for a in acks] == [(0, 20, 0, False), (0, 20, 0, True)]
        batch.seq = 5
        with pytest.raises(grpc.RpcError) as err:
            list(stub.Score(iter([batch])))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "batch 5 sent but the next batch must be 1" in err.value.details()
        batch.seq = -3
        with pytest.raises(grpc.RpcError) as err:
            list(stub.Score(iter([batch])))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "seq: must be ≥ 0, got -3" in err.value.details()
    assert client.get_session(sid).items == 20


def test_resume_after_the_client_drops_mid_stream(client: Client, rng: np.random.Generator) -> None:
    x = rng.normal(size=(5000, 6)).astype(np.float32)
    batches = [Batch(x[i:i + 500], np.arange(i, i + 500)) for i in range(0, 5000, 500)]
    sid = client.create_session("margin", k=20)

    def crashing():
        yield from batches[:6]
        raise RuntimeError("pipeline died")  # the client's side of the stream breaks here

    client.stream(sid, batches[:3])  # committed for sure
    with pytest.raises(RuntimeError, match="pipeline died"):
        client.stream(sid, crashing(), resume=True)  # sends 3..5, then dies: some may land
    committed = client.get_session(sid).next_seq
    assert 3 <= committed <= 6
    ack = client.stream(sid, batches, resume=True)  # re-read from the start; committed ones skipped
    assert (ack.seq, ack.items) == (9, 5000)
    want_ids, _ = full_top(ref.margin(ref.probs(x)), np.arange(5000), 20)
    np.testing.assert_array_equal(client.top_k(sid).ids, want_ids)


def test_a_session_handle_resumes_after_a_crash_and_deletes_itself_when_done(client: Client, rng: np.random.Generator) -> None:
    x = rng.normal(size=(3000, 4)).astype(np.float32)
    batches = [Batch(x[i:i + 300], np.arange(i, i + 300)) for i in range(0, 3000, 300)]
    with pytest.raises(RuntimeError, match="pipeline died"):
        with client.session("entropy", k=15, session_id="nightly-7") as s:
            s.stream(batches[:4])
            raise RuntimeError("pipeline died")
    assert client.get_session("nightly-7").next_seq == 4  # kept: a crash must not lose work
    with client.session("entropy", k=15, session_id="nightly-7") as s:  # the same session, opened again
        assert s.stream(batches, resume=True).items == 3000
        top = s.top_k()
        assert s.info().items == 3000
    want_ids, _ = full_top(ref.entropy(ref.probs(x)), np.arange(3000), 15)
    np.testing.assert_array_equal(top.ids, want_ids)
    with pytest.raises(NotFound):
        client.get_session("nightly-7")  # a clean exit freed it


def test_reopening_a_session_with_another_spec_is_already_exists(client: Client) -> None:
    sid = client.create_session("margin", k=10, session_id="shared-id", temperature=2.0)
    assert client.create_session("margin", k=10, session_id=sid, temperature=2.0) == sid  # a retry: fine
    with pytest.raises(SessionExists, match=r"exists with strategy margin .*temperature 2.*k=10; this create asks for strategy margin .*k=20"):
        client.create_session("margin", k=20, session_id=sid, temperature=2.0)
    with pytest.raises(SessionExists, match="this create asks for strategy entropy"):
        client.create_session("entropy", k=10, session_id=sid)
    assert client.get_session(sid).k == 10
    client.delete_session(sid)


def test_limits_are_resource_exhausted(client: Client, rng: np.random.Generator) -> None:
    with pytest.raises(OverLimit, match="k: 20000 is over this server's limit of 10000"):
        client.create_session("entropy", k=20_000)
    with pytest.raises(BadBatch, match="k: must be > 0, got 0"):
        client.score_pool(np.zeros((3, 2), np.float32), "entropy", k=0)


def test_oversized_message_is_resource_exhausted(app) -> None:
    """Our client splits under the server's limit by itself; any other client gets the status."""
    import grpc
    from poolscore.client.tensors import fill
    from poolscore.v1 import scoring_pb2 as pb, scoring_pb2_grpc as pb_grpc

    req = pb.ScoreBatchRequest(strategy=pb.StrategySpec(name="entropy"))
    fill(req.logits, np.zeros((3_000_000, 1), np.float32))  # 12 MB > the server's 8
    with grpc.insecure_channel(app.target, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        with pytest.raises(grpc.RpcError) as err:
            pb_grpc.PoolScorerStub(channel).ScoreBatch(req)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize("call, message", [
    (lambda c: c.score_batch(np.zeros((4, 3), np.int32).astype(np.int64), "entropy"), r"batch 0: logits.dtype: int64 is not one of float16, bfloat16, float32, float64"),
    (lambda c: c.score_batch(np.zeros((4, 3, 2), np.float32), "entropy"), r"needs shape \[N, C\], got \[4, 3, 2\]"),
    (lambda c: c.score_batch(np.zeros((4, 3), np.float32), "entropi"), r"strategy: unknown 'entropi'"),
    (lambda c: c.score_batch(np.zeros((4, 3), np.float32), "entropy", ids=np.arange(5)), r"ids: 5 ids for 4 rows"),
    (lambda c: c.score_batch(np.zeros((4, 3), np.float32), "entropy", temperature=-1.0), r"strategy.temperature"),
    (lambda c: c.score_batch(np.zeros((4, 3), np.float32), "entropy", base=0.5), r"strategy.base: must be"),
])
def test_bad_inputs_are_invalid_argument_naming_the_field(client: Client, call, message: str) -> None:
    with pytest.raises(BadBatch, match=message):
        call(client)


def test_wrong_byte_count_names_the_field(app) -> None:
    from poolscore.v1 import scoring_pb2 as pb, scoring_pb2_grpc as pb_grpc
    import grpc

    req = pb.ScoreBatchRequest(strategy=pb.StrategySpec(name="entropy"),
                               logits=pb.Tensor(dtype=pb.FP32, shape=[4, 3], data=b"\0" * 40))
    with grpc.insecure_channel(app.target) as channel, pytest.raises(grpc.RpcError) as err:
        pb_grpc.PoolScorerStub(channel).ScoreBatch(req)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "batch 0: logits.data: 40 bytes, shape [4, 3] of FP32 needs 48"


def test_server_info_lists_strategies_device_and_limits(client: Client) -> None:
    info = client.info()
    shapes = {s.name: s.input_shape for s in info.strategies}
    assert shapes["bald"] == "[N, T, C]" and shapes["entropy"] == "[N, C]" and "random" in shapes
    assert info.device.startswith("cpu") and info.limits.max_k == 10_000 and info.version


def test_reflection_and_health_are_served(app) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with grpc.insecure_channel(app.target) as channel:
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
        assert {"poolscore.v1.PoolScorer", "grpc.health.v1.Health"} <= services
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="poolscore.v1.PoolScorer"))
        assert status.status == health_pb2.HealthCheckResponse.SERVING


def test_a_second_writer_never_makes_a_batch_vanish(client: Client, app, rng: np.random.Generator) -> None:
    """Two clients on one session: the one whose seq was taken gets SequenceGap, not a silent
    'already committed' ack; after a re-sync it goes on from the server's state."""
    from poolscore.client import SequenceGap

    x = rng.normal(size=(3, 5)).astype(np.float32)
    sid = client.create_session("entropy", k=5)
    with Client(app.target, timeout=60) as other:
        client.score(sid, x[:1], ids=[1])
        other.score(sid, x[1:2], ids=[2])
        with pytest.raises(SequenceGap, match="already committed.*by another writer"):
            client.score(sid, x[2:3], ids=[3])  # its cached seq 1 is other's batch
    assert sorted(client.top_k(sid).ids.tolist()) == [1, 2]
    assert client.score(sid, x[2:3], ids=[3]).items == 3  # asks the server for next_seq again
    assert sorted(client.top_k(sid).ids.tolist()) == [1, 2, 3]


def test_batches_fit_the_servers_message_limit_and_long_keys_count(rng: np.random.Generator) -> None:
    """The client splits under the smaller of its own and the server's limit, string keys included."""
    from poolscore.server.app import build_server
    from poolscore.server.config import ServeConfig

    app = build_server(ServeConfig(port=0, metrics_port=-1, device="cpu", compile="off",
                                   max_message_bytes=300_000)).start()
    try:
        x = rng.normal(size=(40_000, 10)).astype(np.float32)  # 1.6 MB, over the server's limit 5 times
        keys = [f"s3://bucket/images/{i:012d}-{'x' * 60}.jpg" for i in range(len(x))]  # ~100 B each
        with Client(app.target, timeout=60) as c:  # its own limits: the 64 MiB default
            assert c.batch_bytes < 300_000
            top = c.score_pool(x, "entropy", k=7)
            want_ids, _ = full_top(ref.entropy(ref.probs(x)), np.arange(len(x)), 7)
            np.testing.assert_array_equal(top.ids, want_ids)
            assert c.score_pool(x, "entropy", k=7, keys=keys).keys == [keys[i] for i in want_ids]
        with Client(app.target, timeout=60, max_message_bytes=200_000) as c:  # the client's limit is smaller
            assert c.score_pool(x, "entropy", k=7, keys=keys).keys == [keys[i] for i in want_ids]
    finally:
        app.stop()


def test_a_bad_row_in_a_split_array_is_told_where_it_sits_in_the_array(client: Client, rng: np.random.Generator) -> None:
    x = rng.normal(size=(20_000, 4)).astype(np.float32)  # 320 KB: five requests of 64 KiB
    x[15_000, 2] = np.nan
    step = client.batch_bytes // 16
    first = 15_000 // step * step
    with pytest.raises(BadBatch, match=rf"NaN in row {15_000 - first} \(this request held rows {first}\.\."):
        client.score_batch(x, "entropy")


def test_an_empty_batch_fits_a_keyed_session_and_empty_ids_are_ints(client: Client) -> None:
    with client.session("entropy", k=3) as s:
        s.score(np.eye(2, 3, dtype=np.float32), keys=["a", "b"])
        assert s.score(np.empty((0, 3), np.float32), keys=[]).items == 2
        s.stream([([], np.empty((0, 3), np.float32)), (["c"], np.ones((1, 3), np.float32))])
        assert sorted(s.top_k().keys) == ["a", "b", "c"]
    assert client.score_batch(np.empty((0, 3), np.float32), "entropy", ids=[]).shape == (0,)


def test_resuming_at_once_after_a_broken_stream_is_no_second_writer(client: Client, rng: np.random.Generator) -> None:
    """The broken call may still commit what the server had received when the resume asks
    for next_seq: those replayed acks are the resume's to expect, not another writer's."""
    batches = [Batch(rng.normal(size=(20_000, 10)).astype(np.float32), np.arange(i * 20_000, (i + 1) * 20_000))
               for i in range(8)]

    def crashing():
        yield from batches[:5]
        raise RuntimeError("reader died")

    for _ in range(3):
        with client.session("entropy", k=5) as s:
            with pytest.raises(RuntimeError, match="reader died"):
                s.stream(crashing())
            assert s.stream(batches, resume=True).items == 160_000
