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


def test_read_ahead_holds_its_items_bytes_within_the_budget() -> None:
    import threading as _threading

    from poolscore.server.runtime.budget import ByteBudget

    budget = ByteBudget(100)
    items = [60, 60, 60, 300, 10]  # each item is its own size; 300 is over the whole budget
    seen, most = [], []

    def sizes():
        for n in items:
            most.append(budget.used)  # what is queued when the next item is received
            yield n

    for n in read_ahead(sizes(), depth=4, budget=budget, size=lambda n: n):
        seen.append(n)
    assert seen == items and budget.used == 0
    assert all(u <= 100 or u in items for u in most)  # within the budget, or one oversized item alone

    # two streams on one budget: neither waits forever, and the budget comes back whole
    out: list = []
    runs = [_threading.Thread(target=lambda: out.append(list(read_ahead(iter([70] * 5), budget=budget,
                                                                         size=lambda n: n)))) for _ in range(2)]
    for t in runs:
        t.start()
    for t in runs:
        t.join(timeout=30)
    assert out == [[70] * 5] * 2 and budget.used == 0


def test_a_stream_that_ends_early_gives_back_every_byte() -> None:
    from poolscore.server.runtime.budget import ByteBudget

    budget = ByteBudget(10_000)
    for _ in range(50):
        stream = read_ahead(iter([100] * 20), depth=2, budget=budget, size=lambda n: n)
        next(stream)  # one taken, more queued (and one put blocked), then the caller goes away
        stream.close()
    deadline = 200
    while budget.used and deadline:  # the pumps finish their last put on their own threads
        deadline -= 1
        threading.Event().wait(0.01)
    assert budget.used == 0


def test_a_reader_waiting_for_room_is_not_idle() -> None:
    from poolscore.server.runtime.budget import ByteBudget

    budget = ByteBudget(100)
    hog = read_ahead(iter([100, 100]), depth=1, budget=budget, size=lambda n: n)
    first = _threading_next(hog)  # queued items of the hog fill the budget until it is read
    for _ in range(500):  # until the hog's pump has queued its second item
        if budget.used == 100:
            break
        threading.Event().wait(0.01)
    assert budget.used == 100
    got = []
    waiting = threading.Thread(target=lambda: got.extend(read_ahead(iter([50]), budget=budget, size=lambda n: n,
                                                                    idle_s=0.2)))
    waiting.start()
    waiting.join(timeout=0.6)  # past its idle timeout while it waits for room: still alive, not failed
    assert waiting.is_alive() and got == []
    assert first == 100 and list(hog) == [100]  # the hog is read: room comes back
    waiting.join(timeout=10)
    assert got == [50] and budget.used == 0


def _threading_next(it):
    return next(it)
