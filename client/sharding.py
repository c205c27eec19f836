"""A pool split over several servers (replicas behind a headless Service), merged exactly.

The top K of a union is the top K of the shards' top Ks, so merging per-shard top-Ks
loses nothing. Rows without ids are numbered here, over the whole pool, so that every
shard reports the ids a single server would have.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np

from poolscore.client.client import Client, TopK
from poolscore.client.pools import Batch, batches_of

# Selections whose top-K over a union is not the top-K of the shards' top-Ks
UNMERGEABLE = ("class_balanced", "coreset", "badge", "cluster_margin", "batch_bald", "expected_error_reduction")


def merge(parts: list[TopK], k: int) -> TopK:
    """The exact top-k of several top-ks: score descending, then id ascending (keys: shard, rank)."""
    scores = np.concatenate([p.scores for p in parts]) if parts else np.empty(0)
    items = sum(p.items for p in parts)
    if any(p.keys for p in parts):
        keys = [key for p in parts for key in p.keys]
        order = np.argsort(-scores, kind="stable")[:k]  # shard order, then rank: deterministic
        return TopK(np.empty(0, np.int64), scores[order], [keys[i] for i in order], items)
    ids = np.concatenate([p.ids for p in parts]) if parts else np.empty(0, np.int64)
    order = np.lexsort((ids, -scores))[:k]
    return TopK(ids[order], scores[order], [], items)


def _numbered(batches: Iterator[Batch]) -> Iterator[Batch]:
    row = 0
    for b in batches:
        if b.ids is None and b.keys is None and b.rows:
            b = Batch(b.logits, np.arange(row, row + b.rows, dtype=np.int64), b.embedding, None)
        row += b.rows
        yield b


class _Shared:
    """One batch iterator read by several streams, one batch at a time under a lock."""

    def __init__(self, source: Iterator[Batch]) -> None:
        self._source, self._lock = source, threading.Lock()

    def pull(self) -> Iterator[Batch]:
        while True:
            with self._lock:
                batch = next(self._source, None)
            if batch is None:
                return
            yield batch


def score_pool_sharded(targets: list[str], pool, strategy: str = "entropy", k: int = 100, *,
                       token: str | None = None, **options) -> TopK:
    """score_pool over several servers at once: batches shared out, top-Ks merged exactly."""
    if strategy in UNMERGEABLE or options.get("sampling") == "softrank":
        raise ValueError(f"{strategy} selects over the whole pool at once: shards' selections do not merge into "
                         f"the pool's; score it on one server (score_pool)")
    clients = [Client(t, token=token) for t in targets]
    try:
        source = _Shared(_numbered(batches_of(pool, min(c.batch_bytes for c in clients))))  # fits every server
        with ThreadPoolExecutor(len(targets)) as pool_threads:
            # each server pulls the next batch when its stream has room: faster replicas take more
            futures = [pool_threads.submit(c.score_pool, source.pull(), strategy, k, **options) for c in clients]
            return merge([f.result() for f in futures], k)
    finally:
        for c in clients:
            c.close()
