"""A pool sharded over two real servers gives the single server's top-K exactly."""
from __future__ import annotations

import numpy as np
import pytest

from poolscore.client import Client, TopK, merge, score_pool_sharded
from poolscore.server.app import build_server
from poolscore.server.config import ServeConfig


@pytest.fixture(scope="module")
def second_app():
    app = build_server(ServeConfig(port=0, metrics_port=-1, device="cpu", compile="off")).start()
    yield app
    app.stop()


def test_sharded_pool_equals_one_server(app, second_app, client: Client) -> None:
    rng = np.random.default_rng(8)
    p = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 50_000)] * 0.6 + 0.08  # heavy ties
    p[::3] = 0.2
    one = client.score_pool(p, "least_confidence", k=300, input_kind="probabilities")
    two = score_pool_sharded([app.target, second_app.target], p, "least_confidence", k=300, input_kind="probabilities")
    assert two == one and two.items == 50_000


def test_merge_breaks_ties_by_id() -> None:
    a = TopK(np.array([5, 9]), np.array([0.9, 0.5]), [], 10)
    b = TopK(np.array([2, 7]), np.array([0.5, 0.4]), [], 20)
    m = merge([a, b], 3)
    assert m.ids.tolist() == [5, 2, 9] and m.scores.tolist() == [0.9, 0.5, 0.5] and m.items == 30


@pytest.mark.parametrize("strategy", ["class_balanced", "expected_error_reduction"])
def test_selections_that_do_not_merge_are_refused_before_any_work(client: Client, strategy) -> None:
    set_level = {s.name for s in client.info().strategies if s.set_level}
    assert {"coreset", "badge", "cluster_margin", "batch_bald", "expected_error_reduction"} <= set_level
    with pytest.raises(ValueError, match="do not merge"):
        score_pool_sharded(["127.0.0.1:1", "127.0.0.1:2"], np.zeros((4, 3), np.float32), strategy, 2)


def setlevel_pool(n: int, samples: bool = False, seed: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """Logits ([N, C], or [N, T, C]) with repeated rows (pre-score ties, decided by id), and embeddings."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (n, 6, 5) if samples else (n, 5)).astype(np.float32)
    logits[::11] = logits[4]
    return logits, rng.normal(size=(n, 8)).astype(np.float32)


@pytest.mark.parametrize("strategy, options, samples", [
    ("coreset", {}, False), ("coreset", {"pre_score": "margin", "candidates": 300}, False),
    ("badge", {"seed": 3}, False), ("cluster_margin", {"candidates": 150}, False),
    ("batch_bald", {"candidates": 60}, True), ("stochastic", {"sampling": "softrank", "seed": 4, "beta": 2.0}, False)])
def test_set_level_over_two_replicas_equals_one_server(app, second_app, client: Client, strategy, options,
                                                       samples) -> None:
    """Pass one merges the replicas' candidate sets; the final stage runs once, on the same M rows."""
    logits, emb = setlevel_pool(6000, samples)
    one = client.score_pool(logits, strategy, k=20, embedding=emb, **options)
    with Client([app.target, second_app.target], batch_bytes=32 * 1024) as two:
        got = two.score_pool(logits, strategy, k=20, embedding=emb, **options)
    assert got == one and got.items == 6000 and len(got) == 20


def test_coreset_over_replicas_keeps_labeled_seeds_and_string_keys(app, second_app, client: Client) -> None:
    logits, emb = setlevel_pool(3000, seed=10)
    keys = [f"doc-{i:05d}" for i in np.random.default_rng(1).permutation(3000)]
    labeled = emb[:40] + 0.01
    one = client.score_pool(logits, "coreset", k=15, embedding=emb, keys=keys, labeled=labeled, pre_score="entropy")
    with Client([app.target, second_app.target], batch_bytes=16 * 1024) as two:
        got = two.score_pool(logits, "coreset", k=15, embedding=emb, keys=keys, labeled=labeled, pre_score="entropy")
        assert got == one and len(got.keys) == 15
        assert got != two.score_pool(logits, "coreset", k=15, embedding=emb, keys=keys, pre_score="entropy")
        with pytest.raises(ValueError, match="random scores string keys by their row"):
            two.score_pool(logits, "coreset", k=15, embedding=emb, keys=keys)


def test_set_level_over_replicas_refuses_a_pool_it_cannot_read_twice(app, second_app) -> None:
    logits, emb = setlevel_pool(100)
    with Client([app.target, second_app.target]) as two:
        with pytest.raises(ValueError, match="reads the pool twice"):
            two.score_pool(iter([(np.arange(100), logits, emb)]), "coreset", k=5)
