"""badge: k-means++ seeding over gradient embeddings g = (p − e_ŷ) ⊗ h (Ash et al. 2020).

g is never built (C·D floats a row): with a = p − e_ŷ,
‖g_i − g_j‖² = ‖a_i‖²‖h_i‖² + ‖a_j‖²‖h_j‖² − 2 (a_i·a_j)(h_i·h_j),
so a step costs one [M, C] and one [M, D] matrix-vector product. The first center is the
largest gradient; each next one is drawn with probability ∝ its squared distance to the
nearest center, from a generator seeded by the request's seed over the candidates in their
canonical order: the same pool and seed give the same picks."""
from __future__ import annotations

import numpy as np


def gradient_factors(log_probs: np.ndarray) -> np.ndarray:
    """a = p − e_ŷ [M, C] (float64), ŷ the most probable class (the first of equals)."""
    a = np.exp(log_probs)
    a[np.arange(len(a)), np.argmax(log_probs, axis=1)] -= 1.0
    return a


def kmeans_pp(emb: np.ndarray, log_probs: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(picks, d²): candidate indices in pick order, and each one's squared gradient distance to
    the nearest earlier center when it was drawn (its squared gradient norm for the first)."""
    h = np.asarray(emb, np.float32)
    a = gradient_factors(log_probs)
    hn = np.einsum("ij,ij->i", h, h, dtype=np.float64)
    gn = np.einsum("ij,ij->i", a, a) * hn
    m, k = len(h), min(k, len(h))
    rng = np.random.default_rng(np.uint64(seed % 2**64))
    d2 = np.full(m, np.inf)
    taken = np.zeros(m, bool)
    picks, gains = np.empty(k, np.int64), np.empty(k)
    c = int(np.argmax(gn))
    for step in range(k):
        picks[step], gains[step] = c, gn[c] if step == 0 else d2[c]
        taken[c] = True
        dist = gn + gn[c] - 2.0 * (a @ a[c]) * (h @ h[c]).astype(np.float64)
        d2 = np.minimum(d2, np.maximum(dist, 0.0))
        d2[taken] = 0.0
        c = _draw(d2, taken, rng)
    return picks, gains


def _draw(d2: np.ndarray, taken: np.ndarray, rng: np.random.Generator) -> int:
    """An index drawn ∝ d2; when every distance is 0 (duplicates), the first one not taken."""
    cum = np.cumsum(d2)
    if cum[-1] <= 0:
        free = np.flatnonzero(~taken)
        return int(free[0]) if len(free) else 0
    i = int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))
    return min(i, int(np.flatnonzero(d2 > 0)[-1]))
