"""Shared math of the kernels: raw input → stable softmax statistics, and the row guard.

Every kernel reduces over the class axis from the same three tensors, `d = z - max z`,
`e = exp(d)` and `s = Σ e`, so that torch.compile fuses a whole strategy into one pass
and no softmax is materialised twice. `p = e / s`, `log p = d - log s`.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

NAN = float("nan")


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 stays float64; every narrower float accumulates in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def logits_of(x: torch.Tensor, kind: str, inv_t: torch.Tensor) -> torch.Tensor:
    """Logit-like values in the compute dtype: softmax of them gives the row's probabilities.

    Log-probabilities are logits already; probabilities become log p (a zero gives -inf, a
    class of zero probability). `inv_t` is 1/temperature as a 0-d tensor, so a new
    temperature reuses the compiled kernel.
    """
    z = x.to(compute_dtype(x))
    if kind == "probabilities":
        z = torch.log(z)
    return z * inv_t.to(z.dtype)


def row_guard(x: torch.Tensor, kind: str) -> torch.Tensor:
    """0 where a row (all but the class axis kept) is valid input of `kind`, NaN where not.

    Added to the scores inside the fused pass, so validation costs no extra pass over the
    bytes: a NaN score marks the row, and only then is the row looked at again.
    """
    lo, hi = x.amin(-1), x.amax(-1)  # NaN propagates through both
    if kind == "logits":
        ok = torch.isfinite(lo) & torch.isfinite(hi)
    elif kind == "probabilities":
        ok = (lo >= 0) & torch.isfinite(hi) & (hi > 0)
    else:  # log-probabilities: -inf is log 0, allowed while some class is finite
        ok = ~torch.isnan(lo) & torch.isfinite(hi)
    while ok.dim() > 1:  # [N, T] → [N]: one bad sample spoils the item
        ok = ok.all(-1)
    return torch.where(ok, 0.0, NAN).to(compute_dtype(x))


class Softmax(NamedTuple):
    d: torch.Tensor  # z - max z, [..., C]; -inf for classes of zero probability
    e: torch.Tensor  # exp(d), [..., C]
    rest: torch.Tensor  # Σ e - 1 = Σ e over all but one maximum, [..., 1]

    @property
    def s(self) -> torch.Tensor:
        """Σ e, [..., 1] (kept for broadcasting)."""
        return 1.0 + self.rest

    @property
    def p(self) -> torch.Tensor:
        return self.e / self.s

    def entropy(self) -> torch.Tensor:
        """H = log s - Σ e·d / s, with 0·log 0 = 0; [...].

        log1p(rest) and the Σ e·d of the non-max terms are both sums of small positive
        parts for a confident row, so H keeps full relative precision down to 1e-30.
        """
        plogp = torch.where(self.e > 0, self.e * self.d, 0.0)
        return torch.log1p(self.rest.squeeze(-1)) - plogp.sum(-1) / self.s.squeeze(-1)


def softmax(z: torch.Tensor) -> Softmax:
    """Stable softmax statistics. `rest` is summed without the max's exact 1, so that
    1 - p_max = rest / (1 + rest) does not cancel to 0 for a confident row."""
    d = z - z.amax(-1, keepdim=True)
    e = torch.exp(d)
    below = torch.where(d < 0, e, 0.0).sum(-1, keepdim=True)
    ties = (d == 0).sum(-1, keepdim=True) - 1  # extra maxima, each contributing e = 1
    return Softmax(d, e, below + ties.to(e.dtype))


def entropy_of_probabilities(p: torch.Tensor) -> torch.Tensor:
    """-Σ p log p over the last axis, 0·log 0 = 0."""
    return -torch.special.xlogy(p, p).sum(-1)


def class_counts(labels: torch.Tensor, classes: int, dtype: torch.dtype) -> torch.Tensor:
    """[N, T] class indices → [N, C] counts, in one scatter (no one-hot of [N, T, C])."""
    counts = torch.zeros(labels.shape[0], classes, dtype=dtype, device=labels.device)
    return counts.scatter_add_(1, labels, torch.ones_like(labels, dtype=dtype))
