"""One ScoreRequest → scores and ids on the backend's device: decode → validate → score."""
from __future__ import annotations

from dataclasses import dataclass

from poolscore.server import decode
from poolscore.server.errors import BadInput
from poolscore.server.spec import Feed, Spec
from poolscore.server.wire import Parsed


@dataclass(frozen=True)
class Scored:
    scores: object  # [N] on the backend's device (torch tensor or NumPy array)
    ids: object  # [N] int64 (row numbers or surrogates for string keys)
    keys: list[str] | None  # string ids, aligned with ids
    rows: int
    nbytes: int  # tensor bytes received


def score(backend, spec: Spec, req: Parsed, first_row: int, feed: Feed | None = None) -> Scored:
    """Raises BadInput (or UnknownStrategy) before anything is committed anywhere."""
    keys = list(getattr(req, "keys", ()))  # ScoreBatchRequest has no keys
    x, emb, sent_ids, inputs = (_view(backend, req, name) for name in ("logits", "embedding", "ids", "inputs"))
    if inputs is not None:
        x, emb = _through_model(feed, x, emb, inputs)
    rows = _rows(x, sent_ids, keys)
    if keys and sent_ids is not None:
        raise BadInput("keys", "send ids or keys, not both")
    if keys and len(keys) != rows:
        raise BadInput("keys", f"{len(keys)} keys for {rows} rows")
    if sent_ids is not None:
        decode.check_ids(sent_ids, rows)
    ids = sent_ids if sent_ids is not None else backend.arange(first_row, rows)  # keys: the row number stands in
    scores = backend.score(spec.strategy, x, embedding=emb, ids=ids, options=spec.options)
    nbytes = sum(len(t.data) for t in req.tensors.values())
    return Scored(scores, ids, keys or None, rows, nbytes)


def _view(backend, req: Parsed, name: str):
    raw = req.tensor(name)
    return None if raw is None else backend.view(raw, name)


def _through_model(feed: Feed | None, x, emb, inputs):
    if feed is None:
        raise BadInput("inputs", "raw inputs need a model: name it in CreateSession or the first message")
    if x is not None:
        raise BadInput("inputs", "send logits or inputs, not both")
    logits, model_emb = feed.model.forward(inputs, feed.samples, feed.seed)
    return logits, emb if emb is not None else model_emb


def carries_rows(req: Parsed) -> bool:
    return bool(req.tensors) or bool(req.keys)


def _rows(x, ids, keys: list[str]) -> int:
    if x is not None and x.ndim > 0:
        return x.shape[0]
    if ids is not None and ids.ndim == 1:
        return ids.shape[0]
    return len(keys)
