"""--token: every RPC but health and reflection needs the bearer token, else UNAUTHENTICATED."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from typing import Iterator

import grpc
import numpy as np
import pytest

from poolscore.client import Client, Unauthenticated
from poolscore.server.app import build_server
from poolscore.server.config import ServeConfig

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def guarded() -> Iterator:
    app = build_server(ServeConfig(port=0, metrics_port=0, device="cpu", compile="off", token=TOKEN,
                                   auth_failures=10_000)).start()  # these tests fail on purpose, from one peer
    yield app
    app.stop(grace=None)


def test_calls_without_the_token_are_unauthenticated_and_change_nothing(guarded) -> None:
    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    with Client(guarded.target, token=TOKEN, timeout=30) as ok:
        sid = ok.create_session("entropy", k=3)
        ok.score(sid, x)
        before = ok.top_k(sid)
        for token in (None, "wrong", TOKEN + "x"):
            with Client(guarded.target, token=token, timeout=30) as bad:
                bad.wait_ready()  # health stays open: Kubernetes probes carry no token
                for call in (bad.info, lambda: bad.score_batch(x), lambda: bad.score_pool(x, k=3),
                             lambda: bad.score(sid, x), lambda: bad.top_k(sid), lambda: bad.delete_session(sid)):
                    with pytest.raises(Unauthenticated, match="no valid token"):
                        call()
        assert ok.top_k(sid) == before and ok.get_session(sid).items == 50
        assert len(ok.score_pool(x, k=3)) == 3


def test_reflection_stays_open(guarded) -> None:
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with grpc.insecure_channel(guarded.target) as channel:
        assert "poolscore.v1.PoolScorer" in set(ProtoReflectionDescriptorDatabase(channel).get_services())


def test_denied_calls_are_counted_by_code(guarded) -> None:
    with Client(guarded.target, timeout=30) as bad:
        with pytest.raises(Unauthenticated):
            bad.info()
    with urllib.request.urlopen(f"http://127.0.0.1:{guarded.metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    counted = [line for line in text.splitlines() if line.startswith('poolscore_errors_total{code="UNAUTHENTICATED"}')]
    assert counted and float(counted[0].split()[-1]) >= 1


def test_the_cli_reads_the_token_from_the_environment(guarded) -> None:
    cli = [sys.executable, "-m", "poolscore.client.cli", "info", "--target", guarded.target]
    env = {k: v for k, v in os.environ.items() if k != "POOLSCORE_TOKEN"}
    ok = subprocess.run(cli, capture_output=True, text=True, timeout=120, env={**env, "POOLSCORE_TOKEN": TOKEN})
    assert ok.returncode == 0 and "limits:" in ok.stdout
    denied = subprocess.run(cli, capture_output=True, text=True, timeout=120, env=env)
    assert denied.returncode == 2 and "no valid token" in denied.stderr and "Traceback" not in denied.stderr


def test_the_bearer_scheme_is_case_insensitive_and_any_header_may_carry_it(guarded) -> None:
    from poolscore.v1 import scoring_pb2 as pb, scoring_pb2_grpc as pb_grpc

    with grpc.insecure_channel(guarded.target) as channel:
        info = pb_grpc.PoolScorerStub(channel).ServerInfo
        for metadata in ([("authorization", f"bearer {TOKEN}")], [("authorization", f"BEARER  {TOKEN} ")],
                         [("authorization", "Bearer wrong"), ("authorization", f"Bearer {TOKEN}")]):
            assert info(pb.ServerInfoRequest(), metadata=metadata).version
        for metadata in ([("authorization", TOKEN)], [("authorization", f"Basic {TOKEN}")], [("x-token", TOKEN)]):
            with pytest.raises(grpc.RpcError) as err:
                info(pb.ServerInfoRequest(), metadata=metadata)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_peer_that_fails_too_often_waits_even_with_the_right_token() -> None:
    app = build_server(ServeConfig(port=0, metrics_port=0, device="cpu", compile="off", token=TOKEN,
                                   auth_failures=5)).start()
    try:
        with Client(app.target, token="guess", retry_s=0) as bad, Client(app.target, token=TOKEN, retry_s=0) as ok:
            assert ok.info().version  # before: fine
            for _ in range(5):
                with pytest.raises(Unauthenticated, match="no valid token"):
                    bad.info()
            with pytest.raises(Unauthenticated, match=r"too many failed authentications from ipv4:127\.0\.0\.1; retry in"):
                bad.info()
            with pytest.raises(Unauthenticated, match="too many failed authentications"):
                ok.info()  # the same peer: a right guess now would not be told apart
            bad.wait_ready()  # health stays open meanwhile
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # one more try comes back within a second
                try:
                    assert ok.info().version
                    break
                except Unauthenticated:
                    time.sleep(0.1)
            else:
                raise AssertionError("the peer was never let back in")
        with urllib.request.urlopen(f"http://127.0.0.1:{app.metrics_port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
        counts = {reason: float(re.search(rf'poolscore_auth_failures_total{{reason="{reason}"}} (\S+)', text).group(1))
                  for reason in ("bad_token", "rate_limited")}
        print(f"\nrefused: {counts}")
        assert counts["bad_token"] == 5 and counts["rate_limited"] >= 2
    finally:
        app.stop(grace=None)


def test_a_tokens_file_filled_later_is_enforced_at_its_reload(tmp_path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# none yet\n")
    app = build_server(ServeConfig(port=0, metrics_port=-1, device="cpu", compile="off", tokens_file=str(tokens))).start()
    try:
        with Client(app.target, retry_s=0) as anonymous, Client(app.target, token="tok-a", retry_s=0) as a:
            assert anonymous.info().version  # no tokens: open
            tokens.write_text("team-a tok-a\n")
            app.principals.reload()  # what SIGHUP does
            with pytest.raises(Unauthenticated):
                anonymous.info()
            assert a.info().version
    finally:
        app.stop()
