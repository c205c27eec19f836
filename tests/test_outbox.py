"""client/outbox.py: what a resumed or retried stream sends, and what it refuses to skip."""
from __future__ import annotations

import numpy as np
import pytest

from poolscore.client import DataLoss
from poolscore.client.outbox import Outbox
from poolscore.client.pools import Batch


def pool(n: int, fail_at: int | None = None):
    for i in range(n):
        if i == fail_at:
            raise ValueError(f"row {i}: the reader broke")
        yield Batch(np.zeros((1, 2), np.float32), np.array([i]))


def encode(seq: int, batch: Batch) -> bytes:
    return f"seq={seq}".encode()


def test_a_reader_error_in_a_broken_calls_thread_fails_the_next_call_too() -> None:
    box = Outbox(pool(5, fail_at=3), 0, encode)
    first = box.requests(0)
    assert [next(first) for _ in range(3)] == [b"seq=0", b"seq=1", b"seq=2"]
    with pytest.raises(ValueError, match="row 3"):
        next(first)  # the old call's thread meets the error, and that call is gone
    with pytest.raises(ValueError, match="row 3"):
        list(box.requests(3))  # the retry does not end the pool early as if it were done


def test_a_resume_keeps_what_is_committed_but_not_yet_durable() -> None:
    box = Outbox(pool(8), 6, encode, from_start=True, keep_from=4)  # the server: next_seq 6, durable_seq 4
    assert list(box.requests(6)) == [b"seq=6", b"seq=7"]  # 0..5 read past, not sent
    box.check_resumable("s", 4)  # a restart fell back to the durable batch: 4 and 5 are still here
    assert list(box.requests(4)) == [b"seq=4", b"seq=5", b"seq=6", b"seq=7"]
    box.release(6)
    with pytest.raises(DataLoss, match="no longer keeps it"):
        box.check_resumable("s", 5)
    with pytest.raises(DataLoss, match="released as safe"):
        list(box.requests(5))  # never a silent end
