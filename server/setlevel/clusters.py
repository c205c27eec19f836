"""cluster_margin (Citovsky et al. 2021): diversity among the most uncertain.

The candidates are the M items of lowest margin (the pre-score, margin unless the request says
otherwise). They are clustered by average-linkage agglomerative clustering of their embeddings
(Euclidean), cut into k clusters; then clusters are visited from the smallest up, round robin,
each visit taking its cluster's best remaining candidate, until k are taken. Where the paper
takes a random member of each cluster, this takes the highest pre-score (deterministic).
Average linkage needs the M(M−1)/2 pairwise distances: memory O(M²), reserved at creation."""
from __future__ import annotations

import numpy as np


def clusters_of(emb: np.ndarray, n_clusters: int) -> np.ndarray:
    """Each candidate's cluster label (0..), from an average-linkage tree cut into ≤ n_clusters."""
    if len(emb) <= n_clusters:
        return np.arange(len(emb))
    from scipy.cluster.hierarchy import fcluster, linkage  # a quarter of a second to import: only when clustering

    tree = linkage(np.asarray(emb, np.float64), method="average", metric="euclidean")
    return fcluster(tree, t=n_clusters, criterion="maxclust") - 1


def round_robin(labels: np.ndarray, k: int) -> np.ndarray:
    """Candidate indices (given best first) taken round robin over clusters, smallest cluster
    first (ties: the cluster whose best candidate comes first); k of them, in pick order."""
    n = int(labels.max()) + 1 if len(labels) else 0
    sizes = np.bincount(labels, minlength=n)
    first = np.full(n, len(labels))
    np.minimum.at(first, labels, np.arange(len(labels)))
    visit = np.lexsort((first, sizes))  # cluster order: size ascending, then best member
    rank_of = np.empty(n, np.int64)
    rank_of[visit] = np.arange(n)
    members_before = np.zeros(len(labels), np.int64)  # how many earlier (better) candidates share the cluster
    order_in_cluster = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[order_in_cluster], np.arange(n))
    members_before[order_in_cluster] = np.arange(len(labels)) - starts[labels[order_in_cluster]]
    # a candidate is taken in round members_before, at its cluster's place in that round
    turn = np.lexsort((rank_of[labels], members_before))
    return turn[:k]


def cluster_margin(emb: np.ndarray, k: int) -> np.ndarray:
    """Picks (indices into the candidates, which come best first) in pick order."""
    return round_robin(clusters_of(emb, k), k)
