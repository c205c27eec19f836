"""Expected model change: the expected norm of the last layer's cross-entropy gradient."""
from __future__ import annotations

import torch

from poolscore.server.backends.torch.softmax import logits_of, softmax


def expected_gradient_length(x: torch.Tensor, emb: torch.Tensor | None, inv_t: torch.Tensor, kind: str) -> torch.Tensor:
    """‖h‖ · Σ_c p_c ‖p - e_c‖₂ for logits [N, C] and embedding h [N, D].

    The gradient of CE(label c) w.r.t. the last layer W is (p - e_c) ⊗ h, whose norm is
    ‖p - e_c‖·‖h‖; ‖p - e_c‖² = Σp² - 2p_c + 1 keeps it O(C), with no [N, C, C] tensor.
    For the top class of a confident row that form cancels, so there it is
    (rest / s)·sqrt(1 + Σ_{d<0} (e/rest)²): (1 - p_top)² plus the others' p², factored.
    """
    assert emb is not None, "the registry declares that this strategy needs an embedding"
    z = logits_of(x, kind)
    sm = softmax(z, inv_t)
    p = sm.p
    sq = (p * p).sum(-1, keepdim=True)
    dist = torch.sqrt((sq - 2.0 * p + 1.0).clamp_min(0.0))
    safe_rest = torch.where(sm.rest > 0, sm.rest, 1.0)
    others = torch.where(sm.d < 0, sm.e / safe_rest, 0.0)
    top = sm.rest * torch.sqrt(1.0 + (others * others).sum(-1, keepdim=True)) / sm.s  # [N, 1]
    dist = torch.where((sm.d == 0) & ~sm.tied, top, dist)
    h = emb.to(p.dtype)
    emb_ok = torch.where(torch.isfinite(h.sum(-1)), 0.0, float("nan"))  # NaN/Inf anywhere in h
    return torch.linalg.vector_norm(h, dim=-1) * (p * dist).sum(-1) + sm.guard(z, kind) + emb_ok
