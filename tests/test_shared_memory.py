"""Shared memory between a client and a real server process on this host: register, score,
unregister; bad offsets and sizes; another principal's region; a client killed mid-pool."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from poolscore.client import Client, PoolscoreError
from poolscore.client import shared_memory
from poolscore.client.pools import Batch
from poolscore.client.shared_memory import Ring
from poolscore.client.wire import SCORE_REQUEST
from poolscore.v1 import scoring_pb2 as pb

ALICE, BOB = "alice-token-0123456789", "bob-token-0123456789"


class Server:
    """`poolscore serve` in its own process, two principals, regions idle for 2 s unmapped."""

    def __init__(self, tmp: Path) -> None:
        tokens = tmp / "tokens"
        tokens.write_text(f"alice {ALICE}\nbob {BOB}\n")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "poolscore.client.cli", "serve", "--port", "0", "--metrics-port", "-1",
             "--compile", "off", "--tokens-file", str(tokens), "--shm-idle-s", "2"],
            stderr=subprocess.PIPE, text=True, env={**os.environ, "POOLSCORE_DEVICE": "cpu"})
        line = ""
        for line in self.proc.stderr:
            if "listening on" in line:
                break
        found = re.search(r"listening on [\d.]+:(\d+)", line)
        assert found, f"no 'listening on' line; last: {line!r}"
        self.target = f"127.0.0.1:{found.group(1)}"
        with Client(self.target, token=ALICE) as c:
            c.wait_ready(timeout=60)

    def mapped(self, key: str) -> bool:
        return key in Path(f"/proc/{self.proc.pid}/maps").read_text()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("shm"))
    yield s
    s.stop()


def pool(n: int, c: int = 10, seed: int = 3) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(0, 2, (n, c)).astype(np.float32)
    logits[::9] = logits[2]  # ties: the id decides
    return logits


def status(client: Client, code: grpc.StatusCode, call):
    with pytest.raises(PoolscoreError) as caught:
        call()
    assert caught.value.code == code, caught.value
    return str(caught.value)


def ours() -> list[str]:
    return [n for n in os.listdir("/dev/shm") if n.startswith(f"poolscore-{os.getpid()}-")]


@pytest.mark.parametrize("strategy, shape, options", [("entropy", (60_000, 10), {}), ("margin", (20_000, 300), {}),
                                                      ("bald", (20_000, 8, 5), {}),
                                                      ("entropy", (60_000, 10), {"wire_dtype": "float16"})])
def test_a_pool_through_shared_memory_equals_the_bytes_path(server, monkeypatch, strategy, shape, options) -> None:
    """A small ring (256 KiB), so it wraps many times: a batch written over before it was scored would show."""
    monkeypatch.setattr(shared_memory, "RING_BYTES", 256 * 1024)
    logits = np.random.default_rng(4).normal(0, 2, shape).astype(np.float32)
    ids = np.random.default_rng(5).permutation(10 * shape[0])[:shape[0]]
    with Client(server.target, token=ALICE, shared_memory=False, **options) as plain:
        want = plain.score_pool(logits, strategy, k=200, ids=ids)
    with Client(server.target, token=ALICE, shared_memory=True, **options) as c:
        got = c.score_pool(logits, strategy, k=200, ids=ids)
    assert got == want and got.items == shape[0]
    assert ours() == []  # the segment's name went as soon as the server had mapped it


def regions(c: Client) -> list[str]:
    return [r.name for r in c._call(c._stub.SharedMemoryStatus, pb.SharedMemoryStatusRequest()).regions]


def test_wait_ready_makes_the_ring_the_first_pool_then_takes(server) -> None:
    """wait_ready on a local server registers a ring, kept for the first call (which then pays
    no segment set-up); with shared memory off it makes none; a second wait_ready keeps the one."""
    with Client(server.target, token=ALICE) as c:
        c.wait_ready()
        [made] = regions(c)
        assert server.mapped(made)
        c.score_pool(pool(5000), "margin", k=3)
        c.wait_ready()
        assert regions(c) == [made]  # the first pool took that ring and gave it back; no second one
    with Client(server.target, token=ALICE, shared_memory=False) as plain:
        plain.wait_ready()
        assert regions(plain) == []


def test_a_clients_calls_reuse_its_ring_and_a_failed_call_drops_it(server) -> None:
    """A ring stays registered between a client's calls (its pages faulted in once); a call that
    fails unregisters its ring, and closing the client unregisters the rest."""
    with Client(server.target, token=ALICE) as c:
        with shared_memory.ring_for(c, None) as probe:  # a local target: used by itself
            assert isinstance(probe, Ring)
        assert regions(c) == [probe.key]
        first = c.score_pool(pool(50_000), "entropy", k=5)
        assert regions(c) == [probe.key]  # the idle ring was taken again
        assert c.score_pool(pool(50_000), "entropy", k=5) == first and regions(c) == [probe.key]
        bad = pool(1000)
        bad[500, 3] = np.nan
        with pytest.raises(PoolscoreError, match="NaN in row 500"):
            c.score_pool(bad, "entropy", k=5)
        assert regions(c) == []  # the failed call's ring is gone, not reused
        assert c.score_pool(pool(50_000), "entropy", k=5) == first
        [again] = regions(c)
        assert again != probe.key and server.mapped(again)
    with Client(server.target, token=ALICE) as other:
        assert regions(other) == [] and not server.mapped(again)  # the first client's close unregistered it


def test_a_kept_ring_the_server_dropped_is_replaced(server) -> None:
    """A server restarted (or its idle sweep) forgets a client's kept ring: the next call
    registers a new one instead of failing on the old name."""
    with Client(server.target, token=ALICE) as c:
        first = c.score_pool(pool(20_000), "margin", k=5)
        [kept] = regions(c)
        c._call(c._stub.UnregisterSharedMemory, pb.UnregisterSharedMemoryRequest(name=kept))  # as a restart does
        assert c.score_pool(pool(20_000), "margin", k=5) == first
        [new] = regions(c)
        assert new != kept


def test_a_shared_array_is_scored_where_it_lies_with_no_copy(server) -> None:
    """client.shared_array: its batches go as references into its own region (the ring takes
    none of their bytes), the scores those of the bytes path; the server reads the memory as it
    is at each call, so refilling the array scores the new values."""
    logits = pool(60_000)
    with Client(server.target, token=ALICE, shared_memory=False) as plain, Client(server.target, token=ALICE) as c:
        c.wait_ready()
        [ring] = regions(c)
        shared = c.shared_array(logits.shape)
        assert shared.dtype == np.float32 and not shared.any()
        shared[:] = logits
        assert c.score_pool(shared, "entropy", k=100, ids=np.arange(60_000) * 3) == plain.score_pool(
            logits, "entropy", k=100, ids=np.arange(60_000) * 3)
        assert c._rings._idle[0].pos == 60_000 * 8  # only the ids went through the ring
        [array_region] = set(regions(c)) - {ring}
        assert server.mapped(array_region)
        shared[:] = pool(60_000, seed=9)
        assert c.score_pool(shared[:50_000], "margin", k=7) == plain.score_pool(pool(60_000, seed=9)[:50_000], "margin", k=7)


def test_any_view_of_a_shared_array_scores_as_its_bytes(server) -> None:
    """Any row range, stride and column slice of a shared array (contiguous ones sent as they lie,
    the rest copied into the ring): the top-K of the same values sent as bytes."""
    with Client(server.target, token=ALICE) as c, Client(server.target, token=ALICE, shared_memory=False) as plain:
        shared = c.shared_array((30_000, 12))
        shared[:] = pool(30_000, c=12, seed=11)

        @settings(max_examples=25, deadline=None)
        @given(lo=st.integers(0, 29_999), length=st.integers(1, 30_000), step=st.sampled_from([1, 1, 2, 7]),
               cols=st.sampled_from([12, 12, 5]), strategy=st.sampled_from(["entropy", "margin", "least_confidence"]))
        def scored_alike(lo, length, step, cols, strategy) -> None:
            view = shared[lo:lo + length:step, :cols]
            assert c.score_pool(view, strategy, k=50) == plain.score_pool(np.array(view), strategy, k=50)

        scored_alike()


def test_a_shared_array_that_cannot_go_as_it_lies_is_copied(server) -> None:
    """A strided view, or a wire dtype that narrows it: copied into the ring, scored the same."""
    logits = pool(20_000, c=12)
    with Client(server.target, token=ALICE, shared_memory=False) as plain, Client(server.target, token=ALICE) as c:
        shared = c.shared_array(logits.shape)
        shared[:] = logits
        assert c.score_pool(shared[:, :6], "entropy", k=9) == plain.score_pool(logits[:, :6], "entropy", k=9)
        assert c._rings._idle[0].pos >= 20_000 * 6 * 4
    with Client(server.target, token=ALICE, shared_memory=False, wire_dtype="float16") as plain, \
            Client(server.target, token=ALICE, wire_dtype="float16") as c:
        shared = c.shared_array(logits.shape)
        shared[:] = logits
        assert c.score_pool(shared, "least_confidence", k=9) == plain.score_pool(logits, "least_confidence", k=9)
        assert c._rings._idle[0].pos >= 20_000 * 12 * 2


def test_a_shared_array_the_server_lost_is_registered_again(server) -> None:
    """The server unmapped it (a restart, or idle for --shm-idle-s): its name is still under
    /dev/shm, so the next call maps it again instead of failing on the old name."""
    logits = pool(30_000)
    with Client(server.target, token=ALICE) as c:
        shared = c.shared_array(logits.shape)
        shared[:] = logits
        first = c.score_pool(shared, "ratio", k=5)
        [name] = [n for n in regions(c) if n in ours()]
        c._call(c._stub.UnregisterSharedMemory, pb.UnregisterSharedMemoryRequest(name=name))  # as a restart does
        assert c.score_pool(shared, "ratio", k=5) == first
        assert name in regions(c) and server.mapped(name)
        time.sleep(2.5)  # past the server's --shm-idle-s of 2: its sweep unmaps the region
        assert c.score_pool(shared, "ratio", k=5) == first


def test_a_freed_dropped_or_closed_shared_array_leaves_nothing(server) -> None:
    """free() unregisters the region and unlinks the name (the array stays readable here); an
    array dropped unfreed unlinks its name when collected; close() frees the rest."""
    import gc

    with Client(server.target, token=ALICE) as c:
        kept, dropped, left = (c.shared_array((1000, 4)) for _ in range(3))
        kept[:] = 1.5
        for a in (kept, dropped, left):
            c.score_pool(a, "entropy", k=3)
        assert len(ours()) == 3 and len(regions(c)) == 4  # and the ring
        c.free(kept)
        assert len(ours()) == 2 and float(kept.sum()) == 6000.0
        with pytest.raises(ValueError, match="not a shared array"):
            c.free(kept)
        del dropped
        gc.collect()
        assert len(ours()) == 1
        c.score_pool(left, "entropy", k=3)  # the next call unregisters the collected array's region
        assert len(regions(c)) == 2
    assert ours() == []
    with Client(server.target, token=ALICE) as other:
        assert regions(other) == []


def test_register_score_and_unregister(server) -> None:
    with Client(server.target, token=ALICE, shared_memory=False) as c:  # score_pool's own rings left out
        ring = Ring(c._stub, 30, size=1 << 20)
        listed = c._call(c._stub.SharedMemoryStatus, pb.SharedMemoryStatusRequest()).regions
        assert [(r.name, r.byte_size) for r in listed] == [(ring.key, 1 << 20)] and server.mapped(ring.key)
        logits = pool(5000)
        head = pb.ScoreRequest(strategy=pb.StrategySpec(name="least_confidence"), k=7).SerializeToString()
        req = ring.encode(pb.ScoreRequest(), Batch(logits), SCORE_REQUEST)
        assert len(req) < 200  # 200 KB of logits, sent as a reference
        top = c._score_pool(iter([head, req]), timeout=30)
        assert list(top.ids) == list(c.score_pool(logits, "least_confidence", k=7, ).ids) and top.items == 5000
        assert ring.released() == ring.pos  # the server published that it is done with the bytes
        ring.close()
        assert not c._call(c._stub.SharedMemoryStatus, pb.SharedMemoryStatusRequest()).regions
        assert not server.mapped(ring.key)
        with pytest.raises(grpc.RpcError) as gone:  # its refs now name no region
            c._score_pool(iter([head, req]), timeout=30)
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND and ring.key in gone.value.details()


def hand_ref(ring: Ring, offset: int, nbytes: int, shape: tuple, data: bytes = b"") -> bytes:
    """A logits tensor whose ref says what the caller wants, right or wrong."""
    t = pb.Tensor(dtype=pb.FP32, shape=list(shape), data=data,
                  shm=pb.SharedMemoryRef(region=ring.key, offset=offset, byte_size=nbytes))
    return pb.ScoreRequest(logits=t).SerializeToString()


@pytest.mark.parametrize("offset, nbytes, shape, says", [
    ((1 << 20) - 100, 400, (10, 10), "logits.shm: [1048476, 1048876) is outside region"),
    (-64, 400, (10, 10), "is outside region"),
    (64, 396, (10, 10), "logits.data: 396 bytes, shape [10, 10] of FP32 needs 400"),
    (64, 400, (10, 10, "and bytes"), "logits.shm: data and shm are both set"),
])
def test_a_bad_offset_or_size_is_invalid_argument_and_the_session_stays(server, offset, nbytes, shape, says) -> None:
    with Client(server.target, token=ALICE) as c, c.session("entropy", k=5) as session:
        ring = Ring(c._stub, 30, size=1 << 20)
        try:
            session.score(pool(50))
            before = c.get_session(session.id)
            data = b"\0" * 400 if shape[-1] == "and bytes" else b""
            ref = hand_ref(ring, offset, nbytes, shape[:2] if data else shape, data)
            call = lambda: list(c._score(iter([pb.ScoreRequest(session_id=session.id, seq=1).SerializeToString()  # noqa: E731
                                               + ref]), timeout=30))
            with pytest.raises(grpc.RpcError) as bad:
                call()
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT and says in bad.value.details()
            after = c.get_session(session.id)
            assert (after.next_seq, after.items) == (before.next_seq, before.items) == (1, 50)
        finally:
            ring.close()


def test_another_principals_region_is_not_found(server) -> None:
    with Client(server.target, token=ALICE) as alice, Client(server.target, token=BOB) as bob:
        ring = Ring(alice._stub, 30, size=1 << 20)
        try:
            assert not bob._call(bob._stub.SharedMemoryStatus, pb.SharedMemoryStatusRequest()).regions
            head = pb.ScoreRequest(strategy=pb.StrategySpec(name="entropy"), k=3).SerializeToString()
            with pytest.raises(grpc.RpcError) as theirs:
                bob._score_pool(iter([head, hand_ref(ring, 64, 400, (10, 10))]), timeout=30)
            assert theirs.value.code() == grpc.StatusCode.NOT_FOUND
            status(bob, grpc.StatusCode.NOT_FOUND, lambda: bob._call(
                bob._stub.UnregisterSharedMemory, pb.UnregisterSharedMemoryRequest(name=ring.key)))
            assert server.mapped(ring.key)  # Bob's attempt freed nothing of Alice's
        finally:
            ring.close()


def test_only_poolscore_segments_are_mapped(server, tmp_path) -> None:
    with Client(server.target, token=ALICE) as c:
        register = lambda key: c._call(c._stub.RegisterSharedMemory, pb.RegisterSharedMemoryRequest(  # noqa: E731
            name="x", key=key, byte_size=4096))
        assert "is not a segment name" in status(c, grpc.StatusCode.INVALID_ARGUMENT, lambda: register("../etc/passwd"))
        assert "is not a segment name" in status(c, grpc.StatusCode.INVALID_ARGUMENT, lambda: register("sem.other"))
        assert "none on this server's host" in status(c, grpc.StatusCode.NOT_FOUND,
                                                      lambda: register("poolscore-absent-0"))
        target = tmp_path / "victim"
        target.write_bytes(b"\0" * 8192)
        link = Path(f"/dev/shm/poolscore-{os.getpid()}-link")
        link.symlink_to(target)
        try:
            assert "cannot be mapped" in status(c, grpc.StatusCode.INVALID_ARGUMENT, lambda: register(link.name))
        finally:
            link.unlink()
        assert target.read_bytes() == b"\0" * 8192
        long_name = pb.RegisterSharedMemoryRequest(name="n" * 257, key="poolscore-absent-0", byte_size=4096)
        assert "1 to 256 characters" in status(c, grpc.StatusCode.INVALID_ARGUMENT, lambda: c._call(
            c._stub.RegisterSharedMemory, long_name))


CRASHING = """
import sys, numpy as np
from poolscore.client import Client
def pool():
    x = np.ones((20000, 10), np.float32)
    n = 0
    while True:
        n += 1
        if n == 20:
            print("streaming", flush=True)
        yield (np.arange(n * 20000, (n + 1) * 20000), x)
with Client(sys.argv[1], token=sys.argv[2], shared_memory=True) as c:
    c.score_pool(pool(), "entropy", k=5)
"""


def test_a_client_killed_mid_pool_leaks_nothing(server, tmp_path) -> None:
    script = tmp_path / "crash.py"
    script.write_text(CRASHING)
    child = subprocess.Popen([sys.executable, str(script), server.target, BOB], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "streaming"
    with Client(server.target, token=BOB) as bob:
        regions = bob._call(bob._stub.SharedMemoryStatus, pb.SharedMemoryStatusRequest()).regions
        assert len(regions) == 1 and regions[0].key.startswith(f"poolscore-{child.pid}-")
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"poolscore-{child.pid}-")]  # no name left
        deadline = time.monotonic() + 30
        while bob._call(bob._stub.SharedMemoryStatus, pb.SharedMemoryStatusRequest()).regions:  # the 2 s idle limit
            assert time.monotonic() < deadline, "the dead client's region was never unmapped"
            time.sleep(0.2)
        deadline = time.monotonic() + 30
        while server.mapped(regions[0].key):  # the last view of it goes with the cancelled stream's requests
            assert time.monotonic() < deadline, "the region is still mapped in the server"
            time.sleep(0.2)
        assert bob.score_pool(pool(100), "entropy", k=3).items == 100


def test_a_server_without_shared_memory_gets_bytes() -> None:
    from poolscore.server.app import build_server
    from poolscore.server.config import ServeConfig

    app = build_server(ServeConfig(port=0, metrics_port=-1, device="cpu", compile="off", shm=False)).start()
    try:
        with Client(app.target) as c:
            assert not c.info().shared_memory.enabled
            with shared_memory.ring_for(c, None) as ring:
                assert ring is None
            assert c.score_pool(pool(1000), "margin", k=4) == Client(app.target, shared_memory=False).score_pool(
                pool(1000), "margin", k=4)
        with Client(app.target, shared_memory=True) as forced:
            status(forced, grpc.StatusCode.FAILED_PRECONDITION, lambda: forced.score_pool(pool(10), "margin", k=2))
    finally:
        app.stop(None)


def test_a_shared_array_the_server_will_not_map_is_copied_with_one_warning(caplog) -> None:
    """--shm-max-regions 1: the ring takes the one region, so the shared array's registration is
    refused (RESOURCE_EXHAUSTED): its batches are copied into the ring, the scores the same, said
    once a call; and a server without shared memory gets a shared array's bytes."""
    import logging

    from poolscore.server.app import build_server
    from poolscore.server.config import ServeConfig

    logits = pool(1_000_000)  # 40 MB: more than one batch of a shared array (half the ring)
    for shm in (True, False):
        app = build_server(ServeConfig(port=0, metrics_port=-1, device="cpu", compile="off", warm="",
                                       shm=shm, shm_max_regions=1)).start()
        try:
            with Client(app.target) as c, Client(app.target, shared_memory=False) as plain:
                shared = c.shared_array(logits.shape)
                shared[:] = logits
                caplog.clear()
                with caplog.at_level(logging.WARNING, logger="poolscore.client"):
                    assert c.score_pool(shared, "entropy", k=20) == plain.score_pool(logits, "entropy", k=20)
                refused = [r for r in caplog.records if "not mapped" in r.getMessage()]
                assert len(refused) == (1 if shm else 0)
                if shm:
                    ring = c._rings._idle[0]
                    assert ring.pos >= logits.nbytes and logits.nbytes > ring.capacity // 2  # copied, batch by batch
        finally:
            app.stop(None)


def test_a_ring_fits_what_dev_shm_has_free() -> None:
    """A container's /dev/shm is often 64 MiB: the ring takes at most half of what is free
    (and its pages are reserved, so a full tmpfs is an error at creation, not a SIGBUS)."""
    fs = os.statvfs("/dev/shm")
    size = shared_memory._fitting(1 << 60)
    assert 4 << 20 <= size <= fs.f_bavail * fs.f_frsize // 2 and size % (1 << 20) == 0
    assert shared_memory._fitting(256 * 1024) == 256 * 1024  # a small ring asked for: as asked
