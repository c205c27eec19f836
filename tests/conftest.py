"""Shared fixtures: a CPU scorer without compilation (fast), seeded randomness."""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import pytest
import torch
from hypothesis import settings

import backends
from poolscore.server.backends.torch.scorer import Scorer

settings.register_profile("ci", max_examples=40, deadline=None, print_blob=True, derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="session", params=DEVICES)
def scorer(request: pytest.FixtureRequest) -> Iterator[Scorer]:
    """An eager scorer on every device this machine has: the same tests cover the GPU path."""
    s = Scorer(request.param, compile="off")
    yield s
    s.close()


@pytest.fixture(scope="session", params=backends.NAMES)
def backend(request: pytest.FixtureRequest):
    """Each scoring backend this machine has (torch on CPU and CUDA, ONNX): the parity suite's."""
    b = backends.make(request.param)
    yield b
    b.close()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def app():
    """The real server on a free loopback port, eager kernels (tests compile nothing)."""
    from poolscore.server.app import build_server
    from poolscore.server.config import ServeConfig

    running = build_server(ServeConfig(port=0, metrics_port=0, device="cpu", compile="off",
                                       max_message_bytes=8 * 1024 * 1024, max_k=10_000, max_sessions=64)).start()
    from poolscore.client import Client

    with Client(running.target) as c:
        c.wait_ready()  # health polled: SERVING once the batch path is rehearsed
    yield running
    running.stop(grace=None)


@pytest.fixture
def client(app):
    from poolscore.client import Client

    with Client(app.target, timeout=60, max_message_bytes=8 * 1024 * 1024, batch_bytes=64 * 1024) as c:
        c.wait_ready(timeout=30)
        yield c
