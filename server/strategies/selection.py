"""How a session picks its K from the scores: the plain top-K, or a selection strategy over a
pre-score (stochastic sampling, class-balanced quotas, or a set-level strategy over a candidate
set), and their options, parsed in one place."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from poolscore.server.errors import BadInput
from poolscore.server.strategies.registry import STRATEGIES, Strategy, strategy_named

SAMPLINGS = ("softmax", "power", "softrank")
LOSSES = ("entropy", "zero_one")
CANDIDATES_PER_K = 10  # a set-level session's candidate set holds M = 10·K items unless the request says
DEFAULT_REFERENCE = 1000  # expected_error_reduction's reference sample


@dataclass(frozen=True)
class Selection:
    kind: str = "top_k"  # top_k, stochastic, class_balanced, softrank (stochastic over a candidate set), or a set-level name
    beta: float = 1.0  # stochastic: p ∝ exp(β·s) (softmax), s^β (power) or rank^-β (softrank)
    sampling: str = "softmax"
    priors: tuple[float, ...] = ()  # class_balanced: quotas ∝ priors; () = equal
    candidates: int = 0  # set-level: M, the candidate set's size; 0 = CANDIDATES_PER_K · k
    eta: float = 0.0  # expected_error_reduction: the step size; 0 = 10 / mean ‖h‖² over the reference
    reference: int = 0  # expected_error_reduction: R, the reference sample's size
    loss: str = ""  # expected_error_reduction: "entropy" or "zero_one"

    @property
    def set_level(self) -> bool:
        return self.kind not in ("top_k", "stochastic", "class_balanced")

    def m(self, k: int) -> int:
        return self.candidates or CANDIDATES_PER_K * k

    def describe(self) -> str:
        if self.kind in ("stochastic", "softrank"):
            text = f", {self.sampling} sampling, beta {self.beta:g}"
            return text + (f", candidates {self.candidates or 'default'}" if self.kind == "softrank" else "")
        if self.kind == "class_balanced":
            return f", class priors {list(self.priors) or 'equal'}"
        if self.kind == "expected_error_reduction":
            return f", candidates {self.candidates or 'default'}, reference {self.reference}, eta {self.eta:g}, loss {self.loss}"
        if self.set_level:
            return f", candidates {self.candidates or 'default'}"
        return ""


def selection_for(strategy: Strategy, values: Mapping[str, Any], prefix: str) -> tuple[Strategy, Selection]:
    """The strategy whose kernel runs, and how the session selects; BadInput names a bad option."""
    given = {n: values.get(n) for n in _OWNERS if values.get(n)}
    for name in given:
        owners = _OWNERS[name]
        if strategy.name not in owners and not ("set-level" in owners and strategy.set_level):
            said = ", ".join(o.replace("set-level", "the set-level strategies") for o in owners)
            raise BadInput(f"{prefix}.{name}", f"applies to {said}, not {strategy.name}")
    if not strategy.selects:
        return strategy, Selection()
    pre = strategy_named(given.get("pre_score") or strategy.default_pre_score)
    if pre.selects:
        raise BadInput(f"{prefix}.pre_score", f"must be a pointwise strategy, got {pre.name}; one of "
                                              f"{', '.join(sorted(n for n, s in STRATEGIES.items() if s.pointwise))}")
    if strategy.name == "stochastic":
        sampling = _sampling(given.get("sampling", ""), prefix)
        if "candidates" in given and sampling != "softrank":
            raise BadInput(f"{prefix}.candidates", f"applies to softrank sampling, not {sampling}: it streams in O(K)")
        kind = "softrank" if sampling == "softrank" else "stochastic"  # ranks need the candidate set
        return pre, Selection(kind, _beta(given.get("beta", 0.0), prefix), sampling, candidates=int(given.get("candidates", 0)))
    if strategy.name == "class_balanced":
        return pre, Selection("class_balanced", priors=_priors(tuple(given.get("class_priors", ())), prefix))
    return pre, _set_level(strategy, pre, given, prefix)


_OWNERS = {"pre_score": ("stochastic", "class_balanced", "set-level"), "beta": ("stochastic",),
           "sampling": ("stochastic",), "class_priors": ("class_balanced",), "candidates": ("stochastic", "set-level"),
           "eta": ("expected_error_reduction",), "reference": ("expected_error_reduction",),
           "loss": ("expected_error_reduction",)}


def _set_level(strategy: Strategy, pre: Strategy, given: Mapping[str, Any], prefix: str) -> Selection:
    needs_samples = strategy.name == "batch_bald"
    if "log_probs" in strategy.keeps and not pre.scores_ids and (pre.rank == 3) != needs_samples:
        shape = "[N, T, C]" if needs_samples else "[N, C]"
        raise BadInput(f"{prefix}.pre_score", f"{strategy.name} keeps predictions shaped {shape}; "
                                              f"{pre.name} scores {pre.shape}")
    m, eta, ref = given.get("candidates", 0), given.get("eta", 0.0), given.get("reference", 0)
    if m < 0:
        raise BadInput(f"{prefix}.candidates", f"must be ≥ 0 (0: {CANDIDATES_PER_K}·k), got {m}")
    if not (math.isfinite(eta) and eta >= 0):
        raise BadInput(f"{prefix}.eta", f"must be a finite number ≥ 0 (0: 10 / mean |h|²), got {eta}")
    if ref < 0:
        raise BadInput(f"{prefix}.reference", f"must be ≥ 0 (0: {DEFAULT_REFERENCE}), got {ref}")
    loss = given.get("loss") or "entropy"
    if loss not in LOSSES:
        raise BadInput(f"{prefix}.loss", f"{loss!r} is not one of {', '.join(LOSSES)}")
    eer = strategy.name == "expected_error_reduction"
    return Selection(strategy.name, candidates=int(m), eta=float(eta), reference=int(ref or DEFAULT_REFERENCE) if eer else 0,
                     loss=loss if eer else "")


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
