"""Receive the next request of a stream while this one is scored.

gRPC's request iterator starts receiving a message only when asked for it, so a handler
that scores between `next()` calls leaves the transport idle meanwhile. A thread asks
ahead instead, up to `depth` messages (memory: that many batches more per stream).
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Executor
from typing import Callable, Iterator, TypeVar

from poolscore.server.errors import StreamIdle
from poolscore.server.runtime.budget import ByteBudget

T = TypeVar("T")
_END = object()


def _next(ready: queue.Queue, idle_s: float | None, waiting_room: threading.Event):
    while True:
        try:
            return ready.get(timeout=idle_s)
        except queue.Empty:
            if not waiting_room.is_set():  # the caller sent nothing; a reader waiting for room is not idle
                raise StreamIdle(idle_s) from None


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def read_ahead(requests: Iterator[T], depth: int = 2, active: Callable[[], bool] = lambda: True,
               idle_s: float | None = None, budget: ByteBudget | None = None,
               size: Callable[[T], int] = lambda item: 0, pumps: Executor | None = None,
               waited: Callable[[float], None] = lambda seconds: None) -> Iterator[T]:
    """The same items in the same order, received by a thread up to `depth` ahead. Once
    `active()` is false (the caller went away), items already received are not handed on.
    StreamIdle when nothing arrives from the caller for `idle_s` seconds. With a budget, an
    item's `size` bytes are held while it waits in the queue (so a consumer that is slow to
    come back, say a client not reading its acks, holds none). `pumps` runs the receiving
    thread (a server's pool: starting a thread per call cost more than the call). `waited` is
    told how long each item sat received before it was handed on (the queue time)."""
    ready: queue.Queue = queue.Queue(depth)
    stop, waiting_room = threading.Event(), threading.Event()
    budget = budget or ByteBudget(2**62)

    def pump() -> None:
        try:
            for item in requests:
                n = size(item)
                waiting_room.set()  # waiting for the budget, not for the caller: not idle
                took = not stop.is_set() and budget.take(n, stop)
                waiting_room.clear()
                if not took:
                    return
                ready.put((item, n, time.perf_counter()))
                if stop.is_set():  # the consumer left while we put: what is queued is ours to give back
                    _drain(ready, budget)
                    return
            ready.put(_END)
        except BaseException as err:  # the RPC's own failure (a cancel, a bad message): hand it over
            if not stop.is_set():
                ready.put(_Failed(err))
        finally:
            waiting_room.clear()

    if pumps is not None:
        pumps.submit(pump)
    else:
        threading.Thread(target=pump, name="poolscore-read-ahead", daemon=True).start()
    try:
        while (got := _next(ready, idle_s, waiting_room)) is not _END and active():
            if isinstance(got, _Failed):
                raise got.error
            item, n, received = got
            budget.give(n)  # out of the queue: its bytes are the consumer's now
            waited(time.perf_counter() - received)
            yield item
    finally:
        # The consumer is done (or failed): stop the pump, and make room for the one put
        # it may be blocked in, so it never waits forever on a queue nobody reads.
        stop.set()
        _drain(ready, budget)


def _drain(ready: queue.Queue, budget: ByteBudget) -> None:
    """Empty the queue, giving back each item's bytes (items are taken once: never twice given)."""
    while True:
        try:
            left = ready.get_nowait()
        except queue.Empty:
            return
        if isinstance(left, tuple):
            budget.give(left[1])
