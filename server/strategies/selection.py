"""How a session picks its K from the scores: the plain top-K, or a selection strategy over a
pre-score (stochastic sampling, class-balanced quotas), and their options, parsed in one place."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from poolscore.server.errors import BadInput
from poolscore.server.strategies.registry import STRATEGIES, Strategy, strategy_named

SAMPLINGS = ("softmax", "power")
DEFAULT_PRE_SCORE = "margin"


@dataclass(frozen=True)
class Selection:
    kind: str = "top_k"  # top_k, stochastic or class_balanced
    beta: float = 1.0  # stochastic: p ∝ exp(β·s) (softmax) or s^β (power)
    sampling: str = "softmax"
    priors: tuple[float, ...] = ()  # class_balanced: quotas ∝ priors; () = equal

    def describe(self) -> str:
        if self.kind == "stochastic":
            return f", {self.sampling} sampling, beta {self.beta:g}"
        if self.kind == "class_balanced":
            return f", class priors {list(self.priors) or 'equal'}"
        return ""


def selection_for(strategy: Strategy, values: Mapping[str, Any], prefix: str) -> tuple[Strategy, Selection]:
    """The strategy whose kernel runs, and how the session selects; BadInput names a bad option."""
    pre_name = values.get("pre_score") or ""
    beta, sampling, priors = values.get("beta") or 0.0, values.get("sampling") or "", tuple(values.get("class_priors") or ())
    if not strategy.selects:
        given = [n for n, v in (("pre_score", pre_name), ("beta", beta), ("sampling", sampling), ("class_priors", priors)) if v]
        if given:
            raise BadInput(f"{prefix}.{given[0]}", f"applies to stochastic and class_balanced, not {strategy.name}")
        return strategy, Selection()
    pre = strategy_named(pre_name or DEFAULT_PRE_SCORE)
    if pre.selects:
        raise BadInput(f"{prefix}.pre_score", f"must be a pointwise strategy, got {pre.name}; one of "
                                              f"{', '.join(sorted(n for n, s in STRATEGIES.items() if s.pointwise))}")
    if strategy.name == "stochastic":
        return pre, Selection("stochastic", _beta(beta, prefix), _sampling(sampling, prefix))
    return pre, Selection("class_balanced", priors=_priors(priors, prefix))


def _beta(beta: float, prefix: str) -> float:
    beta = beta or 1.0
    if not (math.isfinite(beta) and beta > 0):
        raise BadInput(f"{prefix}.beta", f"must be a finite number > 0, got {beta}")
    return float(beta)


def _sampling(sampling: str, prefix: str) -> str:
    sampling = sampling or "softmax"
    if sampling not in SAMPLINGS:
        raise BadInput(f"{prefix}.sampling", f"{sampling!r} is not one of {', '.join(SAMPLINGS)}")
    return sampling


def _priors(priors: Sequence[float], prefix: str) -> tuple[float, ...]:
    if any(not (math.isfinite(p) and p >= 0) for p in priors) or (priors and sum(priors) <= 0):
        raise BadInput(f"{prefix}.class_priors", f"must be finite, ≥ 0 and not all 0, got {list(priors)}")
    return tuple(float(p) for p in priors)
