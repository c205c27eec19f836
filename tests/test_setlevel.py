"""Set-level strategies: the candidate set, each strategy against the plain float64 version in
setlevel_reference.py, and every one by name through ScorePool, sessions and the budget."""
from __future__ import annotations

import numpy as np
import pytest

import setlevel_reference as ref
from poolscore.client import BadBatch, Client, OverLimit
from poolscore.server.errors import BadInput
from poolscore.server.setlevel.badge import kmeans_pp
from poolscore.server.setlevel.batch_bald import batch_bald
from poolscore.server.setlevel.candidates import Candidates
from poolscore.server.setlevel.clusters import cluster_margin
from poolscore.server.setlevel.coreset import k_center_greedy
from poolscore.server.setlevel.eer import eer_scores
from poolscore.server.strategies import parse_spec

SET_LEVEL = ("coreset", "badge", "cluster_margin", "batch_bald", "expected_error_reduction")


def blobs(rng, n: int, d: int, centers: int = 8) -> np.ndarray:
    """Clustered points: where the triangle inequality prunes."""
    mids = rng.normal(scale=6.0, size=(centers, d))
    return (mids[rng.integers(0, centers, n)] + rng.normal(size=(n, d))).astype(np.float32)


# --- the candidate set ----------------------------------------------------------------------


def stream(cands: Candidates, scores, ids, rows, cuts) -> Candidates:
    for a, b in zip(cuts[:-1], cuts[1:]):
        idx = cands.cut(scores[a:b], ids[a:b])
        cands = cands.merged(scores[a:b][idx], ids[a:b][idx], {k: v[a:b][idx] for k, v in rows.items()})
    return cands


@pytest.mark.parametrize("m", [7, 50, 400])
def test_candidates_are_the_m_best_however_batched(rng, m):
    n = 300
    scores = rng.integers(0, 20, n).astype(np.float64)  # many ties: settled by id
    ids = rng.permutation(n).astype(np.int64) * 3
    rows = {"embedding": rng.normal(size=(n, 4)).astype(np.float32)}
    cuts = [0, 1, 2, 40, 41, 41, 200, 300]
    got = stream(Candidates(m), scores, ids, rows, cuts).sorted()
    whole = stream(Candidates(m), scores, ids, rows, [0, n]).sorted()
    order = np.lexsort((ids, -scores))[:m]
    np.testing.assert_array_equal(got[1], ids[order])
    np.testing.assert_array_equal(got[0], scores[order])
    np.testing.assert_array_equal(got[2]["embedding"], rows["embedding"][order])
    np.testing.assert_array_equal(whole[1], got[1])


def test_candidates_memory_is_flat_for_a_pool_20x_the_set(rng):
    m, n = 100, 2000
    scores = rng.normal(size=n)
    ids = np.arange(n, dtype=np.int64)
    rows = {"embedding": rng.normal(size=(n, 8)).astype(np.float32)}
    cands = Candidates(m)
    most = 0
    for a in range(0, n, 13):
        cands = stream(cands, scores, ids, rows, [a, min(n, a + 13)])
        most = max(most, cands.stored, sum(len(c["embedding"]) for c in cands.chunks))
    assert most <= 2 * m + 13
    assert len(cands) == m
    np.testing.assert_array_equal(np.sort(cands.ids), np.sort(np.argsort(-scores)[:m]))


def test_a_merge_leaves_the_old_value_as_it_was(rng):
    rows = {"embedding": rng.normal(size=(30, 2)).astype(np.float32)}
    a = stream(Candidates(10), rng.normal(size=30), np.arange(30), rows, [0, 30])
    before = a.sorted()
    stream(a, rng.normal(size=30) + 5, np.arange(30, 60), rows, [0, 30])
    after = a.sorted()
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_array_equal(before[2]["embedding"], after[2]["embedding"])


# --- each strategy against its reference ----------------------------------------------------


@pytest.mark.parametrize("seeded", [False, True])
def test_coreset_matches_the_reference_greedy(rng, seeded):
    x = blobs(rng, 400, 16)
    labeled = blobs(rng, 30, 16) if seeded else None
    picks, radii = k_center_greedy(x, 25, labeled)
    want = ref.coreset(x, 25, labeled)
    assert picks.tolist() == want
    assert ref.covering_radius(x, picks, labeled) == pytest.approx(ref.covering_radius(x, want, labeled), rel=1e-6)
    assert np.all(np.diff(radii[1:]) <= 1e-4)  # the greedy's radius never grows
    assert (radii[0] == np.inf) != seeded


def test_coreset_with_duplicates_still_picks_distinct_items():
    x = np.zeros((10, 3), np.float32)
    x[:2] = 1.0
    picks, _ = k_center_greedy(x, 6)
    assert len(set(picks.tolist())) == 6


def test_badge_matches_kmeans_pp_over_built_gradient_embeddings(rng):
    h = rng.normal(size=(120, 6)).astype(np.float32)
    lp = ref.log_softmax(rng.normal(size=(120, 4)) * 2)
    for seed in (0, 7):
        picks, _ = kmeans_pp(h, lp, 15, seed)
        assert picks.tolist() == ref.badge(h, lp, 15, seed)
    assert kmeans_pp(h, lp, 15, 1)[0].tolist() != kmeans_pp(h, lp, 15, 2)[0].tolist()  # the seed matters


@pytest.mark.parametrize("loss", ["entropy", "zero_one"])
def test_eer_equals_a_loop_that_updates_the_head(rng, loss):
    d, c = 5, 4
    W, b = rng.normal(size=(c, d)), rng.normal(size=c)
    h, ref_h = rng.normal(size=(30, d)), rng.normal(size=(40, d))
    lp, ref_lp = ref.log_softmax(h @ W.T + b), ref.log_softmax(ref_h @ W.T + b)
    for eta in (0.05, 0.7):
        got = eer_scores(h, lp, ref_h, ref_lp, eta, loss)
        want = ref.eer(h, lp, ref_h, ref_lp, eta, loss, W, b)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_batch_bald_matches_greedy_joint_mutual_information(rng):
    p = np.exp(ref.log_softmax(rng.normal(size=(12, 6, 3)) * 2))
    picks, gains = batch_bald(np.log(p), 4, seed=0)  # 3^4 = 81 labelings: enumerated exactly
    assert picks.tolist() == ref.batch_bald(p, 4)
    np.testing.assert_allclose(np.cumsum(gains)[-1], ref.joint_mi(p[picks]), rtol=1e-9)


def test_batch_bald_sampled_labelings_still_add_information(rng):
    p = np.exp(ref.log_softmax(rng.normal(size=(40, 8, 10)) * 2))
    picks, gains = batch_bald(np.log(p), 6, seed=3)  # 10^4 labelings > MAX_CONFIGS: sampled
    assert len(set(picks.tolist())) == 6
    assert picks.tolist() == batch_bald(np.log(p), 6, seed=3)[0].tolist()  # seeded
    assert gains[0] == pytest.approx(max(ref.joint_mi(p[[n]]) for n in range(40)))


def test_cluster_margin_matches_average_linkage_round_robin(rng):
    x = blobs(rng, 40, 3, centers=4)
    for k in (4, 9):
        assert cluster_margin(x, k).tolist() == ref.cluster_margin(x, k)


def test_set_level_options_are_checked():
    with pytest.raises(BadInput, match="strategy.eta"):
        parse_spec("coreset", {"eta": 0.5})
    with pytest.raises(BadInput, match="strategy.candidates"):
        parse_spec("entropy", {"candidates": 10})
    with pytest.raises(BadInput, match="strategy.loss"):
        parse_spec("expected_error_reduction", {"loss": "hinge"})
    with pytest.raises(BadInput, match="strategy.pre_score"):
        parse_spec("batch_bald", {"pre_score": "margin"})  # batch_bald keeps [N, T, C] samples
    assert parse_spec("coreset", {}).kernel.name == "random"
    assert parse_spec("cluster_margin", {}).kernel.name == "margin"


# --- through the service --------------------------------------------------------------------


def pool_for(rng, name: str, n: int = 600):
    z = rng.normal(size=(n, 8, 5) if name == "batch_bald" else (n, 5)).astype(np.float32) * 2
    emb = None if name == "batch_bald" else blobs(rng, n, 12)
    return z, emb


@pytest.mark.parametrize("name", SET_LEVEL)
def test_every_set_level_strategy_by_name_selects_the_same_however_streamed(client: Client, rng, name):
    z, emb = pool_for(rng, name)
    whole = client.score_pool(z, name, k=8, embedding=emb, candidates=2000, seed=3)
    assert len(whole) == 8 and len(set(whole.ids.tolist())) == 8
    sid = client.create_session(name, k=8, candidates=2000, seed=3)
    try:
        for a, b in [(0, 7), (7, 8), (8, 333), (333, 600)]:
            client.score(sid, z[a:b], ids=np.arange(a, b), embedding=None if emb is None else emb[a:b])
        assert client.top_k(sid).ids.tolist() == whole.ids.tolist()
        assert client.top_k(sid).ids.tolist() == whole.ids.tolist()  # remembered, the same again
    finally:
        client.delete_session(sid)


def test_coreset_through_the_service_matches_the_reference_with_labeled_seeds(client: Client, rng):
    emb, labeled = blobs(rng, 300, 8), blobs(rng, 20, 8)
    top = client.score_pool(np.zeros((300, 2), np.float32), "coreset", k=10, embedding=emb, labeled=labeled,
                            candidates=300, pre_score="least_confidence")  # ties everywhere: the id order
    assert top.ids.tolist() == ref.coreset(emb, 10, labeled)
    sid = client.create_session("coreset", k=10, candidates=300)
    try:
        client.add_labeled(sid, labeled)
        client.score(sid, None, ids=np.arange(300), embedding=emb)
        assert client.top_k(sid).ids.tolist() == ref.coreset(emb, 10, labeled)  # seeded: no order dependence
    finally:
        client.delete_session(sid)


def test_bad_set_level_batches_are_named_and_leave_the_session(client: Client, rng):
    z, emb = pool_for(rng, "badge", 50)
    sid = client.create_session("badge", k=5)
    try:
        client.score(sid, z, embedding=emb)
        with pytest.raises(BadBatch, match="embedding"):
            client.score(sid, z, embedding=emb[:, :3])  # another width than the first batch's
        with pytest.raises(BadBatch, match="embedding"):
            client.score(sid, z)  # none at all
        bad = emb.copy()
        bad[4, 1] = np.nan
        with pytest.raises(BadBatch, match="NaN"):
            client.score(sid, z, embedding=bad)
        assert client.get_session(sid).items == 50
        with pytest.raises(BadBatch, match="labeled"):
            client.add_labeled(sid, emb)  # labeled seeds are coreset's
    finally:
        client.delete_session(sid)
    with pytest.raises(BadBatch, match="ScoreBatch"):
        client.score_batch(z, "coreset", embedding=emb)


def test_the_memory_budget_refuses_at_creation_and_is_given_back(client: Client, rng):
    free = client.info().limits.session_memory_free_bytes
    assert 0 < free <= client.info().limits.session_memory_bytes
    with pytest.raises(OverLimit, match="session-memory-mb"):
        client.create_session("coreset", k=10, candidates=10**12)
    sid = client.create_session("coreset", k=10, candidates=100_000)
    client.score(sid, None, ids=np.arange(10), embedding=rng.normal(size=(10, 64)).astype(np.float32))
    assert client.info().limits.session_memory_free_bytes < free - 100_000 * 64 * 4
    with pytest.raises(OverLimit, match="session memory"):
        wide = client.create_session("coreset", k=10, candidates=100_000)
        try:
            client.score(wide, None, ids=np.arange(2), embedding=np.zeros((2, 2**16), np.float32))
        finally:
            assert client.get_session(wide).items == 0  # refused before anything was committed
            client.delete_session(wide)
    client.delete_session(sid)
    assert client.info().limits.session_memory_free_bytes == free


# --- against the peers that have the algorithm ----------------------------------------------


def test_coreset_picks_what_scikit_activeml_and_small_text_pick(rng):
    from skactiveml.pool._core_set import k_greedy_center
    from small_text.query_strategies.coresets import greedy_coreset

    x = blobs(rng, 500, 10).astype(np.float64)
    seed = len(x) - 1  # one labeled item, every implementation's first center. The last one: small-text
    # 1.4 indexes x with positions among the unlabeled, right only when those are x's first rows
    picks, _ = k_center_greedy(x, 20, labeled=x[[seed]])
    y = np.full(len(x), np.nan)
    y[seed] = 0
    assert k_greedy_center(x, y, batch_size=20)[0].tolist() == picks.tolist()
    unlabeled = np.delete(np.arange(len(x)), seed)
    st = greedy_coreset(x, unlabeled, np.array([seed]), 20, distance_metric="euclidean")
    assert unlabeled[st].tolist() == picks.tolist()  # small-text answers in positions among the unlabeled


def test_softrank_sampling_draws_by_rank_among_the_candidates(client: Client, rng):
    import reference as pointwise

    z = rng.normal(size=(400, 4)).astype(np.float32)
    ids = rng.permutation(10_000)[:400].astype(np.int64)
    top = client.score_pool([(ids, z)], "stochastic", k=20, sampling="softrank", beta=1.5, seed=9, pre_score="entropy",
                            candidates=400)
    s = pointwise.entropy(pointwise.probs(z))
    order = np.lexsort((ids, -s))  # rank 1 = the best entropy
    rank = np.empty(400)
    rank[order] = np.arange(1, 401)
    keys = -1.5 * np.log(rank) - np.log(-np.log(pointwise.random(ids, 9) + 2.0**-54))
    want = ids[np.lexsort((ids, -keys))[:20]]
    assert top.ids.tolist() == want.tolist()
    np.testing.assert_allclose(top.scores, np.sort(keys)[::-1][:20], rtol=1e-9)
    other = client.score_pool([(ids, z)], "stochastic", k=20, sampling="softrank", beta=1.5, seed=10, pre_score="entropy")
    assert other.ids.tolist() != top.ids.tolist()
    with pytest.raises(BadBatch, match="candidates"):
        client.score_pool([(ids, z)], "stochastic", k=20, sampling="power", candidates=50)


def test_an_id_sent_twice_is_a_candidate_once_with_its_best_score(rng):
    ids = rng.integers(0, 30, 200).astype(np.int64)
    scores = rng.random(200)
    rows = {"embedding": rng.normal(size=(200, 2)).astype(np.float32)}
    got_scores, got_ids, _ = stream(Candidates(10), scores, ids, rows, [0, 50, 51, 200]).sorted()
    best = {i: scores[ids == i].max() for i in np.unique(ids)}
    want = sorted(best, key=lambda i: (-best[i], i))[:10]
    assert got_ids.tolist() == want
    np.testing.assert_array_equal(got_scores, [best[i] for i in want])


def test_eer_stays_exact_for_confident_items_and_large_steps(rng):
    d, c = 3, 3
    W, b = rng.normal(size=(c, d)) * 8, rng.normal(size=c)  # confident: logits tens apart
    h, ref_h = rng.normal(size=(6, d)), rng.normal(size=(9, d))
    lp, ref_lp = ref.log_softmax(h @ W.T + b), ref.log_softmax(ref_h @ W.T + b)
    for loss in ("entropy", "zero_one"):
        got = eer_scores(h, lp, ref_h, ref_lp, 5.0, loss)  # steps of tens of logits
        np.testing.assert_allclose(got, ref.eer(h, lp, ref_h, ref_lp, 5.0, loss, W, b), rtol=1e-7, atol=1e-9)


def test_probabilities_of_zero_give_finite_set_level_scores(client: Client, rng):
    p = rng.dirichlet(np.ones(4), size=60)
    p[::3, 1] = 0.0
    p /= p.sum(1, keepdims=True)
    emb = rng.normal(size=(60, 5)).astype(np.float32)
    top = client.score_pool(p.astype(np.float32), "expected_error_reduction", k=5, embedding=emb,
                            input_kind="probabilities", reference=60, candidates=60)
    assert np.isfinite(top.scores).all() and len(top) == 5
    samples = rng.dirichlet(np.ones(3), size=(30, 4))
    samples[::2, :, 2] = 0.0
    samples /= samples.sum(2, keepdims=True)
    top = client.score_pool(samples.astype(np.float32), "batch_bald", k=4, input_kind="probabilities")
    assert np.isfinite(top.scores).all() and len(top) == 4


def test_labeled_seeds_of_another_width_are_refused(client: Client, rng):
    emb = rng.normal(size=(20, 4)).astype(np.float32)
    with pytest.raises(BadBatch, match="labeled: 9 wide, but the embeddings are 4"):
        client.score_pool(np.zeros((20, 2), np.float32), "coreset", k=3, embedding=emb,
                          labeled=rng.normal(size=(3, 9)).astype(np.float32))
