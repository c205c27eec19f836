"""The server raises glibc's malloc thresholds once, so batches reuse freed memory."""
from __future__ import annotations

import platform

import pytest

from poolscore.server.runtime.allocator import keep_freed_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's thresholds are glibc's")
def test_glibc_takes_the_thresholds() -> None:
    assert keep_freed_memory(256 << 20) is True
    assert keep_freed_memory(2**40) is True  # clamped to what mallopt takes, never refused

