"""One ScoreRequest → scores and ids on the scoring device: decode → validate → score."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from poolscore.server import decode
from poolscore.server.errors import BadInput
from poolscore.server.scoring import Scorer
from poolscore.server.spec import Feed, Spec
from poolscore.server.wire import Parsed


@dataclass(frozen=True)
class Scored:
    scores: torch.Tensor  # [N] on the scoring device
    ids: torch.Tensor  # [N] int64 (row numbers or surrogates for string keys)
    keys: list[str] | None  # string ids, aligned with ids
    rows: int
    nbytes: int  # tensor bytes received


def score(scorer: Scorer, spec: Spec, req: Parsed, first_row: int, feed: Feed | None = None) -> Scored:
    """Raises BadInput (or UnknownStrategy) before anything is committed anywhere."""
    keys = list(getattr(req, "keys", ()))  # ScoreBatchRequest has no keys
    x = decode.optional(req, "logits")
    emb = decode.optional(req, "embedding")
    inputs = decode.optional(req, "inputs")
    if inputs is not None:
        x, emb = _through_model(feed, x, emb, inputs)
    sent_ids = decode.optional(req, "ids")
    rows = _rows(x, sent_ids, keys)
    if keys and sent_ids is not None:
        raise BadInput("keys", "send ids or keys, not both")
    if keys and len(keys) != rows:
        raise BadInput("keys", f"{len(keys)} keys for {rows} rows")
    ids = decode.ids(sent_ids, rows, first_row)  # keys: the row number stands in for the key
    scores = scorer.score(spec.strategy, x, embedding=emb, ids=ids, options=spec.options)
    nbytes = sum(len(t.data) for t in req.tensors.values())
    return Scored(scores, ids, keys or None, rows, nbytes)


def _through_model(feed: Feed | None, x, emb, inputs: torch.Tensor):
    if feed is None:
        raise BadInput("inputs", "raw inputs need a model: name it in CreateSession or the first message")
    if x is not None:
        raise BadInput("inputs", "send logits or inputs, not both")
    logits, model_emb = feed.model.forward(inputs, feed.samples, feed.seed)
    return logits, emb if emb is not None else model_emb


def carries_rows(req: Parsed) -> bool:
    return bool(req.tensors) or bool(req.keys)


def _rows(x: torch.Tensor | None, ids: torch.Tensor | None, keys: list[str]) -> int:
    if x is not None and x.dim() > 0:
        return x.shape[0]
    if ids is not None and ids.dim() == 1:
        return ids.shape[0]
    return len(keys)
