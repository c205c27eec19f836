"""Selection strategies over a pre-score: stochastic (Gumbel top-K sampling) and class_balanced
(per-predicted-class quotas), against plain float64 versions written here, and through the service."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

import reference as ref
from poolscore.client import BadBatch, Client
from poolscore.server.errors import BadInput
from poolscore.server.strategies import parse_spec
from poolscore.server.topk.balanced import BalancedTopK, quotas


def gumbel_keys(scores: np.ndarray, ids: np.ndarray, seed: int, beta: float = 1.0, power: bool = False) -> np.ndarray:
    u = ref.random(ids, seed) + 2.0**-54
    return beta * (np.log(scores) if power else scores) - np.log(-np.log(u))


def balanced_reference(scores: np.ndarray, ids: np.ndarray, classes: np.ndarray, k: int, n_classes: int,
                       priors: tuple = ()) -> list[int]:
    """Per class, its best within its quota; what a short class leaves goes to the best of the rest."""
    q = quotas(k, n_classes, priors)
    chosen, rest = [], []
    for c in range(n_classes):
        rows = sorted(np.flatnonzero(classes == c), key=lambda r: (-scores[r], ids[r]))
        chosen += rows[:q[c]]
        rest += rows[q[c]:]
    chosen += sorted(rest, key=lambda r: (-scores[r], ids[r]))[:k - len(chosen)]
    return [int(ids[r]) for r in sorted(chosen, key=lambda r: (-scores[r], ids[r]))]


def test_quotas_are_equal_or_proportional_and_sum_to_k() -> None:
    assert quotas(10, 3).tolist() == [4, 3, 3]
    assert quotas(10, 3, (0.5, 0.3, 0.2)).tolist() == [5, 3, 2]
    assert quotas(7, 4, (1, 1, 0, 2)).tolist() == [2, 2, 0, 3]
    assert int(quotas(1000, 7, tuple(np.random.default_rng(1).random(7))).sum()) == 1000


@given(n=st.integers(0, 800), k=st.integers(1, 60), c=st.integers(1, 6), seed=st.integers(0, 2**32 - 1),
       prior=st.booleans())
def test_class_balanced_streamed_in_uneven_batches_equals_the_reference(n: int, k: int, c: int, seed: int, prior: bool) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 5, n).astype(np.float64) / 4  # heavy ties: the order by id matters
    ids = rng.permutation(n).astype(np.int64)
    classes = rng.choice(c, n, p=rng.dirichlet(np.ones(c))).astype(np.int64)  # some classes short
    priors = tuple(rng.random(c) + 0.1) if prior else ()
    top = BalancedTopK.empty(k, priors)
    cuts = sorted(rng.choice(max(n, 1), size=min(n, 12), replace=False).tolist())
    for lo, hi in zip([0] + cuts, cuts + [n]):
        top = top.merged_by_class(scores[lo:hi], ids[lo:hi], classes[lo:hi], c)
    assert top.ids.tolist() == balanced_reference(scores, ids, classes, k, c, priors)
    assert len(top.held_ids()) <= c * k  # memory: K per class at most


def test_class_balanced_refuses_priors_that_do_not_match_the_classes() -> None:
    with pytest.raises(BadInput, match=r"strategy.class_priors: 2 priors for 3 classes"):
        BalancedTopK.empty(5, (0.5, 0.5)).merged_by_class(np.ones(3), np.arange(3), np.arange(3), 3)


def test_stochastic_selection_is_the_top_k_of_gumbel_keys(backend) -> None:
    """Through the backend: β·s + Gumbel(seed, id), reproducible, the same on every backend."""
    rng = np.random.default_rng(2)
    s = rng.random(500)
    ids = np.arange(500, dtype=np.int64) * 3
    for power in (False, True):
        got = backend.to_numpy(backend.gumbel_keys(backend.from_numpy(s), backend.from_numpy(ids), 7, 2.0, power))
        np.testing.assert_allclose(got, gumbel_keys(s, ids, 7, 2.0, power), rtol=1e-12)


def test_stochastic_draws_follow_softmax_and_power_weights() -> None:
    """K = 1 over 4000 seeds: each item's share of first draws is its probability (Gumbel-max)."""
    s = np.array([0.1, 0.5, 1.0, 2.0])
    ids = np.arange(4, dtype=np.int64)
    for power, weights in ((False, np.exp(1.5 * s)), (True, s**1.5)):
        wins = np.bincount([int(np.argmax(gumbel_keys(s, ids, seed, 1.5, power))) for seed in range(4000)], minlength=4)
        np.testing.assert_allclose(wins / 4000, weights / weights.sum(), atol=0.03)


def test_selection_options_are_checked_and_named() -> None:
    spec = parse_spec("stochastic", {"pre_score": "bald", "beta": 3.0, "sampling": "power"})
    assert (spec.kernel.name, spec.selection.beta, spec.selection.sampling) == ("bald", 3.0, "power")
    assert parse_spec("class_balanced", {}).kernel.name == "margin"  # the default pre-score
    for name, values, message in [
        ("entropy", {"beta": 2.0}, r"strategy.beta: applies to stochastic, not entropy"),
        ("stochastic", {"pre_score": "class_balanced"}, r"strategy.pre_score: must be a pointwise strategy"),
        ("stochastic", {"sampling": "gumbel"}, r"strategy.sampling: 'gumbel' is not one of softmax, power"),
        ("stochastic", {"beta": -1.0}, r"strategy.beta: must be a finite number > 0"),
        ("class_balanced", {"class_priors": [0.0, 0.0]}, r"strategy.class_priors: must be finite, ≥ 0 and not all 0"),
    ]:
        with pytest.raises(BadInput, match=message):
            parse_spec(name, values)


# --- through the service ----------------------------------------------------------------------

def test_class_balanced_through_a_pool_and_a_session(client: Client, rng: np.random.Generator) -> None:
    logits = (rng.normal(size=(3000, 4)) * 2).astype(np.float32)
    logits[:, 0] += 2.5  # class 0 predicted for most rows: a plain top-K would fill up with it
    margin = client.score_batch(logits, "margin").astype(np.float64)  # the server's own pre-scores
    predicted = logits.argmax(-1)
    top = client.score_pool(logits, "class_balanced", k=40, pre_score="margin")
    assert top.ids.tolist() == balanced_reference(margin, np.arange(3000), predicted, 40, 4)
    assert np.bincount(predicted[top.ids], minlength=4).tolist() == quotas(40, 4).tolist()  # each class has ≥ 10
    sid = client.create_session("class_balanced", k=40, pre_score="margin", class_priors=[0.7, 0.1, 0.1, 0.1])
    client.stream(sid, [(np.arange(i, min(i + 700, 3000)), logits[i:i + 700]) for i in range(0, 3000, 700)])
    assert client.top_k(sid).ids.tolist() == balanced_reference(margin, np.arange(3000), predicted, 40, 4, (0.7, 0.1, 0.1, 0.1))
    assert client.get_session(sid).strategy.pre_score == "margin"


def test_stochastic_through_the_service_is_reproducible_and_seeded(client: Client, rng: np.random.Generator) -> None:
    logits = rng.normal(size=(2000, 6)).astype(np.float32)
    entropy = client.score_batch(logits, "entropy").astype(np.float64)
    keys = gumbel_keys(entropy, np.arange(2000), seed=5, beta=4.0)
    top = client.score_pool(logits, "stochastic", k=25, pre_score="entropy", beta=4.0, seed=5)
    assert top.ids.tolist() == np.lexsort((np.arange(2000), -keys))[:25].tolist()
    assert client.score_pool(logits, "stochastic", k=25, pre_score="entropy", beta=4.0, seed=6).ids.tolist() != top.ids.tolist()


def test_a_bad_selection_option_is_invalid_argument(client: Client) -> None:
    with pytest.raises(BadBatch, match=r"strategy.beta: applies to stochastic"):
        client.score_batch(np.zeros((3, 3), np.float32), "margin", beta=2.0)
    sid = client.create_session("class_balanced", k=3, class_priors=[1.0, 1.0])
    with pytest.raises(BadBatch, match=r"class_priors: 2 priors for 3 classes"):
        client.score(sid, np.zeros((4, 3), np.float32))
    assert client.get_session(sid).next_seq == 0  # nothing committed


def test_class_balanced_holds_an_id_sent_twice_once(rng):
    top = BalancedTopK.empty(4)
    ids = np.array([1, 2, 1, 3, 2, 4, 5], np.int64)
    scores = np.array([0.1, 0.5, 0.9, 0.2, 0.3, 0.4, 0.05])
    classes = np.array([0, 1, 1, 0, 1, 0, 1], np.int64)
    for a, b in [(0, 3), (3, 7)]:
        top = top.merged_by_class(scores[a:b], ids[a:b], classes[a:b], 2)
    assert sorted(top.ids.tolist()) == [1, 2, 3, 4] and len(set(top.ids.tolist())) == 4
    assert dict(zip(top.ids.tolist(), top.scores.tolist()))[1] == 0.9  # its best score, in that row's class
