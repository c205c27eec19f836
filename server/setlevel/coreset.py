"""coreset: k-center greedy (Sener & Savarese 2018) over the candidates' embeddings.

Each step picks the candidate farthest from its nearest center, then lowers every distance
the new center beats. Distances are ‖x‖² + ‖c‖² − 2 x·c, one matrix-vector product per step
over the centered embeddings (float32, so half the bytes of float64 are read). The triangle
inequality skips the rows the new center cannot win: if d(c, a) ≥ 2·r for a row at radius r
from its center a, then d(x, c) ≥ d(c, a) − r ≥ r. Rows assigned to a labeled seed are never
skipped (the distances between a center and every seed are not kept)."""
from __future__ import annotations

import numpy as np

BLOCK = 4096  # rows per product: a block's share of pruned rows decides gather or whole block
_SLACK = 1.0001  # prune only when the bound holds with room for float32 rounding


def k_center_greedy(emb: np.ndarray, k: int, labeled: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(picks, radii): candidate indices in pick order, and each one's distance to the nearest
    earlier center (or labeled seed) when it was picked (inf for a first pick with no seed)."""
    x = np.array(emb, np.float32, copy=True)
    mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    x -= mean  # centering keeps ‖x‖² small beside the distances: less cancellation in float32
    sq = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    m = len(x)
    mind = np.full(m, np.inf)  # squared distance to the nearest center
    owner = np.full(m, -1, np.int64)  # that center's pick number; -1 for a labeled seed
    if labeled is not None and len(labeled):
        mind = _nearest_seed(x, sq, np.asarray(labeled, np.float32) - mean)
    k = min(k, m)
    centers = np.empty((k, x.shape[1]), np.float32)
    picks, radii = np.empty(k, np.int64), np.empty(k)
    taken = np.zeros(m, bool)
    for step in range(k):
        c = int(np.argmax(np.where(taken, -np.inf, mind)))  # the first of equals: canonical order
        picks[step], radii[step] = c, np.sqrt(mind[c])
        taken[c] = True
        centers[step] = x[c]
        _lower(x, sq, mind, owner, c, step, centers[:step], sq[picks[:step]])
    return picks, radii


def _lower(x, sq, mind, owner, c, step, earlier, earlier_sq) -> None:
    """Lower mind (and owner) wherever center c, pick number `step`, is nearer."""
    to_earlier = np.maximum(sq[c] + earlier_sq - 2.0 * (earlier @ x[c]).astype(np.float64), 0.0)  # d(c, a)²
    bound = np.full(len(mind), -np.inf)  # unassigned (or seed-assigned) rows: always looked at
    assigned = owner >= 0
    bound[assigned] = to_earlier[owner[assigned]] / 4.0  # rows with mind ≤ d(c, a)²/4 cannot move
    live = mind * _SLACK > bound
    for start in range(0, len(x), BLOCK):
        rows = np.flatnonzero(live[start:start + BLOCK]) + start
        if len(rows) == 0:
            continue
        if 4 * len(rows) > BLOCK:  # most of the block: one contiguous product is cheaper than a gather
            rows = np.arange(start, min(start + BLOCK, len(x)))
            dots = x[start:start + BLOCK] @ x[c]
        else:
            dots = x[rows] @ x[c]
        d = np.maximum(sq[rows] + sq[c] - 2.0 * dots.astype(np.float64), 0.0)
        nearer = d < mind[rows]
        mind[rows[nearer]], owner[rows[nearer]] = d[nearer], step
    mind[c], owner[c] = 0.0, step


def _nearest_seed(x: np.ndarray, sq: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Squared distance from every row to its nearest seed, in blocks of rows × seeds."""
    seed_sq = np.einsum("ij,ij->i", seeds, seeds, dtype=np.float64)
    out = np.full(len(x), np.inf)
    for start in range(0, len(x), BLOCK):
        block = x[start:start + BLOCK]
        for s0 in range(0, len(seeds), BLOCK):
            d = sq[start:start + BLOCK, None] + seed_sq[None, s0:s0 + BLOCK] - 2.0 * (block @ seeds[s0:s0 + BLOCK].T)
            out[start:start + BLOCK] = np.minimum(out[start:start + BLOCK], np.maximum(d.min(axis=1), 0.0))
    return out
