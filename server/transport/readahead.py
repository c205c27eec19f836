"""Receive the next request of a stream while this one is scored.

gRPC's request iterator starts receiving a message only when asked for it, so a handler
that scores between `next()` calls leaves the transport idle meanwhile. A thread asks
ahead instead, up to `depth` messages (memory: that many batches more per stream).
"""
from __future__ import annotations

import queue
import threading
from concurrent.futures import Executor
from typing import Callable, Iterator, TypeVar

from poolscore.server.errors import StreamIdle
from poolscore.server.runtime.budget import ByteBudget

T = TypeVar("T")
_END = object()


def _next(ready: queue.Queue, idle_s: float | None):
    try:
        return ready.get(timeout=idle_s)
    except queue.Empty:
        raise StreamIdle(idle_s) from None


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def read_ahead(requests: Iterator[T], depth: int = 2, active: Callable[[], bool] = lambda: True,
               idle_s: float | None = None, budget: ByteBudget | None = None,
               size: Callable[[T], int] = lambda item: 0, pumps: Executor | None = None) -> Iterator[T]:
    """The same items in the same order, received by a thread up to `depth` ahead. Once
    `active()` is false (the caller went away), items already received are not handed on.
    StreamIdle when nothing arrives for `idle_s` seconds. With a budget, an item's `size`
    bytes are held from its receipt until the consumer asks for the next one. `pumps` runs the
    receiving thread (a server's pool: starting a thread per call cost more than the call)."""
    ready: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    budget = budget or ByteBudget(2**62)

    def pump() -> None:
        try:
            for item in requests:
                n = size(item)
                if stop.is_set() or not budget.take(n, stop):
                    return
                ready.put((item, n))
            ready.put(_END)
        except BaseException as err:  # the RPC's own failure (a cancel, a bad message): hand it over
            if not stop.is_set():
                ready.put(_Failed(err))

    if pumps is not None:
        pumps.submit(pump)
    else:
        threading.Thread(target=pump, name="poolscore-read-ahead", daemon=True).start()
    held = 0
    try:
        while True:
            budget.give(held)  # the last item is done with: its bytes go back before we wait for more
            held = 0
            got = _next(ready, idle_s)
            if got is _END or not active():
                break
            if isinstance(got, _Failed):
                raise got.error
            item, held = got
            yield item
    finally:
        # The consumer is done (or failed): stop the pump, and make room for the one put
        # it may be blocked in, so it never waits forever on a queue nobody reads.
        stop.set()
        budget.give(held)
        while True:
            try:
                left = ready.get_nowait()
            except queue.Empty:
                break
            if isinstance(left, tuple):
                budget.give(left[1])
