"""What a request asks for (the strategy and its options, a hosted model) and the TopK it gets back."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from poolscore.v1 import scoring_pb2 as pb

_KINDS = {"logits": pb.LOGITS, "probabilities": pb.PROBABILITIES, "log_probabilities": pb.LOG_PROBABILITIES}
_OPTIONS = ("input_kind", "temperature", "base", "normalized", "seed", "pre_score", "beta", "sampling", "class_priors",
            "candidates", "eta", "reference", "loss")


@dataclass(frozen=True, eq=False)
class TopK:
    ids: np.ndarray  # int64, best first (empty when the pool was keyed by strings)
    scores: np.ndarray  # float64, aligned
    keys: list[str] = field(default_factory=list)  # string ids, when the pool had them
    items: int = 0  # items scored

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, TopK) and np.array_equal(self.ids, other.ids)
                and np.array_equal(self.scores, other.scores) and self.keys == other.keys)

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def from_pb(cls, m: pb.TopK) -> "TopK":
        return cls(np.array(m.ids, np.int64), np.array(m.scores, np.float64), list(m.keys), m.items)


def model_spec(model: str | None, samples: int, seed: int) -> pb.ModelSpec | None:
    """A hosted model to run raw inputs through (None: batches carry logits)."""
    return pb.ModelSpec(name=model, samples=samples, seed=seed) if model else None


def strategy_spec(strategy: str, options: dict) -> pb.StrategySpec:
    unknown = set(options) - set(_OPTIONS)
    if unknown:
        raise TypeError(f"unknown scoring options {sorted(unknown)}; known: {', '.join(_OPTIONS)}")
    kind = options.get("input_kind", "logits")
    if kind not in _KINDS:
        raise ValueError(f"input_kind must be one of {', '.join(_KINDS)}, got {kind!r}")
    given = {k: v for k, v in options.items() if k != "input_kind" and v is not None}  # absent: the server's default
    return pb.StrategySpec(name=strategy, input_kind=_KINDS[kind], **given)
