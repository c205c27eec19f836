"""sessions/: a session's state is one immutable value, committed by compare-and-swap; the store's limits."""
from __future__ import annotations

import numpy as np
import pytest

from poolscore.server.errors import BadInput, OverLimit, SequenceGap, SessionConflict, SessionNotFound
from poolscore.server.pipeline import Scored
from poolscore.server.sessions.session import Session, State
from poolscore.server.sessions.store import SessionStore
from poolscore.server.strategies import parse_spec
from poolscore.server.topk.numpy_topk import NumpyTopK

SPEC = parse_spec("entropy", {})


def scored(first: int, scores: list[float], keys: list[str] | None = None) -> Scored:
    rows = len(scores)
    return Scored(np.array(scores), np.arange(first, first + rows), keys, rows, 8 * rows)


def test_a_batch_gives_a_new_state_and_leaves_the_old_one_alone() -> None:
    before = State(NumpyTopK.empty(2))
    after = before.after(0, scored(0, [0.1, 0.9, 0.5]))
    assert (before.next_seq, before.items, len(before.top)) == (0, 0, 0)
    assert (after.next_seq, after.items, after.top.ids.tolist()) == (1, 3, [1, 2])


def test_seq_rules_negative_gap_and_committed() -> None:
    state = State(NumpyTopK.empty(2)).after(0, scored(0, [0.3]))
    with pytest.raises(BadInput, match=r"seq: must be ≥ 0, got -1"):
        state.is_new(-1, "s")
    with pytest.raises(SequenceGap, match=r"batch 3 sent but the next batch must be 1"):
        state.is_new(3, "s")
    assert state.is_new(1, "s") and not state.is_new(0, "s")


def test_keys_map_only_what_the_top_holds_and_kinds_never_mix() -> None:
    state = State(NumpyTopK.empty(2))
    for seq in range(50):
        first = state.items
        state = state.after(seq, scored(first, list(np.linspace(0, 1, 10) + seq), [f"k{first + i}" for i in range(10)]))
    assert set(state.keys) <= set(state.top.held_ids().tolist()) and len(state.keys) <= 2 * 2
    assert [state.keys[i] for i in state.top.ids.tolist()] == ["k499", "k498"]
    with pytest.raises(BadInput, match="batch 50 sends ids but the session's first batch sent keys"):
        state.after(50, scored(state.items, [0.5]))
    assert state.after(50, scored(state.items, [])).keyed is True  # no rows: fits either kind


def test_commit_swaps_only_the_state_it_was_computed_from() -> None:
    session = Session("s", SPEC, State(NumpyTopK.empty(3)))
    read = session.state
    first = read.after(0, scored(0, [0.5]))
    late = read.after(0, scored(0, [0.7]))  # a second writer scored the same seq from the same state
    assert session.commit(read, first) and session.state is first
    assert not session.commit(read, late) and session.state is first  # the loser changes nothing


def test_store_limits_expiry_and_conflicts() -> None:
    store = SessionStore(max_sessions=2, ttl_s=3600)
    a = store.create(SPEC, State(NumpyTopK.empty(5)), "a")
    assert store.create(SPEC, State(NumpyTopK.empty(5)), "a") is a  # a retried create
    with pytest.raises(SessionConflict, match=r"exists with strategy entropy .*k=5; this create asks for .*k=6"):
        store.create(SPEC, State(NumpyTopK.empty(6)), "a")
    store.create(SPEC, State(NumpyTopK.empty(5)))
    with pytest.raises(OverLimit, match="all 2 in use"):
        store.create(SPEC, State(NumpyTopK.empty(5)))
    assert store.delete("a") is a and len(store) == 1
    with pytest.raises(SessionNotFound):
        store.get("a")


def test_idle_sessions_expire() -> None:
    store = SessionStore(max_sessions=4, ttl_s=-1.0)  # every session is idle past the TTL at once
    store.create(SPEC, State(NumpyTopK.empty(5)), "old")
    with pytest.raises(SessionNotFound, match="'old' not found"):
        store.get("old")
    assert len(store) == 0
