"""The finish stage: a set-level strategy run once over its session's candidate set.

The candidates come in canonical order (pre-score descending, id ascending), so every strategy
sees the same set in the same order however the pool was batched. It returns the selection in
pick order, each with the strategy's own figure (see the README's strategies table)."""
from __future__ import annotations

import numpy as np

from poolscore.server.setlevel.badge import kmeans_pp
from poolscore.server.setlevel.batch_bald import batch_bald
from poolscore.server.setlevel.clusters import cluster_margin
from poolscore.server.setlevel.coreset import k_center_greedy
from poolscore.server.setlevel.eer import eer_scores
from poolscore.server.strategies import Spec

Sorted = tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]  # scores, ids, rows: Candidates.sorted()


def select(spec: Spec, k: int, cands: Sorted, reference: Sorted | None, labeled: np.ndarray | None
           ) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the k picked, in pick order."""
    scores, ids, rows = cands
    if len(ids) == 0:
        return np.empty(0), np.empty(0, np.int64)
    kind, seed = spec.selection.kind, spec.options.seed
    if kind == "coreset":
        picks, gains = k_center_greedy(rows["embedding"], k, labeled)
    elif kind == "badge":
        picks, gains = kmeans_pp(rows["embedding"], rows["log_probs"], k, seed)
    elif kind == "cluster_margin":
        picks = cluster_margin(rows["embedding"], k)
        gains = scores[picks]
    elif kind == "batch_bald":
        picks, gains = batch_bald(rows["log_probs"], k, seed)
    elif kind == "softrank":  # Gumbel top-K with keys −β·log rank: a sample without replacement, p ∝ rank^−β
        keys = -spec.selection.beta * np.log(np.arange(1, len(ids) + 1)) + rows["gumbel"]
        picks = np.lexsort((ids, -keys))[:k]
        gains = keys[picks]
    elif kind == "expected_error_reduction":
        picks, gains = _eer(spec, k, ids, rows, reference)
    else:
        raise ValueError(f"not a set-level strategy: {kind}")
    return np.asarray(gains, np.float64), ids[picks]


def _eer(spec: Spec, k: int, ids: np.ndarray, rows: dict, reference: Sorted | None) -> tuple[np.ndarray, np.ndarray]:
    ref_rows = reference[2] if reference is not None else {}
    if not ref_rows:
        return np.arange(0), np.empty(0)
    sel = spec.selection
    s = eer_scores(rows["embedding"], rows["log_probs"], ref_rows["embedding"], ref_rows["log_probs"], sel.eta, sel.loss)
    picks = np.lexsort((ids, -s))[:k]
    return picks, s[picks]
