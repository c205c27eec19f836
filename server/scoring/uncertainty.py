"""Uncertainty sampling on one prediction per item: x is [N, C], the score is [N]."""
from __future__ import annotations

import torch

from poolscore.server.scoring.softmax import logits_of, row_guard, softmax


def least_confidence(x: torch.Tensor, emb: torch.Tensor | None, inv_t: torch.Tensor, kind: str) -> torch.Tensor:
    """1 - max_c p_c; p_max = e_max / s = 1 / s, so no probability is formed."""
    sm = softmax(logits_of(x, kind, inv_t))
    return 1.0 - 1.0 / sm.s.squeeze(-1) + row_guard(x, kind)


def margin(x: torch.Tensor, emb: torch.Tensor | None, inv_t: torch.Tensor, kind: str) -> torch.Tensor:
    """1 - (p_(1) - p_(2)) = 1 - (1 - exp(d_(2))) / s, d_(2) the runner-up's z - max z."""
    z = logits_of(x, kind, inv_t)
    top2 = torch.topk(z, 2, dim=-1).values
    runner_up = torch.exp(top2[..., 1] - top2[..., 0])
    s = torch.exp(z - top2[..., :1]).sum(-1)
    return 1.0 - (1.0 - runner_up) / s + row_guard(x, kind)


def ratio(x: torch.Tensor, emb: torch.Tensor | None, inv_t: torch.Tensor, kind: str) -> torch.Tensor:
    """p_(2) / p_(1) = exp(z_(2) - z_(1)): the normaliser cancels."""
    top2 = torch.topk(logits_of(x, kind, inv_t), 2, dim=-1).values
    return torch.exp(top2[..., 1] - top2[..., 0]) + row_guard(x, kind)


def entropy(x: torch.Tensor, emb: torch.Tensor | None, inv_t: torch.Tensor, kind: str) -> torch.Tensor:
    """-Σ p log p in nats (the scorer rescales for bits or normalisation)."""
    return softmax(logits_of(x, kind, inv_t)).entropy() + row_guard(x, kind)
