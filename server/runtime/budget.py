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
