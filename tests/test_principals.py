"""Principals: each token in --tokens-file is one; a session is its creator's alone (another
principal gets NOT_FOUND, and its ids are its own namespace); the file is re-read on reload."""
from __future__ import annotations

import numpy as np
import pytest

from poolscore.client import Client, NotFound, Unauthenticated
from poolscore.server.app import build_server
from poolscore.server.config import ServeConfig


@pytest.fixture
def served(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("# principal token\nteam-a tok-a\nteam-b tok-b\n")
    app = build_server(ServeConfig(port=0, metrics_port=-1, device="cpu", compile="off",
                                   tokens_file=str(tokens))).start()
    yield app, tokens
    app.stop(grace=None)


def test_a_session_is_its_creators_alone(served):
    app, _ = served
    z = np.random.default_rng(0).normal(size=(30, 3)).astype(np.float32)
    with Client(app.target, token="tok-a") as a, Client(app.target, token="tok-b") as b:
        a.wait_ready(timeout=10)
        sid = a.create_session("entropy", k=4, session_id="team-a-nightly")
        a.score(sid, z)
        for call in (lambda: b.top_k(sid), lambda: b.get_session(sid), lambda: b.delete_session(sid),
                     lambda: b.score(sid, z)):
            with pytest.raises(NotFound):
                call()
        mine = b.create_session("margin", k=2, session_id="team-a-nightly")  # b's own namespace: no conflict
        assert mine == sid and b.get_session(mine).items == 0
        assert a.get_session(sid).items == 30 and len(a.top_k(sid)) == 4  # untouched
        generated = a.create_session("entropy", k=2)
        assert len(generated) == 32 and generated != a.create_session("entropy", k=2)  # 128 random bits


def test_a_wrong_token_is_refused_and_the_file_is_reread(served):
    app, tokens = served
    with Client(app.target, token="tok-c") as c, pytest.raises(Unauthenticated):
        c.info()
    tokens.write_text("team-a tok-a\nteam-c tok-c\n")  # b revoked, c added
    app.principals.reload()
    with Client(app.target, token="tok-c") as c:
        assert c.info().version
    with Client(app.target, token="tok-b") as b, pytest.raises(Unauthenticated):
        b.info()
    tokens.write_text("team-a\n")  # a bad line: named, and the map in force stays
    with pytest.raises(ValueError, match="tokens:1: want 'principal token'"):
        app.principals.reload()
    with Client(app.target, token="tok-c") as c:
        assert c.info().version
