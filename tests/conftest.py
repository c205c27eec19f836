"""Shared fixtures: a CPU scorer without compilation (fast), seeded randomness."""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import pytest
import torch
from hypothesis import settings

from poolscore.server.scoring import Scorer

settings.register_profile("ci", max_examples=40, deadline=None, print_blob=True, derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="session", params=DEVICES)
def scorer(request: pytest.FixtureRequest) -> Iterator[Scorer]:
    """An eager scorer on every device this machine has: the same tests cover the GPU path."""
    s = Scorer(request.param, compile="off")
    yield s
    s.close()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
