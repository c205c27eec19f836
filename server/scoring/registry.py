"""Every strategy the service knows, with what it takes: one row of DESIGN.md's table each."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from poolscore.server.errors import UnknownStrategy
from poolscore.server.scoring import bayesian, committee, gradient, uncertainty

Kernel = Callable[[torch.Tensor, "torch.Tensor | None", torch.Tensor, str], torch.Tensor]


@dataclass(frozen=True)
class Strategy:
    name: str
    kernel: Kernel | None  # None: scored from ids alone (random)
    shape: str  # the input's axes, as ServerInfo shows them: "[N, C]", "[N, T, C]", ...
    summary: str
    needs_embedding: bool = False
    min_classes: int = 1
    entropic: bool = False  # the score is an entropy: base and normalized options apply

    @property
    def rank(self) -> int:
        return self.shape.count(",") + 1 if self.kernel is not None else 1


_ALL = [
    Strategy("least_confidence", uncertainty.least_confidence, "[N, C]", "1 - max p"),
    Strategy("margin", uncertainty.margin, "[N, C]", "1 - (p(1) - p(2))", min_classes=2),
    Strategy("ratio", uncertainty.ratio, "[N, C]", "p(2) / p(1)", min_classes=2),
    Strategy("entropy", uncertainty.entropy, "[N, C]", "-sum p log p", entropic=True),
    Strategy("variation_ratios", bayesian.variation_ratios, "[N, T, C]", "1 - modal votes / T"),
    Strategy("predictive_entropy", bayesian.predictive_entropy, "[N, T, C]", "H(mean_t p_t)", entropic=True),
    Strategy("bald", bayesian.bald, "[N, T, C]", "H(mean_t p_t) - mean_t H(p_t)", entropic=True),
    Strategy("vote_entropy", committee.vote_entropy, "[N, M, C]", "entropy of the members' votes", entropic=True),
    Strategy("kl_disagreement", committee.kl_disagreement, "[N, M, C]", "mean_m KL(p_m || mean p)", entropic=True),
    Strategy("kl_max_disagreement", committee.kl_max_disagreement, "[N, M, C]", "max_m KL(p_m || mean p)", entropic=True),
    Strategy("expected_gradient_length", gradient.expected_gradient_length, "[N, C]",
             "|h| sum_c p_c |p - e_c| (embedding h [N, D])", needs_embedding=True),
    Strategy("random", None, "[N] ids", "uniform from a seeded hash of the id"),
]

STRATEGIES: dict[str, Strategy] = {s.name: s for s in _ALL}


def strategy_named(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise UnknownStrategy(name, list(STRATEGIES)) from None
