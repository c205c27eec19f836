"""expected_error_reduction (Roy & McCallum 2001), exact for one last-layer step, batched.

For a softmax head z = W h (+ b), labelling candidate x with y and taking one gradient step of
the cross-entropy moves W by −η (p_x − e_y) h_xᵀ, so a reference item r's logits move by
−η (h_x·h_r)(p_x − e_y). Its log-probabilities are what the stream sent (with the request's
input kind and temperature), so W itself is never needed: z'_r = log p_r − η s (p_x − e_y),
s = h_x·h_r. Score(x) = L(now) − Σ_y p_x(y) · L(after labelling x with y), L the mean loss
(entropy, or the expected 0/1 loss 1 − max p) over the reference sample.

No classifier is refitted, and the C labels cost no more than one: with u = log p_r − η s p_x,
label y only adds η s to u_y, so each loss after a step is a correction of sums over u taken
once (Σ e^u, Σ e^u·u, the top two of u): O(M·R·C) in all, not O(M·R·C²). Float64 throughout."""
from __future__ import annotations

import numpy as np

BLOCK_ELEMENTS = 1 << 21  # candidates per block: B·R·C float64 elements of each temporary


STEP = 10.0  # the default η·‖h‖²: a step that learns the label


def default_eta(ref_emb: np.ndarray) -> float:
    """STEP / mean ‖h‖² over the reference: labelling a typical item y lifts its own logit for y by
    ≈ 10·(1 − p_y), so the step learns the label, as a refit would. A small step learns nothing in
    expectation: E_y[p_x − e_y] = 0 cancels the first-order change, and the second-order rest
    ranks confident candidates first (measured against modAL's refits, bench/setlevel.py)."""
    mean = float(np.einsum("ij,ij->i", ref_emb, ref_emb, dtype=np.float64).mean()) if len(ref_emb) else 0.0
    return STEP / mean if mean > 0 else 1.0


def eer_scores(emb: np.ndarray, log_probs: np.ndarray, ref_emb: np.ndarray, ref_log_probs: np.ndarray,
               eta: float, loss: str) -> np.ndarray:
    """[M] float64: the expected reduction of the reference's mean loss for each candidate."""
    eta = eta or default_eta(ref_emb)
    h, hr = np.asarray(emb, np.float64), np.asarray(ref_emb, np.float64)
    p, lr = np.exp(log_probs), np.asarray(ref_log_probs, np.float64)
    now = _loss_now(lr, loss)
    r, c = lr.shape
    block = max(1, BLOCK_ELEMENTS // max(1, r * c))
    out = np.empty(len(h))
    for start in range(0, len(h), block):
        s = eta * (h[start:start + block] @ hr.T)  # [B, R]: η (h_x·h_r)
        pb = p[start:start + block]
        after = _loss_after(lr[None] - s[:, :, None] * pb[:, None, :], s, loss)  # [B, C(y)]
        out[start:start + block] = now - (pb * after).sum(axis=1)
    return out


def _loss_now(lr: np.ndarray, loss: str) -> float:
    if loss == "zero_one":
        return float((1.0 - np.exp(lr.max(axis=1))).mean())
    return float(-_xlogx_sum(np.exp(lr), lr).mean())


def _xlogx_sum(e: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Σ e·v over the last axis, with 0·(−inf) = 0 (a class of probability 0)."""
    with np.errstate(invalid="ignore"):
        return np.where(e > 0, e * v, 0.0).sum(axis=-1)


def _others(a: np.ndarray) -> np.ndarray:
    """Σ_{c ≠ y} a_c for every y, from prefix and suffix sums: no Σ − a_y, which cancels to
    nothing when a_y is nearly all of the sum."""
    zero = np.zeros(a.shape[:2] + (1,))
    before = np.concatenate([zero, np.cumsum(a, axis=2)[:, :, :-1]], axis=2)  # Σ_{c < y}
    after = np.concatenate([np.cumsum(a[:, :, ::-1], axis=2)[:, :, -2::-1], zero], axis=2)  # Σ_{c > y}
    return before + after


def _loss_after(u: np.ndarray, bump: np.ndarray, loss: str) -> np.ndarray:
    """Mean over r of the loss of softmax(u[b, r] + bump[b, r]·e_y), for every label y: [B, C]."""
    top = u.max(axis=2)
    shift = top + np.maximum(bump, 0.0)  # ≥ every logit after any label's bump: no exp overflows
    v = u - shift[:, :, None]  # ≤ 0
    e = np.exp(v)
    bumped = np.exp(v + bump[:, :, None])  # e^{v_y + bump}, label y's term after the step
    z = _others(e) + bumped  # Σ_c e^{z'_c} for each y
    if loss == "zero_one":
        second = np.partition(v, -2, axis=2)[:, :, -2] if v.shape[2] > 1 else np.full(v.shape[:2], -np.inf)
        first = top - shift
        is_top = v == first[:, :, None]
        unique_top = is_top.sum(axis=2, keepdims=True) == 1
        others = np.where(is_top & unique_top, second[:, :, None], first[:, :, None])  # max over c ≠ y
        best = np.maximum(others, v + bump[:, :, None])
        return (1.0 - np.exp(best) / z).mean(axis=1)
    with np.errstate(invalid="ignore"):  # 0·(−inf): a class of probability 0, taken as 0
        ev = np.where(e > 0, e * v, 0.0)
        own = np.where(bumped > 0, bumped * (v + bump[:, :, None]), 0.0)
    a = -_others(-ev) + own  # Σ_c e^{z'_c} z'_c (each e·v ≤ 0: summed as positives)
    return (np.log(z) - a / z).mean(axis=1)
