"""read_ahead: the same items in order, the producer's error in the consumer, no stuck thread."""
from __future__ import annotations

import itertools
import threading

import pytest

from poolscore.server.transport.readahead import read_ahead


def _pumps() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "poolscore-read-ahead"]


def test_items_arrive_in_order_and_all_of_them() -> None:
    assert list(read_ahead(iter(range(1000)), depth=3)) == list(range(1000))
    assert list(read_ahead(iter([]))) == []


def test_a_failing_stream_raises_in_the_consumer_after_what_it_sent() -> None:
    def stream():
        yield from (1, 2, 3)
        raise ConnectionResetError("client went away")

    got = []
    with pytest.raises(ConnectionResetError, match="client went away"):
        for item in read_ahead(stream()):
            got.append(item)
    assert got == [1, 2, 3]


def test_a_consumer_that_stops_early_frees_the_reading_thread() -> None:
    before = set(_pumps())
    items = read_ahead(itertools.count(), depth=2)  # endless: the pump fills the queue and blocks
    assert next(items) == 0
    started = set(_pumps()) - before
    assert len(started) == 1
    items.close()  # the handler returned (say, on a bad batch)
    for pump in started:
        pump.join(timeout=10)
        assert not pump.is_alive()


def test_nothing_more_is_handed_on_once_the_caller_is_gone() -> None:
    gone = threading.Event()
    seen = []
    for item in read_ahead(iter(range(100)), active=lambda: not gone.is_set()):
        seen.append(item)
        if item == 3:
            gone.set()  # as a cancelled RPC's context.is_active() turns false
    assert seen == [0, 1, 2, 3]
