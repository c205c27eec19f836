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


@pytest.mark.parametrize("strategy, options", [("coreset", {}), ("class_balanced", {}),
                                               ("stochastic", {"sampling": "softrank"})])
def test_selections_that_do_not_merge_are_refused_before_any_work(client: Client, strategy, options) -> None:
    set_level = {s.name for s in client.info().strategies if s.set_level}
    assert {"coreset", "badge", "cluster_margin", "batch_bald", "expected_error_reduction"} <= set_level
    with pytest.raises(ValueError, match="do not merge"):
        score_pool_sharded(["127.0.0.1:1", "127.0.0.1:2"], np.zeros((4, 3), np.float32), strategy, 2, **options)
