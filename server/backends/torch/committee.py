"""Query by committee: x is [N, M, C], one prediction per member; the score is [N]."""
from __future__ import annotations

import torch

from poolscore.server.backends.torch.softmax import class_counts, first_argmax, logits_of, row_guard, softmax


def vote_entropy(x: torch.Tensor, emb: torch.Tensor | None, inv_t: torch.Tensor, kind: str) -> torch.Tensor:
    """-Σ_c (V_c/M) log(V_c/M), V_c = members whose argmax is c.

    Summed by vote count rather than by class: Σ_v h_v·e_v, h_v = the classes with v votes and
    e_v = -(v/M) log(v/M). Equal counts over other classes (one vote pattern, permuted) then
    give the same sum in the same order and tie exactly, with no sort of the classes."""
    z = logits_of(x, kind)
    members = x.shape[1]
    m = z.amax(-1)
    counts = class_counts(first_argmax(z, m), x.shape[-1], torch.int64)  # argmax: [N, M] → counts [N, C]
    h = class_counts(counts, members + 1, z.dtype)  # [N, M + 1]
    share = torch.arange(members + 1, dtype=torch.float64, device=z.device) / members
    e = (-torch.special.xlogy(share, share)).to(z.dtype)  # [M + 1]
    return (h * e).sum(-1) + row_guard(z, m, kind)


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
