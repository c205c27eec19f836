"""--uds PATH: the same server on a Unix domain socket (Client("unix:PATH")), beside its TCP port;
a socket file left by a killed server does not stop the next one."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from poolscore.client import Client, Unauthenticated
from poolscore.server.app import build_server
from poolscore.server.config import ServeConfig


def test_a_unix_socket_serves_the_same_calls_with_the_same_auth(tmp_path: Path) -> None:
    sock = tmp_path / "poolscore.sock"
    sock.write_text("a stale file where the socket goes")  # as a SIGKILLed server leaves it
    app = build_server(ServeConfig(port=0, metrics_port=-1, device="cpu", compile="off", uds=str(sock),
                                   token="tk")).start()
    try:
        assert sock.is_socket()
        z = np.random.default_rng(0).normal(size=(500, 4)).astype(np.float32)
        with Client(f"unix:{sock}", token="tk") as local, Client(app.target, token="tk") as tcp:
            assert local.score_pool(z, "entropy", k=7) == tcp.score_pool(z, "entropy", k=7)
            sid = local.create_session("margin", k=3)
            assert tcp.get_session(sid).session_id == sid  # one server: the same sessions either way
        with Client(f"unix:{sock}", retry_s=0) as anonymous, pytest.raises(Unauthenticated):
            anonymous.info()
    finally:
        app.stop()
