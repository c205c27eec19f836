"""What a request says about its tensors and how to score them."""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from poolscore.server.errors import BadInput


class InputKind(str, Enum):
    """What the class axis holds. The request says which; the service never guesses."""

    LOGITS = "logits"
    PROBABILITIES = "probabilities"
    LOG_PROBABILITIES = "log_probabilities"


@dataclass(frozen=True)
class ScoreOptions:
    input_kind: InputKind = InputKind.LOGITS
    temperature: float = 1.0  # p = softmax(z / T); probabilities are tempered as log p / T
    base: float = math.e  # entropies in nats; 2 gives bits
    normalized: bool = False  # entropies ÷ log C, so a uniform row scores 1
    seed: int = 0  # `random`: the score is a hash of (seed, id)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "input_kind", InputKind(self.input_kind))
        except ValueError:
            kinds = ", ".join(k.value for k in InputKind)
            raise BadInput("options.input_kind", f"{self.input_kind!r} is not one of {kinds}") from None
        if not -(2**63) <= self.seed < 2**63:
            raise BadInput("options.seed", f"must fit in int64, got {self.seed}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise BadInput("options.temperature", f"must be a finite number > 0, got {self.temperature}")
        if not (math.isfinite(self.base) and self.base > 1):
            raise BadInput("options.base", f"must be a finite number > 1, got {self.base}")
