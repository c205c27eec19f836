"""The kernels' thread count: as asked, else half the cores this process may run on."""
from __future__ import annotations

import os

import pytest

from poolscore.server.runtime.threads import scoring_threads


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


@pytest.mark.parametrize("files,cpus", [
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu.max": "250000 100000\n"}, 2.5),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1.0),
    ({}, None),  # no cgroup files at all
    ({"cpu.max": "garbage"}, None),
    ({"cpu,cpuacct/cpu.cfs_quota_us": "300000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, 3.0),
])
def test_a_containers_cpu_quota_is_read_from_cgroup_v1_or_v2(tmp_path, files: dict, cpus) -> None:
    from poolscore.server.runtime.threads import cpu_quota
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cpu_quota(tmp_path, tmp_path / "no-self-cgroup") == cpus


def test_a_quota_on_the_processs_own_v2_cgroup_or_a_parent_counts(tmp_path) -> None:
    from poolscore.server.runtime.threads import cpu_quota
    (tmp_path / "cpu.max").write_text("max 100000\n")
    unit = tmp_path / "system.slice" / "poolscore.service"
    unit.mkdir(parents=True)
    (unit / "cpu.max").write_text("max 100000\n")
    (tmp_path / "system.slice" / "cpu.max").write_text("150000 100000\n")  # the parent's limit binds
    (tmp_path / "self").write_text("0::/system.slice/poolscore.service\n")
    assert cpu_quota(tmp_path, tmp_path / "self") == 1.5
    (unit / "cpu.max").write_text("50000 100000\n")  # a tighter one of its own
    assert cpu_quota(tmp_path, tmp_path / "self") == 0.5


def test_a_cpu_limit_caps_the_default(tmp_path) -> None:
    from poolscore.server.runtime.threads import usable_cores
    (tmp_path / "cpu.max").write_text("100000 100000\n")  # a 1-CPU limit on a host of many cores
    assert usable_cores(tmp_path) == 1 and scoring_threads(0, tmp_path) == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cores(tmp_path) == (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())


def test_lent_threads_hold_in_their_block_and_thread_only() -> None:
    """A shared-memory batch lends its native kernel every core: within the block (nested blocks
    too), in the calling thread only, and restored after an error."""
    import threading

    from poolscore.server.runtime.threads import kernel_threads, lent

    assert kernel_threads(1) == 1
    seen = []
    with lent(4):
        assert kernel_threads(1) == 4
        other = threading.Thread(target=lambda: seen.append(kernel_threads(1)))
        other.start()
        other.join()
        with lent(0):  # a batch of bytes: the backend's own count
            assert kernel_threads(1) == 1
        assert kernel_threads(1) == 4
        with pytest.raises(RuntimeError), lent(2):
            raise RuntimeError
        assert kernel_threads(1) == 4
    assert kernel_threads(1) == 1 and seen == [1]


def test_the_native_kernel_runs_on_the_lent_threads() -> None:
    import numpy as np
    import torch

    from poolscore.server.backends.native.library import load
    from poolscore.server.backends.torch.native import NativeKernel
    from poolscore.server.runtime.threads import lent

    library = load()
    asked = []

    class Recording:  # the real library, its thread counts noted
        serves = staticmethod(library.serves)

        def score(self, *args, threads):
            asked.append(threads)
            return library.score(*args, threads=threads)

    kernel = NativeKernel(Recording(), "entropy", None)
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(5000, 10)).astype(np.float32))
    one = torch.ones((), dtype=torch.float64)
    plain = kernel(x, None, one, "logits")
    with lent(2):
        both = kernel(x, None, one, "logits")
    assert asked == [torch.get_num_threads(), 2]
    assert torch.equal(plain, both)  # a row's score does not depend on the split
