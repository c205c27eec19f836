"""Set-level strategies at finish: poolscore's beside a straightforward NumPy version of the same
algorithm and the peers that install here, in one run.

    python bench/setlevel.py [--m 100000] [--d 512] [--k 1000] [--quick]

coreset and BADGE over M candidates (D-dim clustered embeddings, C = 10 classes), K picked;
EER over M = 1000 candidates and R = 1000 reference items, C = 10 and 100. The slow versions run
a few steps at full M and are extrapolated to K by a line through two step counts (their cost
is linear in the steps; small-text's coreset is quadratic and is fitted so). Each line says
which figures are measured and which extrapolated. poolscore runs twice: the first run (cold
caches, the allocator's first pages) and the second.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from poolscore.server.setlevel.badge import kmeans_pp
from poolscore.server.setlevel.batch_bald import batch_bald
from poolscore.server.setlevel.clusters import cluster_margin
from poolscore.server.setlevel.coreset import k_center_greedy
from poolscore.server.setlevel.eer import default_eta, eer_scores

np.float = float  # modAL 0.4's expected_error still names np.float (gone since NumPy 1.24)


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def extrapolated(run, steps: tuple[int, int], k: int, power: int = 1) -> float:
    """Seconds for k steps from two short runs, t = a + b·steps^power."""
    (s1, s2) = steps
    run(s1)  # a first call pays the first touch of its memory: not a step's cost
    t1, t2 = run(s1), run(s2)
    b = (t2 - t1) / (s2**power - s1**power)
    return (t1 - b * s1**power) + b * k**power


def clustered(rng, m: int, d: int, centers: int = 200, labels: bool = False):
    mids = rng.normal(scale=3.0, size=(centers, d)).astype(np.float32)
    which = rng.integers(0, centers, m)
    x = mids[which] + rng.normal(size=(m, d)).astype(np.float32)
    return (x, which) if labels else x


def line(name: str, ours: list[float], others: dict[str, tuple[float, str]], limit: float | None = None) -> None:
    first, steady = ours
    text = f"{name:<34} poolscore {first:8.2f} s first, {steady:8.2f} s steady"
    for peer, (t, how) in others.items():
        text += f" | {peer} {t:9.1f} s ({how}) = {t / steady:6.1f}x"
    if limit is not None:
        text += f" | limit {limit:.0f} s: {'ok' if steady < limit else 'OVER'}"
    print(text, flush=True)


# --- coreset -----------------------------------------------------------------------------------


def naive_coreset(x: np.ndarray, k: int) -> list[int]:
    mind = np.full(len(x), np.inf)
    picks = [0]
    for _ in range(k - 1):
        mind = np.minimum(mind, ((x - x[picks[-1]]) ** 2).sum(axis=1))
        picks.append(int(np.argmax(mind)))
    return picks


def per_step(run, steps: int, k: int) -> float:
    """Seconds for k steps of an algorithm whose run(steps) returns (setup seconds, loop seconds)."""
    setup, loop = run(steps)
    return setup + loop / steps * k


def naive_coreset_timed(x: np.ndarray, steps: int) -> tuple[float, float]:
    start = time.perf_counter()
    naive_coreset(x, steps + 1)
    return 0.0, time.perf_counter() - start


def bench_coreset(x: np.ndarray, k: int, quick: bool, what: str) -> None:
    ours = [timed(k_center_greedy, x, k)[0] for _ in range(2)]
    picks = k_center_greedy(x, k)[0]
    others = {"numpy": (per_step(lambda s: naive_coreset_timed(x, s), 10, k), "10 steps measured, × K/10")}
    assert naive_coreset(x[:5000], 40) == k_center_greedy(x[:5000], 40)[0].tolist(), "the NumPy version must agree"
    if not quick:
        from skactiveml.pool._core_set import k_greedy_center
        y = np.full(len(x), np.nan)
        y[picks[0]] = 0  # the first center, as poolscore's
        sk = extrapolated(lambda s: timed(k_greedy_center, x, y, s)[0], (5, 25), k)
        others["scikit-activeml"] = (sk, f"extrapolated; holds a [K, M] float64 matrix: {k * len(x) * 8 / 2**30:.1f} GiB")
        from small_text.query_strategies.coresets import greedy_coreset
        unl, lab = np.delete(np.arange(len(x)), picks[0]), np.array([picks[0]])
        st = extrapolated(lambda s: timed(greedy_coreset, x, unl, lab, s, "euclidean", 10_000)[0], (10, 20), k, power=2)
        others["small-text"] = (st, "extrapolated as K²")
    line(f"coreset {what} M={len(x)} D={x.shape[1]} K={k}", ours, others, limit=60)


# --- badge ------------------------------------------------------------------------------------


def naive_badge(h: np.ndarray, lp: np.ndarray, k: int, seed: int) -> list[int]:
    p = np.exp(lp)
    a = p.copy()
    a[np.arange(len(a)), p.argmax(1)] -= 1
    g = (a[:, :, None].astype(np.float32) * h[:, None, :]).reshape(len(h), -1)  # [M, C·D], built
    built = time.perf_counter()
    rng = np.random.default_rng(seed)
    picks = [int(np.argmax((g * g).sum(1)))]
    d2 = np.full(len(h), np.inf)
    while len(picks) < k:
        d2 = np.minimum(d2, ((g - g[picks[-1]]) ** 2).sum(axis=1))
        cum = np.cumsum(d2)
        picks.append(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")))
    naive_badge.times = (built, time.perf_counter())
    return picks


def naive_badge_timed(h, lp, steps: int) -> tuple[float, float]:
    start = time.perf_counter()
    naive_badge(h, lp, steps + 1, 0)
    built, end = naive_badge.times
    return built - start, end - built


def bench_badge(h: np.ndarray, lp: np.ndarray, k: int, quick: bool) -> None:
    ours = [timed(kmeans_pp, h, lp, k, 0)[0] for _ in range(2)]
    gb = len(h) * lp.shape[1] * h.shape[1] * 4 / 2**30
    others = {"numpy": (per_step(lambda s: naive_badge_timed(h, lp, s), 8, k),
                        f"build + 8 steps measured, × K/8; builds [M, C·D] float32: {gb:.1f} GiB")}
    if not quick:
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
        from skactiveml.classifier import SklearnClassifier
        from skactiveml.pool import Badge
        y = np.full(len(h), np.nan)
        y[:200] = np.argmax(lp[:200], axis=1)
        warnings.simplefilter("ignore", ConvergenceWarning)  # the classifier only has to exist: its p is the peer's
        clf = SklearnClassifier(LogisticRegression(max_iter=50), classes=np.arange(lp.shape[1])).fit(h, y)
        sk = extrapolated(lambda s: timed(Badge(random_state=0).query, h, y, clf, False, None, None, s)[0], (1, 11), k)
        others["scikit-activeml"] = (sk, f"extrapolated; builds [M, C·D] float64: {2 * gb:.1f} GiB")
    line(f"badge M={len(h)} D={h.shape[1]} C={lp.shape[1]} K={k}", ours, others, limit=60)


# --- expected error reduction -----------------------------------------------------------------


def naive_eer(h, lp, ref_h, ref_lp, eta: float) -> np.ndarray:
    """The loop as written in the paper's terms: per candidate and label, step, recompute, average."""
    def mean_entropy(z):
        z = z - z.max(1, keepdims=True)
        q = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        return float(-(q * np.log(np.maximum(q, 1e-300))).sum(1).mean())

    now = mean_entropy(ref_lp)
    s = h @ ref_h.T
    out = np.empty(len(h))
    for x in range(len(h)):
        p = np.exp(lp[x])
        out[x] = now - sum(p[y] * mean_entropy(ref_lp - eta * s[x][:, None] * (p - np.eye(len(p))[y]))
                           for y in range(len(p)))
    return out


def modal_eer_scores(h_lab, y_lab, cand, classes: int) -> np.ndarray:
    """modAL's refit-per-candidate-and-label EER (log loss), its expected errors for `cand`."""
    from modAL.expected_error import expected_error_reduction
    from modAL.models import ActiveLearner
    from sklearn.linear_model import LogisticRegression

    learner = ActiveLearner(LogisticRegression(max_iter=200), X_training=h_lab, y_training=y_lab)
    idx, err = expected_error_reduction(learner, cand, loss="log", n_instances=len(cand))
    out = np.empty(len(cand))
    out[idx] = err
    return out


def bench_eer(rng, m: int, r: int, classes: int, d: int = 64, quick: bool = False) -> None:
    from sklearn.linear_model import LogisticRegression

    h_all, y_all = clustered(rng, m + r + 200, d, centers=classes, labels=True)
    h_all = h_all.astype(np.float64) / 3  # overlapping classes: a head that is unsure of some items
    lab = slice(m + r, m + r + 200)
    head = LogisticRegression(max_iter=200).fit(h_all[lab], y_all[lab])
    z = h_all @ head.coef_.T + head.intercept_
    lp = z - z.max(1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(1, keepdims=True))
    h, ref_h, l, ref_l = h_all[:m], h_all[m:m + r], lp[:m], lp[m:m + r]
    eta = default_eta(ref_h)
    ours = [timed(eer_scores, h, l, ref_h, ref_l, eta, "entropy")[0] for _ in range(2)]
    scores = eer_scores(h, l, ref_h, ref_l, eta, "entropy")
    sub = 20 if classes <= 10 else 4
    t_naive = timed(naive_eer, h[:sub], l[:sub], ref_h, ref_l, eta)[0] * m / sub
    np.testing.assert_allclose(naive_eer(h[:5], l[:5], ref_h, ref_l, eta), scores[:5], rtol=1e-7, atol=1e-12)
    others = {"numpy": (t_naive, f"per candidate and label, {sub} candidates × {m // sub}")}
    if not quick and classes <= 10:
        n = 40
        t_modal, err = timed(modal_eer_scores, h_all[lab], y_all[lab], h[:n], classes)
        others["modAL"] = (t_modal * m / n, f"refits, {n} candidates × {m // n}")
        same_ref = eer_scores(h[:n], l[:n], h[:n], l[:n], 0.0, "entropy")  # modAL's reference: the candidates
        ours_top, modal_top = set(np.argsort(-same_ref)[:10]), set(np.argsort(err)[:10])
        print(f"    EER top-10 of {n} candidates, each method's loss over those {n}: poolscore and modAL share {len(ours_top & modal_top)} of 10 "
              f"(one last-layer step against a full refit of a logistic regression)")
    line(f"expected_error_reduction M={m} R={r} C={classes}", ours, others)


# --- cluster_margin and batch_bald ---------------------------------------------------------------


def bench_cluster_margin(rng, m: int, d: int, k: int) -> None:
    """Average linkage over M candidates: scipy's, beside scikit-learn's AgglomerativeClustering."""
    from sklearn.cluster import AgglomerativeClustering

    x = clustered(rng, m, d)
    ours = [timed(cluster_margin, x, k)[0] for _ in range(2)]
    t_sk = timed(lambda: AgglomerativeClustering(n_clusters=k, linkage="average").fit(x))[0]
    line(f"cluster_margin M={m} D={d} K={k}", ours, {"scikit-learn": (t_sk, "its clustering alone")})


def bench_batch_bald(rng, m: int, t: int, c: int, k: int) -> None:
    """Greedy BatchBALD over [M, T, C] MC samples, beside baal's BatchBALD (500 sampled labelings)."""
    import torch
    from baal.active.heuristics import BatchBALD

    lp = rng.normal(size=(m, t, c)) * 2
    lp -= np.log(np.exp(lp).sum(2, keepdims=True))
    ours = [timed(batch_bald, lp, k, 0)[0] for _ in range(2)]
    picks = batch_bald(lp, k, 0)[0]
    torch.manual_seed(0)
    probs = np.exp(lp).transpose(0, 2, 1)  # baal's layout: [N, C, T]
    t_baal, u = timed(BatchBALD(num_samples=k).compute_score, probs)
    shared = len(set(picks.tolist()) & set(np.flatnonzero(u > 0).tolist()))
    line(f"batch_bald M={m} T={t} C={c} K={k}", ours, {"baal": (t_baal, f"shares {shared} of {k} picks")})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--m", type=int, default=100_000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--quick", action="store_true", help="NumPy versions only, no peers")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = clustered(rng, args.m, args.d)
    bench_coreset(x, args.k, args.quick, "clustered")
    bench_coreset(rng.normal(size=x.shape).astype(np.float32), args.k, True, "gaussian")  # nothing to prune
    lp = rng.normal(size=(args.m, 10)) * 2
    lp -= np.log(np.exp(lp).sum(1, keepdims=True))
    bench_badge(x, lp, args.k, args.quick)
    for classes in (10, 100):
        bench_eer(rng, 1000, 1000, classes, quick=args.quick)
    bench_cluster_margin(rng, 10 * args.k if not args.quick else 2000, args.d, args.k if not args.quick else 200)
    bench_batch_bald(rng, 1000, 20, 10, 50 if not args.quick else 10)


if __name__ == "__main__":
    main()
