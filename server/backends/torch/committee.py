"""Query by committee: x is [N, M, C], one prediction per member; the score is [N]."""
from __future__ import annotations

import torch

from poolscore.server.backends.torch.softmax import (
    class_counts, entropy_of_probabilities, logits_of, row_guard, softmax,
)


def vote_entropy(x: torch.Tensor, emb: torch.Tensor | None, inv_t: torch.Tensor, kind: str) -> torch.Tensor:
    """-Σ_c (V_c/M) log(V_c/M), V_c = members whose argmax is c.

    The shares are sorted before they are summed, so that equal counts over other classes
    (a permutation of one vote pattern) sum in one order and tie exactly."""
    z = logits_of(x, kind)
    share = class_counts(z.argmax(-1), x.shape[-1], z.dtype) / x.shape[1]  # argmax: [N, M]
    return entropy_of_probabilities(share.sort(-1).values) + row_guard(z, z.amax(-1), kind)


def _kl_to_mean(x: torch.Tensor, inv_t: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """KL(p_m ‖ p̄) per member, [N, M] (terms with p_m,c = 0 are 0), and the row guard."""
    z = logits_of(x, kind)
    sm = softmax(z, inv_t)
    p = sm.p
    log_p = sm.d - torch.log(sm.s)
    log_mean = torch.log(p.mean(1, keepdim=True))
    return torch.where(p > 0, p * (log_p - log_mean), 0.0).sum(-1), sm.guard(z, kind)


def kl_disagreement(x: torch.Tensor, emb: torch.Tensor | None, inv_t: torch.Tensor, kind: str) -> torch.Tensor:
    """mean_m KL(p_m ‖ p̄) (McCallum & Nigam 1998)."""
    kl, guard = _kl_to_mean(x, inv_t, kind)
    return kl.mean(1).clamp_min(0.0) + guard


def kl_max_disagreement(x: torch.Tensor, emb: torch.Tensor | None, inv_t: torch.Tensor, kind: str) -> torch.Tensor:
    """max_m KL(p_m ‖ p̄): the most disagreeing member (modAL's KL_max_disagreement)."""
    kl, guard = _kl_to_mean(x, inv_t, kind)
    return kl.amax(1).clamp_min(0.0) + guard
