"""A memory budget in bytes, reserved by sessions before they hold the memory, never after.

A set-level session reserves its candidate set's bytes (2M rows, and what its strategy needs at
finish) once the first batch tells its rows' widths; a reservation that does not fit is refused
with RESOURCE_EXHAUSTED naming the budget, so no session is ever cut off mid-pool for memory."""
from __future__ import annotations

import threading

from poolscore.server.errors import OverLimit


class MemoryBudget:
    def __init__(self, total_bytes: int) -> None:
        self.total = total_bytes
        self._reserved = 0
        self._lock = threading.Lock()

    @property
    def free(self) -> int:
        with self._lock:
            return self.total - self._reserved

    def reserve(self, nbytes: int, what: str) -> None:
        with self._lock:
            if nbytes > self.total - self._reserved:
                raise OverLimit(f"session memory: {what} needs {_mib(nbytes)}, but {_mib(self.total - self._reserved)} "
                                f"of this server's {_mib(self.total)} budget (--session-memory-mb) is free; "
                                f"ask for fewer candidates or delete finished sessions")
            self._reserved += nbytes

    def release(self, nbytes: int) -> None:
        with self._lock:
            self._reserved = max(0, self._reserved - nbytes)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


class ByteBudget:
    """Bytes of requests received ahead of their scoring, all streams together (read-ahead).

    A stream's reader waits for room rather than failing: it just stops reading ahead, and HTTP/2
    flow control holds the sender back. When nothing is held, one request of any size may go."""

    def __init__(self, total_bytes: int) -> None:
        self.total, self.used = total_bytes, 0
        self._cond = threading.Condition()

    def take(self, nbytes: int, stop: threading.Event) -> bool:
        """Hold nbytes once there is room; False if `stop` was set while waiting."""
        with self._cond:
            while self.used and self.used + nbytes > self.total:
                if stop.is_set():
                    return False
                self._cond.wait(0.05)
            self.used += nbytes
            return True

    def give(self, nbytes: int) -> None:
        if nbytes:
            with self._cond:
                self.used -= nbytes
                self._cond.notify_all()
