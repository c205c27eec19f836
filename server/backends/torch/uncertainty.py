"""Uncertainty sampling on one prediction per item: x is [N, C], the score is [N]."""
from __future__ import annotations

import torch

from poolscore.server.backends.torch.softmax import logits_of, softmax


def least_confidence(x: torch.Tensor, emb: torch.Tensor | None, inv_t: torch.Tensor, kind: str) -> torch.Tensor:
    """1 - max_c p_c = rest / (1 + rest): no probability formed, no cancellation."""
    z = logits_of(x, kind)
    sm = softmax(z, inv_t)
    rest = sm.rest.squeeze(-1)
    return rest / (1.0 + rest) + sm.guard(z, kind)


def margin(x: torch.Tensor, emb: torch.Tensor | None, inv_t: torch.Tensor, kind: str) -> torch.Tensor:
    """1 - (p_(1) - p_(2)) = (rest + e_(2)) / (1 + rest), e_(2) = exp(z_(2) - z_(1))."""
    z = logits_of(x, kind)
    sm = softmax(z, inv_t)
    rest = sm.rest.squeeze(-1)
    return (rest + sm.runner_up()) / (1.0 + rest) + sm.guard(z, kind)


def ratio(x: torch.Tensor, emb: torch.Tensor | None, inv_t: torch.Tensor, kind: str) -> torch.Tensor:
    """p_(2) / p_(1) = exp(z_(2) - z_(1)): the normaliser cancels."""
    z = logits_of(x, kind)
    sm = softmax(z, inv_t)  # its unused sums are dropped by the compiler
    return sm.runner_up() + sm.guard(z, kind)


def entropy(x: torch.Tensor, emb: torch.Tensor | None, inv_t: torch.Tensor, kind: str) -> torch.Tensor:
    """-Σ p log p in nats (the scorer rescales for bits or normalisation)."""
    z = logits_of(x, kind)
    sm = softmax(z, inv_t)
    return sm.entropy() + sm.guard(z, kind)
