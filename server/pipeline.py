"""One batch through the data flow: decode → validate → [model] → kernel → candidates.

Transport-free: a transport hands over an ingest.Batch (raw tensors and keys), whichever
protocol it speaks (PoolScorer, the Open Inference Protocol), and gets back a Scored. No
grpc or protobuf here. Raises BadInput (or UnknownStrategy) before anything is committed."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Mapping

import numpy as np

from poolscore.server.backends.base import Array, Backend
from poolscore.server.errors import BadInput
from poolscore.server.ingest.tensors import Batch, check_ids, check_keys, rows_of
from poolscore.server.models.feed import Feed
from poolscore.server.strategies import STRATEGIES, Spec

if TYPE_CHECKING:  # prometheus_client is imported by whoever makes the Metrics, not by the pipeline
    from poolscore.server.metrics import Metrics


@dataclass(frozen=True)
class Scored:
    scores: Array  # [N] on the backend's device
    ids: Array  # [N] int64: the sent ids, or row numbers (which stand in for string keys)
    keys: list[str] | None  # string ids, aligned with ids
    rows: int
    nbytes: int  # tensor bytes received
    logits: Array | None = None  # what was scored, when a model made it from raw inputs
    embedding: Array | None = None
    classes: Array | None = None  # class_balanced: each row's predicted class, int64 on the host
    class_count: int = 0
    host: Mapping[str, np.ndarray] | None = None  # set-level: host arrays the candidate set takes rows from
    width: tuple[int, ...] | None = None  # the predictions' shape past the rows ([T,] C), when there are any
    # a pointwise top-K's rows with predictions: (held ids, lowest held score) → (the ids on the host,
    # and those this batch sent: ids, scores, predicted classes), asked only when the batch changed the
    # top: only entering rows are classified
    classify: Callable[[Array, float], tuple[np.ndarray, ...]] | None = None


class Pipeline:
    def __init__(self, backend: Backend, metrics: Metrics) -> None:
        self.backend, self.metrics = backend, metrics

    def score(self, spec: Spec, batch: Batch, *, seq: int | None = 0, first_row: int = 0,
              feed: Feed | None = None) -> Scored:
        """Score one batch; an error names it as batch `seq` (unless None) from row `first_row` of the stream."""
        try:
            with self.metrics.kernel_seconds.labels(spec.strategy.name).time():
                scored = self._score(spec, batch, first_row, feed)
        except BadInput as err:
            if seq is None:
                raise
            raise err.in_batch(seq, first_row) from None
        self.metrics.scored(spec.strategy.name, self.backend.device_type, scored.rows, scored.nbytes)
        if scored.rows and spec.selection.kind == "top_k":  # a selection's keys are not its scores
            self.metrics.score_sample.observe(spec.strategy.name, self._sample(scored.scores))
        return scored

    def _sample(self, scores: Array) -> np.ndarray:
        """An evenly strided sample of a batch's scores on the host (a small copy from a GPU)."""
        step = max(1, int(scores.shape[0]) // 1024)
        return self.backend.to_numpy(scores[::step])

    def _score(self, spec: Spec, batch: Batch, first_row: int, feed: Feed | None) -> Scored:
        keys = list(batch.keys)
        x, emb, sent_ids, inputs, labeled = (self._view(batch, name)
                                             for name in ("logits", "embedding", "ids", "inputs", "labeled"))
        ran_model = inputs is not None
        if ran_model:
            x, emb = _through_model(feed, x, emb, inputs)
            self.metrics.inferred(feed.model.name, int(inputs.shape[0]) if inputs.ndim else 0)
        rows = rows_of(x if x is not None else emb, sent_ids, keys)
        if keys and sent_ids is not None:
            raise BadInput("keys", "send ids or keys, not both")
        if keys and len(keys) != rows:
            raise BadInput("keys", f"{len(keys)} keys for {rows} rows")
        check_keys(keys)
        if sent_ids is not None:
            check_ids(sent_ids, rows)
        ids = sent_ids if sent_ids is not None else self.backend.arange(first_row, rows)  # keys: the row number stands in
        if spec.selection.set_level:
            scores, host = self._candidates(spec, rows, x, emb, ids, labeled)
            return Scored(scores, ids, keys or None, rows, batch.nbytes, *((x, emb) if ran_model else (None, None)),
                          host=host, width=_width(x))
        if labeled is not None:
            raise BadInput("labeled", f"labeled embeddings seed coreset, not {spec.strategy.name}")
        scores = self.backend.score(spec.kernel, x, embedding=emb, ids=ids, options=spec.options)
        scores, classes = self._selection(spec, scores, ids, x)
        classify = None if classes is not None or not _has_classes(x) or not rows else self._classifier(
            x, scores, ids, first_row if sent_ids is None else None, spec.options.input_kind.value)
        return Scored(scores, ids, keys or None, rows, batch.nbytes, *((x, emb) if ran_model else (None, None)),
                      classes=classes, class_count=0 if classes is None else x.shape[-1], width=_width(x),
                      classify=classify)

    def _classifier(self, x: Array, scores: Array, ids: Array, first_row: int | None, kind: str):
        """(held ids, the lowest held score) → (the ids on the host, and of this batch's rows with a
        held id: ids, scores, classes). Row-numbered ids (none sent, or keys) are found by arithmetic;
        sent ids by a search among the rows scoring at least the lowest held score (few, but for the
        first batches). A sent id held twice is told apart by its scores (see ClassMap)."""
        b = self.backend
        host = lambda a: a if isinstance(a, np.ndarray) else b.to_numpy(a)  # noqa: E731 - a CPU top-K is NumPy's

        def classify(held: Array, floor: float) -> tuple[np.ndarray, ...]:
            held, s = host(held), host(scores)
            if first_row is not None:
                mine = held[(held >= first_row) & (held < first_row + x.shape[0])]
                at = mine - first_row
            else:
                near = np.flatnonzero(s >= floor)
                sent = host(ids)[near]
                hit = np.isin(sent, held)
                at, mine = near[hit], sent[hit]
            return held, mine, s[at].astype(np.float64), host(b.predicted_class(x, kind, rows=at))
        return classify

    def _candidates(self, spec: Spec, rows: int, x, emb, ids, labeled) -> tuple[Array, dict[str, np.ndarray]]:
        """A set-level batch: its pre-scores, and the host arrays its candidates' rows come from
        (EER also draws its reference sample by a second seeded hash of the ids)."""
        b = self.backend
        host = {"labeled": None if labeled is None else b.to_numpy(labeled)}
        if rows == 0:  # labeled seeds alone, or an empty batch
            empty = np.empty(0)
            return b.from_numpy(empty), {**host, "scores": empty, "ids": np.empty(0, np.int64)}
        scores = b.score(spec.kernel, x, embedding=emb, ids=ids, options=spec.options)
        host.update(scores=b.to_numpy(scores).astype(np.float64), ids=b.to_numpy(ids), x=None if x is None else b.to_numpy(x),
                    embedding=None if emb is None else b.to_numpy(emb))
        host["classes"] = _classes_on_host(b, host["x"] if _has_classes(x) else None, x, spec.options.input_kind.value, rows)
        if spec.selection.kind == "softrank":  # each candidate's Gumbel draw, seeded by (seed, id): its rank is known at finish
            host["gumbel"] = b.to_numpy(b.gumbel_keys(scores * 0, ids, spec.options.seed, 1.0, False)).astype(np.float64)
        if spec.selection.kind == "expected_error_reduction":
            ref = b.score(STRATEGIES["random"], None, ids=ids, options=replace(spec.options, seed=_reference_seed(spec)))
            host["reference_scores"] = b.to_numpy(ref).astype(np.float64)
        return scores, host

    def _selection(self, spec: Spec, scores: Array, ids: Array, x: Array | None) -> tuple[Array, Array | None]:
        """What a selection strategy adds to the pre-scores: Gumbel keys, or each row's class."""
        sel = spec.selection
        if sel.kind == "stochastic":
            return self.backend.gumbel_keys(scores, ids, spec.options.seed, sel.beta, sel.sampling == "power"), None
        if sel.kind == "class_balanced":
            if x is None:
                raise BadInput("logits", "class_balanced needs predictions to tell each row's class")
            return scores, self.backend.predicted_class(x, spec.options.input_kind.value)
        return scores, None

    def _view(self, batch: Batch, name: str) -> Array | None:
        raw = batch.tensor(name)
        return None if raw is None else self.backend.view(raw, name)


def _through_model(feed: Feed | None, x: Array | None, emb: Array | None, inputs: Array) -> tuple[Array, Array | None]:
    if feed is None:
        raise BadInput("inputs", "raw inputs need a model: name it in CreateSession or the first message")
    if x is not None:
        raise BadInput("inputs", "send logits or inputs, not both")
    logits, model_emb = feed.model.forward(inputs, feed.samples, feed.seed)
    return logits, emb if emb is not None else model_emb


def _has_classes(x) -> bool:
    """Predictions a class can be read from: [N, C] or [N, T, C], C ≥ 1 (`random` takes any x)."""
    return x is not None and x.ndim in (2, 3) and x.shape[-1] > 0


def _classes_on_host(b: Backend, x_host: np.ndarray | None, x: Array, kind: str, rows: int) -> np.ndarray:
    """A set-level batch's predicted classes (-1 without predictions), for the class shares: for
    [N, C] the argmax of x itself on the host copy (softmax and log keep the order), with no
    second copy to a device; [N, T, C] needs the mean p, which the backend computes."""
    if x_host is None:
        return np.full(rows, -1, np.int32)
    if x_host.ndim == 2:
        return x_host.argmax(-1).astype(np.int32)
    return b.to_numpy(b.predicted_class(x, kind)).astype(np.int32)


def _width(x) -> tuple[int, ...] | None:
    return None if x is None or x.ndim == 0 or x.shape[0] == 0 else tuple(int(n) for n in x.shape[1:])


def _reference_seed(spec: Spec) -> int:
    """EER's reference sample is drawn by its own hash, not the candidates' (a random pre-score's)."""
    return (spec.options.seed ^ 0x5DEECE66D) % 2**63
