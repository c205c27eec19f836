"""Three real server processes serve one pool: the merged top-K equals one server's, also when
a replica is killed mid-pool. The replicas listen on 127.0.0.1, .2 and .3 at one port, as the
pods behind a headless Service do."""
from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from poolscore.client import Client, NotFound, score_pool_sharded, sharding
from poolscore.client.replicas import replica_for, targets_of

SERVE = [sys.executable, "-m", "poolscore.client.cli", "serve", "--metrics-port", "-1", "--compile", "off"]


class Replica:
    """`poolscore serve` in a process of its own, on `host`:`port` (0: a free one)."""

    def __init__(self, host: str, port: int = 0) -> None:
        self.proc = subprocess.Popen([*SERVE, "--host", host, "--port", str(port)], stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "POOLSCORE_DEVICE": "cpu"})
        line = ""
        for line in self.proc.stderr:
            if "listening on" in line:
                break
        found = re.search(r"listening on [\d.]+:(\d+)", line)
        assert found, f"no 'listening on' line from {host}; last line: {line!r}"
        self.port = int(found.group(1))
        self.target = f"{host}:{self.port}"
        with Client(self.target) as c:
            c.wait_ready(timeout=60)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)  # no drain: as a node lost, or an OOM kill
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def start_three() -> list[Replica]:
    first = Replica("127.0.0.1")
    return [first, Replica("127.0.0.2", first.port), Replica("127.0.0.3", first.port)]


@pytest.fixture(scope="module")
def three():
    replicas = start_three()
    yield replicas
    for r in replicas:
        r.stop()


def pool(n: int, classes: int = 10, seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, classes)).astype(np.float32)
    logits[::7] = logits[3]  # ties across replicas: the id decides
    return logits


def test_three_replicas_give_one_servers_top_k(three) -> None:
    logits = pool(120_000)
    with Client(three[0].target) as one:
        expected = one.score_pool(logits, "margin", k=500)
    with Client([r.target for r in three], batch_bytes=64 * 1024) as many:
        assert len(many.replicas) == 3
        got = many.score_pool(logits, "margin", k=500)
    assert got == expected and got.items == 120_000


def test_a_dns_name_finds_every_replica(three, monkeypatch) -> None:
    """A headless Service's name resolves to every ready pod; here the resolver answers as its DNS would."""
    answer = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (f"127.0.0.{i}", three[0].port)) for i in (3, 1, 2)]
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, **kw: answer if host == "poolscore-headless" else [])
    found, name = targets_of(f"dns:///poolscore-headless:{three[0].port}")
    assert found == sorted(r.target for r in three) and name == "poolscore-headless"
    logits = pool(20_000, seed=6)
    with Client(f"dns:///poolscore-headless:{three[0].port}", batch_bytes=64 * 1024) as many:
        got = many.score_pool(logits, "entropy", k=50)
    with Client(three[1].target) as one:
        assert got == one.score_pool(logits, "entropy", k=50)


def test_targets_as_a_list_a_string_or_one_server() -> None:
    assert targets_of(["b:2", "a:1"]) == (["a:1", "b:2"], None)
    assert targets_of("b:2, a:1") == (["a:1", "b:2"], None)
    assert targets_of("127.0.0.1:5") == (["127.0.0.1:5"], None) == targets_of(["127.0.0.1:5"])
    assert targets_of("dns:///localhost:5")[0] in (["dns:///localhost:5"], ["127.0.0.1:5", "[::1]:5"])
    with Client(["127.0.0.1:5"]) as one:
        assert one.replicas == [] and one.target == "127.0.0.1:5"
    with pytest.raises(ValueError, match="names a host and its port"):
        targets_of("dns:///poolscore")
    with pytest.raises(ValueError, match="no target"):
        targets_of([])


def test_sessions_live_on_the_replica_their_id_picks(three) -> None:
    with Client([r.target for r in three]) as many:
        sids = [many.create_session("entropy", k=3) for _ in range(12)]
        for sid in sids:
            many.score(sid, pool(10, seed=len(sid)))
            assert many.top_k(sid).items == 10
            home = replica_for(many.replicas, sid)
            assert home.get_session(sid).items == 10  # on its replica, and on no other
            for other in (r for r in many.replicas if r is not home):
                with pytest.raises(NotFound):
                    other.get_session(sid)
        assert len({replica_for(many.replicas, s).target for s in sids}) > 1, "12 sessions spread over replicas"
        for sid in sids:
            many.delete_session(sid)


@pytest.mark.parametrize("kill_at", [60_000, 170_000])  # rows handed out when one replica is killed
def test_a_replica_killed_mid_pool_leaves_the_result_exact(monkeypatch, caplog, kill_at: int) -> None:
    monkeypatch.setattr(sharding, "SNAPSHOT_ROWS", 6_000)  # snapshots mid-pool: some of its work is kept
    logits = pool(200_000, seed=9)
    replicas = start_three()
    try:
        with Client(replicas[0].target) as one:
            expected = one.score_pool(logits, "least_confidence", k=400)
        sent = []

        def progress(rows: int) -> None:
            sent.append(rows)
            if sum(sent) >= kill_at:
                replicas[1].kill()

        with caplog.at_level(logging.WARNING, "poolscore.client"), \
                Client([r.target for r in replicas], batch_bytes=64 * 1024, failover_s=1.0) as many:
            got = many.score_pool(logits, "least_confidence", k=400, progress=progress)
        assert replicas[1].proc.returncode == -signal.SIGKILL
        lost = [r.message for r in caplog.records if "failed mid-pool" in r.message and replicas[1].target in r.message]
        assert len(lost) == 1
        redone = int(re.search(r"its (\d+) unsnapshotted rows", lost[0]).group(1))
        assert 0 < redone < kill_at / 3, "snapshots kept most of the killed replica's work"
        assert got == expected and got.items == 200_000
    finally:
        for r in replicas:
            r.stop()


def test_no_replica_answering_is_an_error_that_names_them() -> None:
    closed = []
    for _ in range(2):
        with socket.socket() as s:  # a port just freed: nothing listens there
            s.bind(("127.0.0.1", 0))
            closed.append(f"127.0.0.1:{s.getsockname()[1]}")
    with pytest.raises(ConnectionError, match="no replica answered") as err:
        score_pool_sharded(closed, pool(100), "entropy", k=5, failover_s=0.2)
    assert all(t in str(err.value) for t in closed)


def test_the_cli_spreads_a_pool_over_comma_separated_targets(three, tmp_path) -> None:
    logits = pool(30_000, seed=11)
    np.save(tmp_path / "pool.npy", logits)
    done = subprocess.run([sys.executable, "-m", "poolscore.client.cli", "score", str(tmp_path / "pool.npy"), "-k", "5",
                           "--strategy", "margin", "--target", ",".join(r.target for r in three), "--out",
                           str(tmp_path / "top.csv")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with Client(three[2].target) as one:
        expected = one.score_pool(logits, "margin", k=5)
    rows = (tmp_path / "top.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[1]) for r in rows] == expected.ids.tolist()
