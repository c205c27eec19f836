"""What the Ray and Spark clients share: a block of a distributed table scored on the service
into a small top-K table, and the reduce of those tables into the pool's exact top-K.

Each worker streams its blocks to the service (one ScorePool call per block or per partition)
and sends back only that block's top k, so the driver holds (blocks × k) rows, never the pool.
The top K of a union is the top K of its parts' top Ks under the server's tie rule, which
`sharding.merge` applies, so the result equals one ScorePool over the whole table.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa

from poolscore.client.pools import Batch
from poolscore.client.sharding import check_mergeable, merge
from poolscore.client.specs import TopK

ID_OUT = pa.schema([("id", pa.int64()), ("score", pa.float64()), ("items", pa.int64())])
KEY_OUT = pa.schema([("key", pa.string()), ("score", pa.float64()), ("items", pa.int64())])


@dataclass(frozen=True)
class Job:
    """One pool's scoring, as every worker runs it: picklable (plain values only)."""
    target: str | list[str]
    strategy: str
    k: int
    columns: dict  # logits_column, id_column, embedding_column
    client: dict = field(default_factory=dict)  # Client keyword arguments: token, TLS PEMs, timeouts
    options: dict = field(default_factory=dict)  # score_pool's: strategy options, model, samples

    def check(self, names: list[str]) -> None:
        """Refuse, on the driver and before any work, what every worker would fail on."""
        check_mergeable(self.strategy, self.options)
        if not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k must be a positive integer, got {self.k!r}")
        logits, ids = self.columns["logits_column"], self.columns["id_column"]
        for name, what in ((logits, "logits"), (ids, "ids")):
            if name not in names:
                raise ValueError(f"no column {name!r} for the {what} (columns: {names}); a distributed pool "
                                 f"needs its own ids, since no worker knows its rows' place in the whole")

    def score(self, records: Iterable[pa.RecordBatch]) -> pa.Table:
        """Records scored in one ScorePool call; their top-k as ID_OUT or KEY_OUT rows (items on the first).
        A block of no rows calls nothing and gives no rows."""
        from poolscore.client.client import Client

        batches = self._batches(records)
        first = next(batches, None)
        if first is None:
            return ID_OUT.empty_table()
        with Client(self.target, **self.client) as client:
            top = client.score_pool(itertools.chain([first], batches), self.strategy, self.k, **self.options)
        return as_table(top)

    def _batches(self, records: Iterable[pa.RecordBatch]) -> Iterator[Batch]:
        from poolscore.client import arrow_pools

        cols = (self.columns["logits_column"], self.columns["id_column"], self.columns["embedding_column"])
        for record in records:
            if record.num_rows:
                yield from arrow_pools.read(record, *cols, chunk_rows=65536)


def as_table(top: TopK) -> pa.Table:
    items = np.zeros(len(top), np.int64)
    if len(top):
        items[0] = top.items
    if top.keys:
        return pa.table([pa.array(top.keys, pa.string()), pa.array(top.scores), pa.array(items)], schema=KEY_OUT)
    return pa.table([pa.array(top.ids, pa.int64()), pa.array(top.scores), pa.array(items)], schema=ID_OUT)


def reduce(tables: list[pa.Table], k: int) -> TopK:
    """The pool's top-k from the blocks' top-k tables (either schema; empty blocks send none)."""
    parts = []
    for t in tables:
        if t.num_rows == 0:
            continue
        items = int(np.asarray(t.column("items")).sum())
        scores = np.asarray(t.column("score"), np.float64)
        if "key" in t.schema.names:
            parts.append(TopK(np.empty(0, np.int64), scores, t.column("key").to_pylist(), items))
        else:
            parts.append(TopK(np.asarray(t.column("id"), np.int64), scores, [], items))
    if not parts:
        return TopK(np.empty(0, np.int64), np.empty(0), [], 0)
    return merge(parts, k)
