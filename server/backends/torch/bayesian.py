"""Scores over a sample axis (MC-dropout passes): x is [N, T, C], the score is [N]."""
from __future__ import annotations

import torch

from poolscore.server.backends.torch.softmax import (
    class_counts, entropy_of_probabilities, first_argmax, logits_of, row_guard, softmax,
)


def variation_ratios(x: torch.Tensor, emb: torch.Tensor | None, inv_t: torch.Tensor, kind: str) -> torch.Tensor:
    """1 - (count of the modal argmax) / T; ties in a pass's argmax go to the lower class."""
    z = logits_of(x, kind)
    m = z.amax(-1)
    modal = class_counts(first_argmax(z, m), x.shape[-1], z.dtype).amax(-1)  # argmax: [N, T]
    return 1.0 - modal / x.shape[1] + row_guard(z, m, kind)


def predictive_entropy(x: torch.Tensor, emb: torch.Tensor | None, inv_t: torch.Tensor, kind: str) -> torch.Tensor:
    """H(p̄), p̄ = mean_t p_t."""
    z = logits_of(x, kind)
    sm = softmax(z, inv_t)
    return entropy_of_probabilities(sm.p.mean(1)) + sm.guard(z, kind)  # p̄: [N, C]


def bald(x: torch.Tensor, emb: torch.Tensor | None, inv_t: torch.Tensor, kind: str) -> torch.Tensor:
    """H(p̄) - mean_t H(p_t): the mutual information of label and weights.

    It is ≥ 0 in exact arithmetic; clamping removes rounding below zero, nothing else.
    """
    z = logits_of(x, kind)
    sm = softmax(z, inv_t)
    mi = entropy_of_probabilities(sm.p.mean(1)) - sm.entropy().mean(1)
    return mi.clamp_min(0.0) + sm.guard(z, kind)
