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


def logits_of(x: torch.Tensor, kind: str) -> torch.Tensor:
    """Logit-like values in the compute dtype: softmax of them gives the row's probabilities.

    Log-probabilities are logits already; probabilities become log p (a zero gives -inf, a
    class of zero probability). The temperature is applied by `softmax`, after the max is
    subtracted (argmax-based scores need none).
    """
    z = x.to(compute_dtype(x))
    if kind == "probabilities":
        z = torch.log(z)
    return z


def row_guard(z: torch.Tensor, m: torch.Tensor, kind: str) -> torch.Tensor:
    """0 where a row (all but the class axis kept) is valid input of `kind`, NaN where not.

    Added to the scores inside the fused pass, so validation costs no pass of its own: it
    reuses the row max `m` of z (NaN and +inf make it non-finite, an all -inf row too) and
    adds at most one min. A NaN score marks the row, and only then is the row looked at again.
    """
    ok = torch.isfinite(m)  # a negative probability is NaN in z = log p, and the max propagates NaN
    if kind == "logits":  # -inf is no logit (in probabilities and log-probabilities, it is p = 0)
        ok = ok & torch.isfinite(z.amin(-1))
    while ok.dim() > 1:  # [N, T] → [N]: one bad sample spoils the item
        ok = ok.all(-1)
    return torch.where(ok, 0.0, NAN).to(z.dtype)


class Softmax(NamedTuple):
    m: torch.Tensor  # max z, [...]
    tied: torch.Tensor  # the max is reached by 2+ classes, [..., 1]
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

    def guard(self, z: torch.Tensor, kind: str) -> torch.Tensor:
        return row_guard(z, self.m, kind)

    def runner_up(self) -> torch.Tensor:
        """p_(2) / p_(1) = exp(z_(2) - z_(1)), [...]: 1 when the max is tied.

        A max over d < 0 instead of torch.topk, which inductor does not fuse (5% of
        memcpy); tied maxima are the rows whose `rest` took the Σe - 1 branch (≥ 1).
        """
        second = torch.where(self.d < 0, self.d, -torch.inf).amax(-1)
        return torch.where(self.ties, 1.0, torch.exp(second))

    @property
    def ties(self) -> torch.Tensor:
        return self.tied.squeeze(-1)


def softmax(z: torch.Tensor, inv_t: torch.Tensor) -> Softmax:
    """Stable softmax statistics of z / T in one read of z after its max.

    `inv_t` is 1/T as a 0-d tensor (a new temperature reuses the compiled kernel), applied to
    d = z - max z rather than to z: two close large logits (1e4 apart from 0) subtract exactly
    first, so an inexact 1/T (1/3) costs d a rounding of its own size, not of the logits'.

    `rest` sums the non-max terms without the max's exact 1, so that 1 - p_max =
    rest / (1 + rest) does not cancel to 0 for a confident row. Tied maxima (Σe - below
    ≥ 2) take Σe - 1 instead, where rest ≥ 1 needs no such care; a count of the ties
    would cost a fourth reduction per row, which at C = 10 costs a third of the speed.
    """
    m = z.amax(-1, keepdim=True)
    d = (z - m) * inv_t.to(z.dtype)
    e = torch.exp(d)
    below = torch.where(d < 0, e, 0.0).sum(-1, keepdim=True)
    total = e.sum(-1, keepdim=True)
    tied = total - below > 1.5
    return Softmax(m.squeeze(-1), tied, d, e, torch.where(tied, total - 1.0, below))


def entropy_of_probabilities(p: torch.Tensor) -> torch.Tensor:
    """-Σ p log p over the last axis, 0·log 0 = 0.

    A where() rather than xlogy: inductor's CPU code runs xlogy one lane at a time (a scalar
    log per element, in its output code), this as vector ops; for p ≥ 0 they agree."""
    return -torch.where(p > 0, p * torch.log(p), 0.0).sum(-1)


def first_argmax(z: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """argmax over the last axis (the first of tied maxima, as torch.argmax), given m = z.amax(-1).

    A min over the classes equal to the max: inductor vectorises that reduction, where its
    argmax keeps an index beside each lane's value; at C = 100 it runs 1.9x faster. A row with
    NaN (m is NaN, nothing equals it) gets class C - 1, a stand-in: the row guard marks it.
    Rows-inner (the classes strided, relayout.py) keeps torch's argmax: there it is 2x faster."""
    if z.stride(-1) != 1 and z.shape[-1] > 1:
        return z.argmax(-1)
    c = z.shape[-1]
    at = torch.where(z == m.unsqueeze(-1), torch.arange(c, device=z.device), c).amin(-1)
    return at.clamp_max(c - 1)


def class_counts(labels: torch.Tensor, classes: int, dtype: torch.dtype) -> torch.Tensor:
    """[N, T] class indices → [N, C] counts, in one scatter (no one-hot of [N, T, C])."""
    counts = torch.zeros(labels.shape[0], classes, dtype=dtype, device=labels.device)
    return counts.scatter_add_(1, labels, torch.ones_like(labels, dtype=dtype))
