"""A pool spread over several replicas, merged exactly, and still exact when a replica dies.

Each replica scores its share in a session of its own, pulling the next batch when its stream
has room (a faster replica takes more). Every `snapshot_rows` rows this client asks the
replica for its session's top-K: that top-K stands for every row before it, so the batches it
covers are dropped here and memory stays bounded. When a replica fails, its last top-K is kept
and the batches it was given since go back to the others. The pool's top-K is the top-K of the
kept top-Ks: the top K of a union is the top K of its parts' top Ks, under the same tie rule
(score descending, then id ascending; an id seen twice keeps its best score, as one server does).
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

import grpc
import numpy as np

from poolscore.client.errors import PoolscoreError, Unavailable
from poolscore.client.pools import Batch, batches_of
from poolscore.client.specs import TopK

log = logging.getLogger("poolscore.client")

# Selections whose top-K over a union is not the top-K of the shards' top-Ks
# (the candidate-set ones are spread in two passes instead: candidate_sets.py)
UNMERGEABLE = ("class_balanced", "coreset", "badge", "cluster_margin", "batch_bald", "expected_error_reduction")
# What a replica's failure looks like, as against the pool's or the caller's (those fail everywhere)
REPLICA_FAULTS = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.NOT_FOUND,
                  grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED,
                  grpc.StatusCode.ABORTED, grpc.StatusCode.DATA_LOSS}
SNAPSHOT_ROWS = 1 << 18  # rows a replica is given between two top-K snapshots


def merge(parts: list[TopK], k: int) -> TopK:
    """The exact top-k of several top-ks: score descending, then id ascending (keys: part, rank)."""
    scores = np.concatenate([p.scores for p in parts]) if parts else np.empty(0)
    items = sum(p.items for p in parts)
    if any(p.keys for p in parts):
        keys = [key for p in parts for key in p.keys]
        seen: set[str] = set()  # part order, then rank: deterministic; a key seen twice keeps its best
        kept = [i for i in np.argsort(-scores, kind="stable") if not (keys[i] in seen or seen.add(keys[i]))][:k]
        return TopK(np.empty(0, np.int64), scores[kept], [keys[i] for i in kept], items)
    ids = np.concatenate([p.ids for p in parts]) if parts else np.empty(0, np.int64)
    order = np.lexsort((ids, -scores))
    first = np.unique(ids[order], return_index=True)[1]  # an id scored twice keeps its best score
    order = order[np.sort(first)][:k]
    return TopK(ids[order], scores[order], [], items)


def score_pool_sharded(targets, pool, strategy: str = "entropy", k: int = 100, *, token: str | None = None,
                       failover_s: float = 5.0, **options) -> TopK:
    """score_pool over several servers at once (a list, or a `dns:///` name of a headless Service):
    batches shared out, top-Ks merged exactly, a failed replica's work redone by the others."""
    from poolscore.client.client import Client

    with Client(targets, token=token, failover_s=failover_s) as client:
        return client.score_pool(pool, strategy, k, **options)


def check_mergeable(strategy: str, options: dict) -> None:
    if strategy in UNMERGEABLE or options.get("sampling") == "softrank":
        raise ValueError(f"{strategy} selects over the whole pool at once: shards' selections do not merge into "
                         f"the pool's; score it on one server (one target)")


def score_replicated(replicas: list, pool, strategy: str, k: int, *, progress: Callable[[int], None] | None,
                     session_options: dict, pool_options: dict, snapshot_rows: int | None = None) -> TopK:
    """The pool's exact top-k from `replicas` (Clients), in rounds: every live replica takes a share;
    what a failed one held goes to the others in this round or, if they had finished, the next."""
    check_mergeable(strategy, session_options)
    live = reachable(replicas)
    work = _Work(numbered(batches_of(pool, min(c.batch_bytes for c in live), **pool_options)), progress)
    kept: list[TopK] = []
    failures: list[str] = []
    while True:
        shares = [_Share(c, work, strategy, k, session_options, snapshot_rows or SNAPSHOT_ROWS) for c in live]
        with ThreadPoolExecutor(len(shares)) as threads:
            for done in [threads.submit(s.run) for s in shares]:
                done.result()  # a caller's or the pool's error: raised once every share has stopped
        kept += [s.top for s in shares if s.top is not None]
        failures += [f"{s.client.target}: {s.failed}" for s in shares if s.failed]
        live = [s.client for s in shares if not s.failed]
        if work.finished():
            return merge(kept, k)
        if not live:
            raise Unavailable(grpc.StatusCode.UNAVAILABLE, "every replica failed before the pool was scored: "
                                                           + "; ".join(failures))


def reachable(replicas: list) -> list:
    """The replicas that answer now (one that never answered is left out, with a warning)."""
    live = []
    for c in replicas:
        try:
            c.batch_bytes  # noqa: B018 (asks ServerInfo: a replica that cannot answer it has no share)
            live.append(c)
        except PoolscoreError as err:
            if err.code not in REPLICA_FAULTS:
                raise
            log.warning("replica %s left out: %s", c.target, err)
    if not live:
        raise Unavailable(grpc.StatusCode.UNAVAILABLE, f"no replica answered of {[c.target for c in replicas]}")
    return live


def numbered(batches: Iterator[Batch]) -> Iterator[Batch]:
    """Rows without ids numbered over the whole pool, so every share reports one server's ids."""
    row = 0
    for b in batches:
        if b.ids is None and b.keys is None and b.rows:
            b = Batch(b.logits, np.arange(row, row + b.rows, dtype=np.int64), b.embedding, None)
        row += b.rows
        yield b


class _Work:
    """The batches still to score: those a failed replica gave back first, then the pool's next."""

    def __init__(self, source: Iterator[Batch], progress: Callable[[int], None] | None) -> None:
        self._source, self._progress = source, progress
        self._back: deque[Batch] = deque()
        self._lock = threading.Lock()
        self._ended = False
        self.error: BaseException | None = None  # the pool's or a caller's: every share stops

    def pull(self) -> Batch | None:
        with self._lock:
            if self.error is not None:
                return None
            if self._back:
                return self._back.popleft()
            batch = None if self._ended else next(self._source, None)  # the pool reader runs here, one at a time
            self._ended = batch is None
        if batch is not None and self._progress is not None:
            self._progress(batch.rows)
        return batch

    def give_back(self, batches: list[Batch]) -> None:
        with self._lock:
            self._back.extendleft(reversed(batches))

    def stop(self, err: BaseException) -> None:
        with self._lock:
            self.error = self.error or err

    def finished(self) -> bool:
        with self._lock:
            return self._ended and not self._back


class _Share:
    """One replica's part of the pool: its session, the top-K that covers what it scored so far,
    and the batches it was given since (kept here until a top-K covers them)."""

    def __init__(self, client, work: _Work, strategy: str, k: int, options: dict, snapshot_rows: int) -> None:
        self.client, self.work, self.snapshot_rows = client, work, snapshot_rows
        self.strategy, self.k, self.options = strategy, k, options
        self.top: TopK | None = None
        self.failed: PoolscoreError | None = None
        self.held: deque[Batch] = deque()
        self.covered = 0  # rows of this session that `top` stands for
        self.sent = 0  # rows of this session given to the replica

    def run(self) -> None:
        sid = None
        try:
            sid = self.client.create_session(self.strategy, self.k, **self.options)
            self.client.stream(sid, self._feed(sid))
            self._snapshot(sid)
        except PoolscoreError as err:
            if err.code not in REPLICA_FAULTS or self.work.error is not None:
                self.work.stop(err)
                raise
            log.warning("replica %s failed mid-pool (%s): its %d unsnapshotted rows go to the others",
                        self.client.target, err, self.sent - self.covered)
            self.failed = err
            self.work.give_back(list(self.held))
        except BaseException as err:  # the pool reader's own error, or an interrupt
            self.work.stop(err)
            raise
        finally:
            if sid is not None and not self.failed:
                self._forget(sid)

    def _feed(self, sid: str) -> Iterator[Batch]:
        for batch in iter(self.work.pull, None):
            self.held.append(batch)
            self.sent += batch.rows
            yield batch
            if self.sent - self.covered >= self.snapshot_rows:
                self._snapshot(sid)

    def _snapshot(self, sid: str) -> None:
        """The session's top-K now; the batches it covers (in seq order) are no longer held."""
        top = self.client.top_k(sid)
        self.top, gained = top, top.items - self.covered
        self.covered = top.items
        while self.held and gained >= self.held[0].rows:
            gained -= self.held.popleft().rows
        if self.held and gained:  # the server split a batch: keep the rows it has not scored yet
            head = self.held.popleft()
            self.held.appendleft(head.rows_slice(gained, head.rows))

    def _forget(self, sid: str) -> None:
        try:
            self.client.delete_session(sid)
        except PoolscoreError:
            pass  # the session expires on its own; the result is already here
