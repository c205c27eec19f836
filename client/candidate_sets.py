"""A set-level strategy over several replicas, in two passes over the pool.

The selection runs once, over a candidate set: the M best items by a pointwise pre-score. That
set merges like a top-K (the M best of a union are the M best of the parts' M best, under the
same tie rule), so the first pass scores the pre-score alone across the replicas, through
sharding's exact and failover-safe path, with k = M. The second pass reads the pool again and
sends only those M rows to one replica, which runs the strategy with `candidates` = M. Its
candidate set is then the one a single server would hold, so its selection is the same too.

Not here: class_balanced (its quotas need each class's own top-K) and expected_error_reduction
(its reference sample is a second draw over the whole pool). Both stay on one server.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterator

import grpc
import numpy as np

from poolscore.client.errors import PoolscoreError, Unavailable
from poolscore.client.pools import Batch, batches_of
from poolscore.client.sharding import REPLICA_FAULTS, numbered, reachable, score_replicated
from poolscore.client.specs import TopK

log = logging.getLogger("poolscore.client")

FINAL_STAGE = ("coreset", "badge", "cluster_margin", "batch_bald")  # and stochastic with softrank sampling
SELECTION_OPTIONS = ("pre_score", "beta", "sampling", "class_priors", "candidates", "eta", "reference", "loss")


def two_stage(strategy: str, options: dict) -> bool:
    """Whether this selection is scored in two passes when a pool is spread over replicas."""
    return strategy in FINAL_STAGE or (strategy == "stochastic" and options.get("sampling") == "softrank")


def score_two_pass(replicas: list, pool, strategy: str, k: int, *, progress: Callable[[int], None] | None,
                   session_options: dict, pool_options: dict, labeled: np.ndarray | None) -> TopK:
    """The pool's selection by `strategy`, as one server makes it, from `replicas` (Clients)."""
    if isinstance(pool, Iterator):
        raise ValueError(f"{strategy} over several replicas reads the pool twice (candidates, then the final "
                         f"stage); pass a file, an array, a table or a list, not a one-shot iterator")
    live = reachable(replicas)
    info = {s.name: s for s in live[0].info().strategies}
    pre = session_options.get("pre_score") or info[strategy].default_pre_score
    if pre not in info:  # a server older than the default_pre_score field, or a misspelt pre_score
        raise ValueError(f"{strategy} over several replicas: no pre-score {pre!r} on {live[0].target}")
    m = max(int(session_options.get("candidates") or info[strategy].candidates_per_k * k), k)
    batch_bytes = min(c.batch_bytes for c in live)

    def rows() -> Iterator[Batch]:
        return numbered(batches_of(pool, batch_bytes, **pool_options))

    pointwise = {n: v for n, v in session_options.items() if n not in SELECTION_OPTIONS}
    needs = _Needs(pre, logits=pre != "random" or bool(session_options.get("model")),
                   embedding=info[pre].needs_embedding)
    cands = score_replicated(live, (needs.of(b) for b in rows()), pre, m, progress=progress,
                             session_options=pointwise, pool_options={})
    chosen = _Chosen(cands)
    final = {**session_options, "candidates": m}
    failures = []
    for client in live:  # the final stage on the first replica that answers; M rows, so a retry is cheap
        try:
            kept = (c for c in map(chosen.of, rows()) if c.rows)
            top = client.score_pool(kept, strategy, k, labeled=labeled, **final)
            return TopK(top.ids, top.scores, top.keys, cands.items)
        except PoolscoreError as err:
            if err.code not in REPLICA_FAULTS:
                raise
            log.warning("replica %s failed in the final stage (%s): trying the next", client.target, err)
            failures.append(f"{client.target}: {err}")
    raise Unavailable(grpc.StatusCode.UNAVAILABLE, "every replica failed in the final stage: " + "; ".join(failures))


class _Needs:
    """A batch cut down to what the pre-score reads (random: ids alone), so pass one sends no more."""

    def __init__(self, pre: str, logits: bool, embedding: bool) -> None:
        self.pre, self.logits, self.embedding = pre, logits, embedding

    def of(self, b: Batch) -> Batch:
        if b.keys is not None and self.pre == "random":
            raise ValueError("random scores string keys by their row in the stream, which differs from replica to "
                             "replica: give the pool integer ids, or another pre_score, to spread it")
        return Batch(b.logits if self.logits else None, b.ids, b.embedding if self.embedding else None, b.keys)


class _Chosen:
    """The candidates' rows of a batch (an id in the pool twice: both rows, as one server is sent)."""

    def __init__(self, cands: TopK) -> None:
        self.ids, self.keys = np.sort(cands.ids), set(cands.keys)

    def of(self, b: Batch) -> Batch:
        if b.keys is not None:
            keep = np.fromiter((key in self.keys for key in b.keys), bool, len(b.keys))
        else:
            keep = np.isin(b.ids, self.ids, assume_unique=False)
        at = np.flatnonzero(keep)
        take = lambda a: None if a is None else a[at]  # noqa: E731
        return Batch(take(b.logits), take(b.ids), take(b.embedding), None if b.keys is None else [b.keys[i] for i in at])
