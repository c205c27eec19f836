"""The torch kernel of each strategy, by name (random is scored from ids: hashing.py)."""
from __future__ import annotations

from typing import Callable

import torch

from poolscore.server.backends.torch import bayesian, committee, gradient, uncertainty

Kernel = Callable[[torch.Tensor, "torch.Tensor | None", torch.Tensor, str], torch.Tensor]

KERNELS: dict[str, Kernel] = {
    "least_confidence": uncertainty.least_confidence, "margin": uncertainty.margin, "ratio": uncertainty.ratio,
    "entropy": uncertainty.entropy, "variation_ratios": bayesian.variation_ratios,
    "predictive_entropy": bayesian.predictive_entropy, "bald": bayesian.bald,
    "vote_entropy": committee.vote_entropy, "kl_disagreement": committee.kl_disagreement,
    "kl_max_disagreement": committee.kl_max_disagreement,
    "expected_gradient_length": gradient.expected_gradient_length,
}
