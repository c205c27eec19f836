"""Plain, obviously-correct float64 versions of the set-level strategies, for small M.

Each is the textbook loop: full distance matrices, materialised gradient embeddings, a head W
that is actually updated, an enumeration of every labeling. Slow on purpose, and short."""
from __future__ import annotations

import itertools

import numpy as np


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


def coreset(x: np.ndarray, k: int, labeled: np.ndarray | None = None) -> list[int]:
    x = np.asarray(x, np.float64)
    centers = [] if labeled is None else list(np.asarray(labeled, np.float64))
    picks: list[int] = []
    for _ in range(k):
        if centers:
            d = pairwise(x, np.array(centers)).min(axis=1)
            d[picks] = -1.0
            c = int(np.argmax(d))
        else:
            c = 0  # no seed: the best pre-score first
        picks.append(c)
        centers.append(x[c])
    return picks


def covering_radius(x: np.ndarray, picks, labeled: np.ndarray | None = None) -> float:
    x = np.asarray(x, np.float64)
    centers = x[list(picks)] if labeled is None else np.concatenate([x[list(picks)], np.asarray(labeled, np.float64)])
    return float(pairwise(x, centers).min(axis=1).max())


def badge(h: np.ndarray, lp: np.ndarray, k: int, seed: int) -> list[int]:
    """k-means++ over g = (p − e_ŷ) ⊗ h, built in full; the draws as poolscore makes them."""
    p = np.exp(lp)
    a = p.copy()
    a[np.arange(len(a)), p.argmax(1)] -= 1
    g = (a[:, :, None] * np.asarray(h, np.float64)[:, None, :]).reshape(len(h), -1)
    rng = np.random.default_rng(np.uint64(seed % 2**64))
    picks = [int(np.argmax((g * g).sum(1)))]
    while len(picks) < k:
        d2 = (pairwise(g, g[picks]) ** 2).min(axis=1)
        d2[picks] = 0
        cum = np.cumsum(d2)
        picks.append(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")))
    return picks


def eer(h, lp, ref_h, ref_lp, eta: float, loss: str, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each candidate and label, take the step on W and recompute the reference's logits."""
    h, ref_h = np.asarray(h, np.float64), np.asarray(ref_h, np.float64)

    def mean_loss(z):
        q = np.exp(log_softmax(z))
        if loss == "zero_one":
            return float((1 - q.max(1)).mean())
        return float(-(q * np.log(q)).sum(1).mean())

    now = mean_loss(ref_h @ W.T + b)
    out = []
    for x in range(len(h)):
        p = np.exp(lp[x])
        expected = 0.0
        for y in range(len(p)):
            step = W - eta * np.outer(p - np.eye(len(p))[y], h[x])
            expected += p[y] * mean_loss(ref_h @ step.T + b)
        out.append(now - expected)
    return np.array(out)


def joint_mi(p: np.ndarray) -> float:
    """I(y_1..y_n; ω) for samples p [n, T, C], every labeling enumerated."""
    n, t, c = p.shape
    joint = 0.0
    for ys in itertools.product(range(c), repeat=n):
        q = np.prod([p[i, :, y] for i, y in enumerate(ys)], axis=0).mean()
        joint -= q * np.log(q) if q > 0 else 0.0
    cond = -(p * np.log(p)).sum(2).mean(1).sum()
    return joint - cond


def batch_bald(p: np.ndarray, k: int) -> list[int]:
    picks: list[int] = []
    for _ in range(k):
        gains = [-np.inf if n in picks else joint_mi(p[picks + [n]]) for n in range(len(p))]
        picks.append(int(np.argmax(gains)))
    return picks


def cluster_margin(x: np.ndarray, k: int) -> list[int]:
    """Average-linkage clusters by merging the nearest pair of clusters until k remain, then
    round robin from the smallest cluster, each visit its best remaining member."""
    x = np.asarray(x, np.float64)
    d = pairwise(x, x)
    clusters = [[i] for i in range(len(x))]
    while len(clusters) > k:
        best = None
        for i, j in itertools.combinations(range(len(clusters)), 2):
            link = d[np.ix_(clusters[i], clusters[j])].mean()
            if best is None or link < best[0]:
                best = (link, i, j)
        _, i, j = best
        clusters[i] = sorted(clusters[i] + clusters[j])
        del clusters[j]
    clusters.sort(key=lambda c: (len(c), c[0]))
    picks: list[int] = []
    while len(picks) < k:
        for c in clusters:
            left = [i for i in c if i not in picks]
            if left and len(picks) < k:
                picks.append(left[0])
    return picks
