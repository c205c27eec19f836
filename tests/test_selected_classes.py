"""poolscore_selected_class_share: the predicted classes of what a top-K answers, for every kind of
selection, through a real server, checked against the classes NumPy gives the selected rows."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pytest

from poolscore.client import Client
from poolscore.server.app import build_server
from poolscore.server.config import ServeConfig
from poolscore.server.metrics import CLASS_SERIES
from poolscore.server.topk.classes import ClassMap
from test_metrics import get


def shares(text: str, strategy: str) -> dict[str, float]:
    prefix = "poolscore_selected_class_share{"
    out = {}
    for line in text.splitlines():
        if line.startswith(prefix) and f'strategy="{strategy}"' in line:
            out[line.split('class="')[1].split('"')[0]] = float(line.split()[-1])
    return out


def expected(classes: np.ndarray) -> dict[str, float]:
    values, counts = np.unique(classes, return_counts=True)
    return {str(v): c / len(classes) for v, c in zip(values, counts)}


@pytest.fixture(scope="module", params=["torch", "onnx"])
def app(request) -> Iterator:
    app = build_server(ServeConfig(port=0, metrics_port=0, device="cpu", compile="off", backend=request.param)).start()
    yield app
    app.stop()


def _pool(rng, n: int = 3000, c: int = 5) -> np.ndarray:
    x = rng.normal(size=(n, c)).astype(np.float32) * 3
    return x


@pytest.mark.parametrize("strategy", ["entropy", "margin", "stochastic"])
def test_a_pool_scored_in_batches_reports_the_classes_of_what_it_selected(app, strategy: str) -> None:
    rng = np.random.default_rng(1)
    x = _pool(rng)
    with Client(app.target, timeout=30, batch_bytes=256 * 5 * 4, shared_memory=False) as c:
        c.wait_ready()
        top = c.score_pool(x, strategy, k=40)  # 12 batches: entries come, go, and are pruned
        got = shares(get(f"http://127.0.0.1:{app.metrics_port}/metrics"), strategy)
    assert got == pytest.approx(expected(x[np.asarray(top.ids)].argmax(1)))
    assert sum(got.values()) == pytest.approx(1.0)


def test_sent_ids_and_a_session_answer_as_the_pool_does(app) -> None:
    rng = np.random.default_rng(2)
    x = _pool(rng, 2000, 4)
    ids = rng.choice(10**12, 2000, replace=False).astype(np.int64)
    with Client(app.target, timeout=30) as c:
        c.wait_ready()
        with c.session("least_confidence", k=25) as s:
            for lo in range(0, 2000, 300):
                c.score(s.id, x[lo:lo + 300], ids=ids[lo:lo + 300])
            top = c.top_k(s.id)
        got = shares(get(f"http://127.0.0.1:{app.metrics_port}/metrics"), "least_confidence")
    row = {int(i): r for r, i in enumerate(ids)}
    assert got == pytest.approx(expected(x[[row[i] for i in top.ids]].argmax(1)))


def test_class_balanced_and_set_level_selections_report_their_classes(app) -> None:
    rng = np.random.default_rng(3)
    x, emb = _pool(rng, 1500, 3), rng.normal(size=(1500, 8)).astype(np.float32)
    with Client(app.target, timeout=30, batch_bytes=200 * 8 * 4, shared_memory=False) as c:
        c.wait_ready()
        balanced = c.score_pool(x, "class_balanced", k=30)
        badge = c.score_pool(x, "badge", k=20, embedding=emb)
        text = get(f"http://127.0.0.1:{app.metrics_port}/metrics")
    for strategy, top in (("class_balanced", balanced), ("badge", badge)):
        assert shares(text, strategy) == pytest.approx(expected(x[np.asarray(top.ids)].argmax(1))), strategy
    assert shares(text, "class_balanced") == pytest.approx({"0": 1 / 3, "1": 1 / 3, "2": 1 / 3})


def test_many_classes_fold_into_other(app) -> None:
    c_wide = CLASS_SERIES + 30
    x = np.full((400, c_wide), -5.0, np.float32)
    x[np.arange(400), np.arange(400) % c_wide] = 5.0  # each class predicted by 4 or 5 rows, all equally uncertain
    with Client(app.target, timeout=30) as c:
        c.wait_ready()
        top = c.score_pool(x, "entropy", k=400)
        text = get(f"http://127.0.0.1:{app.metrics_port}/metrics")
    got = shares(text, "entropy")
    assert len(top.ids) == 400 and len(got) == CLASS_SERIES + 1 and "other" in got
    assert sum(got.values()) == pytest.approx(1.0)
    classes = np.arange(400) % c_wide
    counts = np.bincount(classes)
    assert got["0"] == pytest.approx(counts[0] / 400) and got["other"] == pytest.approx(
        1 - sum(v for k, v in got.items() if k != "other"))


def test_the_class_map_keeps_each_ids_best_row_and_prunes_to_what_is_held() -> None:
    m = ClassMap().entered(np.array([5, 7, 9]), np.array([0.5, 0.9, 0.1]), np.array([1, 2, 3]), held=np.array([5, 7, 9]))
    m = m.entered(np.array([7, 9]), np.array([0.4, 0.1]), np.array([4, 6]), held=np.array([5, 7, 9]))
    assert m.of(np.array([9, 7, 5, 6])).tolist() == [6, 2, 1, -1]  # 7: its best row's class; 9: a tie, the latest
    big = np.arange(5000)
    m = m.entered(big, np.zeros(5000), big % 3, held=np.array([5, 4999]))  # past 2 × held + slack: pruned
    assert sorted(set(m.ids.tolist())) == [5, 4999] and m.of(np.array([5, 4999, 7])).tolist() == [1, 4999 % 3, -1]
    assert ClassMap().of(np.array([1, 2])).tolist() == [-1, -1]


def test_an_id_sent_again_keeps_the_class_of_the_row_whose_score_the_top_k_kept(app) -> None:
    """Ids repeated within a batch and across batches: the top-K keeps each id's best score, and
    the shares count that row's class, not the latest row's."""
    x = np.array([[9, 0, 0], [0, 9, 0], [0, 0, 1], [5, 5, 0], [0, 6, 0]], np.float32)  # classes 0, 1, 2, 0, 1
    ids = np.array([7, 7, 9, 8, 8])  # 7: 0.0 (class 0) then ~0 (class 1); 8: high (class 0), then low (class 1)
    with Client(app.target, timeout=30) as c:
        c.wait_ready()
        with c.session("entropy", k=2) as s:
            c.score(s.id, x[[3]], ids=ids[[3]])  # id 8, uncertain, class 0
            c.score(s.id, x[[2, 4]], ids=ids[[2, 4]])  # id 9 (the most uncertain), id 8 again: surer, class 1
            c.score(s.id, x[[0, 1]], ids=ids[[0, 1]])  # id 7 twice, both sure: enters no top
            top = c.top_k(s.id)
        got = shares(get(f"http://127.0.0.1:{app.metrics_port}/metrics"), "entropy")
    assert list(top.ids) == [9, 8]
    assert got == pytest.approx({"2": 0.5, "0": 0.5})  # 8 is class 0: its row of entropy 0.69, not the later one


def test_a_random_pool_with_any_logits_still_scores_and_set_level_duplicates_count_their_best_row(app) -> None:
    with Client(app.target, timeout=30) as c:
        c.wait_ready()
        assert len(c.score_pool(np.arange(50, dtype=np.float32), "random", k=5)) == 5  # [N]: no classes, no error
        x = np.array([[0, 9], [1.2, 1], [3, 0]], np.float32)  # id 1: sure of class 1, then unsure, class 0
        top = c.score_pool([(np.array([1, 1, 2]), x, np.eye(3, 4, dtype=np.float32))], "badge", k=2, pre_score="margin")
        got = shares(get(f"http://127.0.0.1:{app.metrics_port}/metrics"), "badge")
    assert sorted(top.ids) == [1, 2] and got == {"0": 1.0}  # id 1 as its best-scoring (unsure) row: class 0


def test_rows_from_a_checkpoint_older_than_the_class_column_answer_unknown_and_keep_the_new_ones() -> None:
    """Chunks restored from an older server lack the class column; rows merged since have it. Both
    are handed over (the old as -1), and compacting them keeps the column."""
    from poolscore.server.setlevel.candidates import Candidates

    old = Candidates(5, np.array([0.9, 0.8]), np.array([1, 2]), np.array([0, 0]), np.array([0, 1]),
                     ({"embedding": np.zeros((2, 3), np.float32)},), 2)
    new = old.merged(np.array([0.95, 0.7, 0.85]), np.array([3, 4, 5]),
                     {"embedding": np.ones((3, 3), np.float32), "classes": np.array([2, 1, 0], np.int32)})
    assert dict(zip(new.ids.tolist(), new.column("classes").tolist())) == {1: -1, 2: -1, 3: 2, 4: 1, 5: 0}
    packed = new._compacted()
    assert dict(zip(packed.ids.tolist(), packed.column("classes").tolist())) == {1: -1, 2: -1, 3: 2, 4: 1, 5: 0}
