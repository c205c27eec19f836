"""The kernels' thread count: as asked, else half the cores this process may run on."""
from __future__ import annotations

import os

import pytest

from poolscore.server.threads import scoring_threads


def test_an_asked_count_is_kept() -> None:
    assert scoring_threads(3) == 3
    assert scoring_threads(64) == 64  # more than the cores is the operator's call


def test_default_leaves_half_the_cores_to_grpc() -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert scoring_threads(0) == max(1, cores // 2)
    assert scoring_threads(-1) == scoring_threads(0)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU sets are Linux's")
def test_default_follows_the_cpu_set_not_the_host() -> None:
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})  # as a container limited to one core
        assert scoring_threads(0) == 1
    finally:
        os.sched_setaffinity(0, before)
