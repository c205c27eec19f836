"""batch_bald (Kirsch et al. 2019): greedily, the candidate that most raises the batch's joint
mutual information with the model, I(y_1..y_n; ω) = H(y_1..y_n) − Σ_i E_ω H(y_i | ω).

The T samples of each candidate ([M, T, C], MC dropout) stand for ω. The batch's labelings
y_B are enumerated exactly while there are at most MAX_CONFIGS of them, then sampled (seeded)
from the joint; W[s, t] = P(y_B = s | ω_t). Adding candidate n raises the joint entropy by
E_s H(y_n | y_B = s), where p(y_n | s) = Σ_t W[s, t] p_t(y_n) / Σ_t W[s, t]; its gain is that
minus E_ω H(y_n | ω). The first pick is BALD's best. Cost O(k·M·T·C·S), S ≤ MAX_CONFIGS."""
from __future__ import annotations

import numpy as np

MAX_CONFIGS = 1024
BLOCK_ELEMENTS = 1 << 22


def batch_bald(log_probs: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(picks, gains): candidate indices in pick order and each one's gain in joint MI (nats)."""
    lp = np.asarray(log_probs, np.float64)
    p = np.exp(lp)  # [M, T, C]
    m, t, c = p.shape
    with np.errstate(invalid="ignore"):
        cond = -np.where(p > 0, p * lp, 0.0).sum(axis=2).mean(axis=1)  # E_ω H(y_n | ω); 0·log 0 = 0
    w, sampled = np.ones((1, t)), False
    rng = np.random.default_rng(np.uint64(seed % 2**64))
    k = min(k, m)
    picks, gains = np.empty(k, np.int64), np.empty(k)
    taken = np.zeros(m, bool)
    for step in range(k):
        gain = _joint_entropy_gain(p, w, sampled) - cond
        gain[taken] = -np.inf
        n = int(np.argmax(gain))
        picks[step], gains[step] = n, gain[n]
        taken[n] = True
        w, sampled = _extend(w, p[n], sampled, rng)
    return picks, gains


def _joint_entropy_gain(p: np.ndarray, w: np.ndarray, sampled: bool) -> np.ndarray:
    """E_s H(y_n | y_B = s) for every candidate n: [M]."""
    mass = w.sum(axis=1)  # ∝ P(y_B = s)
    weight = np.full(len(w), 1.0 / len(w)) if sampled else mass / mass.sum()
    wn = (w / mass[:, None]).T  # [T, S]
    m, t, c = p.shape
    block = max(1, BLOCK_ELEMENTS // (c * len(w)))
    out = np.empty(m)
    for start in range(0, m, block):
        q = np.matmul(p[start:start + block].transpose(0, 2, 1), wn)  # [B, C, S]: p(y_n = c | s)
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -np.where(q > 0, q * np.log(q), 0.0).sum(axis=1)  # [B, S]
        out[start:start + block] = h @ weight
    return out


def _extend(w: np.ndarray, pn: np.ndarray, sampled: bool, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """W for the batch with the new pick (its samples pn [T, C]): every labeling of it, or one drawn per sample."""
    t, c = pn.shape
    if not sampled and len(w) * c <= MAX_CONFIGS:
        return (w[:, None, :] * pn.T[None, :, :]).reshape(-1, t), False  # [S·C, T]
    if not sampled:  # enumerating would pass MAX_CONFIGS: draw that many labelings from the joint instead
        full = (w[:, None, :] * pn.T[None, :, :]).reshape(-1, t)
        mass = full.sum(axis=1)
        chosen = rng.choice(len(full), size=MAX_CONFIGS, p=mass / mass.sum())
        w = full[chosen]
    else:
        q = (w @ pn) / w.sum(axis=1, keepdims=True)  # [S, C]: p(y_new | s)
        u = rng.random(len(w))[:, None]
        label = np.minimum((np.cumsum(q, axis=1) < u * q.sum(axis=1, keepdims=True)).sum(axis=1), c - 1)
        w = w * pn[:, label].T
    return w / w.max(axis=1, keepdims=True), True  # rescaled per sample: only ratios over t matter now
