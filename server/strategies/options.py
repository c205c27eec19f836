"""What a request says about its tensors and how to score them, parsed in one place.

Every way in reads options through `options_from`: a StrategySpec's fields (transport),
OIP request parameters, the CLI's flags and the ONNX scorer's arguments. A 0 (or an
absent value) for temperature or base means the default, as scoring.proto says."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any, Mapping

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


def entropy_divisor(entropic: bool, options: ScoreOptions, classes: int) -> float | None:
    """What an entropy in nats is divided by for `options`: log C when normalized, log base
    for another base, 1.0 when neither applies (or the score is no entropy); None when it is
    normalized at C = 1, which scores 0."""
    if not entropic:
        return 1.0
    if options.normalized:
        return math.log(classes) if classes > 1 else None
    return math.log(options.base) if options.base != math.e else 1.0


NAMES = tuple(f.name for f in fields(ScoreOptions))
_TYPES = {"input_kind": (str,), "temperature": (int, float), "base": (int, float), "normalized": (bool,),
          "seed": (int,)}


def options_from(values: Mapping[str, Any], prefix: str = "options") -> ScoreOptions:
    """ScoreOptions from a mapping of option names; errors name the field as `prefix.name`.

    Absent names, None, and a temperature or base of 0 take the defaults. Names that are not
    options are the caller's to refuse or to pass over (an OIP request has other parameters)."""
    given = {k: v for k, v in values.items() if k in NAMES and v is not None}
    for name, value in given.items():
        ok = _TYPES[name]
        if not isinstance(value, ok) or (bool not in ok and isinstance(value, bool)):
            kind = " or ".join(t.__name__ for t in ok)
            raise BadInput(f"{prefix}.{name}", f"must be {kind}, got {type(value).__name__} {value!r}")
    for name in ("temperature", "base"):
        if given.get(name) == 0:
            del given[name]
    try:
        return ScoreOptions(**given)
    except BadInput as err:  # named as the caller spells it
        raise BadInput(err.field.replace("options.", f"{prefix}.", 1), err.problem, err.row) from None
