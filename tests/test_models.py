"""Hosted models: raw inputs through ONNX, torch.export and TorchScript models on a real
server give the scores of running the model in-process and scoring its logits."""
from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import modelzoo
from poolscore.client import BadBatch, Client
from poolscore.server.app import build_server
from poolscore.server.config import ServeConfig
from poolscore.server.backends.torch.scorer import Scorer
from poolscore.server.strategies import ScoreOptions

X = modelzoo.digits()


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("models")
    return root, modelzoo.make_repo(root)


@pytest.fixture(scope="module")
def hosted(zoo):
    app = build_server(ServeConfig(port=0, metrics_port=-1, device="cpu", compile="off", model_repo=str(zoo[0]))).start()
    with Client(app.target, timeout=60) as c:
        c.wait_ready()
        yield c
    app.stop()


def in_process(net: modelzoo.MLP, strategy: str, x: np.ndarray = X, **kw) -> np.ndarray:
    with torch.no_grad():
        logits, hidden = net.eval()(torch.from_numpy(x))
    emb = hidden if strategy == "expected_gradient_length" else None
    return Scorer("cpu", compile="off").score(strategy, logits, embedding=emb, options=ScoreOptions(**kw)).numpy()


def test_server_info_lists_models_and_the_broken_folder(hosted: Client) -> None:
    info = hosted.info()
    models = {m.name: m for m in info.models}
    assert set(models) == {"digits_onnx", "digits_pt2", "digits_ts", "m1", "m2", "m3", "committee"}
    assert list(models["digits_onnx"].input.shape) == [-1, 64] and models["digits_onnx"].mc_dropout
    assert models["committee"].platform == "committee" and list(models["committee"].members) == ["m1", "m2", "m3"]
    assert models["digits_pt2"].default_strategy == "bald"
    assert "broken" in info.model_errors
    assert info.model_errors["broken"].endswith("broken/config.json: input.dtype: 'float31' is not one of float16, float32, float64, int64, int32")


@pytest.mark.parametrize("model", ["digits_onnx", "digits_pt2", "digits_ts"])
@pytest.mark.parametrize("strategy", ["entropy", "margin"])
def test_raw_inputs_score_like_the_model_run_in_process(hosted: Client, zoo, model: str, strategy: str) -> None:
    got = hosted.score_batch(X, strategy, model=model)
    np.testing.assert_allclose(got, in_process(zoo[1]["digits"], strategy), rtol=1e-5, atol=1e-6)


def test_the_model_embedding_feeds_expected_gradient_length(hosted: Client, zoo) -> None:
    got = hosted.score_batch(X[:300], "expected_gradient_length", model="digits_onnx")
    np.testing.assert_allclose(got, in_process(zoo[1]["digits"], "expected_gradient_length", X[:300]), rtol=1e-5, atol=1e-6)


def test_pool_top_k_through_a_model_in_uneven_batches(hosted: Client, zoo) -> None:
    pool = [(np.arange(i, min(i + 333, len(X))), X[i:i + 333]) for i in range(0, len(X), 333)]
    top = hosted.score_pool(pool, "least_confidence", k=25, model="digits_onnx")
    want = in_process(zoo[1]["digits"], "least_confidence")
    np.testing.assert_array_equal(top.ids, np.lexsort((np.arange(len(X)), -want))[:25])


def test_mc_dropout_passes_are_seeded_and_match_in_process(hosted: Client, zoo) -> None:
    x = X[:200]
    a = hosted.score_batch(x, "bald", model="digits_pt2", samples=8, model_seed=3)
    b = hosted.score_batch(x, "bald", model="digits_pt2", samples=8, model_seed=3)
    c = hosted.score_batch(x, "bald", model="digits_pt2", samples=8, model_seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and (a > 0).mean() > 0.9  # dropout really varies the passes
    net = zoo[1]["digits"].train()  # in-process: the same seed, the T copies as one batch
    torch.manual_seed(3)
    with torch.no_grad():
        logits = net(torch.from_numpy(x).repeat(8, 1))[0].view(8, 200, 10).transpose(0, 1)
    net.eval()
    want = Scorer("cpu", compile="off").score("bald", logits).numpy()
    np.testing.assert_allclose(a, want, rtol=1e-5, atol=1e-6)


def test_onnx_mc_dropout_gives_a_sample_axis(hosted: Client) -> None:
    vr = hosted.score_batch(X[:300], "variation_ratios", model="digits_onnx", samples=10)
    assert vr.shape == (300,) and ((vr >= 0) & (vr <= 0.9)).all() and vr.max() > 0


def test_a_committee_of_three_models(hosted: Client, zoo) -> None:
    with torch.no_grad():
        logits = torch.stack([zoo[1][m](torch.from_numpy(X))[0] for m in ("m1", "m2", "m3")], dim=1)
    for strategy in ("vote_entropy", "kl_disagreement"):
        want = Scorer("cpu", compile="off").score(strategy, logits).numpy()
        np.testing.assert_allclose(hosted.score_batch(X, strategy, model="committee"), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("call, message", [
    (lambda c: c.score_batch(X[:5], "entropy", model="nope"), r"model.name: no model 'nope'"),
    (lambda c: c.score_batch(X[:5], "entropy", model="broken"), r"no model 'broken' \(it failed to load: .*float31"),
    (lambda c: c.score_batch(X[:5, :60], "entropy", model="digits_onnx"), r"inputs: model digits_onnx takes shape \['N', 64\], got \[5, 60\]"),
    (lambda c: c.score_batch(X[:5], "bald", model="digits_onnx"), r"strategy bald needs \[N, T, C\]: set samples > 0"),
    (lambda c: c.score_batch(X[:5], "entropy", model="committee"), r"strategy entropy takes \[N, C\]; committee would give a sample axis"),
    (lambda c: c.score_batch(X[:5], "bald", model="m1", samples=4), r"model m1 has no MC-dropout variant"),
])
def test_model_errors_are_invalid_argument(hosted: Client, call, message: str) -> None:
    with pytest.raises(BadBatch, match=message):
        call(hosted)


def test_reload_picks_up_a_new_model_folder(zoo) -> None:
    root = zoo[0]
    app = build_server(ServeConfig(port=0, metrics_port=-1, device="cpu", compile="off", model_repo=str(root))).start()
    try:
        with Client(app.target) as c:
            shutil.copytree(root / "m1", root / "m1_copy")
            reply = c.reload_models()
            assert "m1_copy" in {m.name for m in reply.models}
            np.testing.assert_array_equal(c.score_batch(X[:50], "ratio", model="m1_copy"), c.score_batch(X[:50], "ratio", model="m1"))
    finally:
        shutil.rmtree(root / "m1_copy", ignore_errors=True)
        app.stop()


def test_get_top_k_answers_while_a_slow_batch_is_scored(tmp_path: Path) -> None:
    """A batch is scored outside the session's lock: GetTopK keeps answering, with the state as
    committed before that batch, while a model forward of seconds runs; the batch then commits."""
    modelzoo.write_slow(tmp_path / "models", rounds=600)
    app = build_server(ServeConfig(port=0, metrics_port=-1, device="cpu", compile="off",
                                   model_repo=str(tmp_path / "models"))).start()
    rng = np.random.default_rng(4)
    try:
        with Client(app.target, timeout=120) as writer, Client(app.target, timeout=30) as reader:
            writer.wait_ready()
            sid = writer.create_session("entropy", k=3, model="slow")
            writer.score(sid, rng.normal(size=(8, 256)).astype(np.float32))  # quick: 8 rows
            big = rng.normal(size=(3000, 256)).astype(np.float32)
            done = threading.Event()
            slow = threading.Thread(target=lambda: (writer.score(sid, big), done.set()))
            start = time.monotonic()
            slow.start()
            answered = []  # (when, items) of each GetTopK while the batch is in flight
            while not done.is_set():
                answered.append((time.monotonic(), reader.top_k(sid).items))
            took = time.monotonic() - start
            slow.join()
        assert took > 1.0, f"the slow model took {took:.2f} s: too fast to show anything"
        during = [items for _, items in answered]
        assert during.count(8) >= 10 and set(during) <= {8, 3008}  # the committed state, never a half
        times = [start] + [t for t, _ in answered]
        assert max(b - a for a, b in zip(times, times[1:])) < took / 2  # no call waited out the batch
        assert reader_items(app.target, sid) == 3008
    finally:
        app.stop()


def reader_items(target: str, sid: str) -> int:
    with Client(target) as c:
        return c.top_k(sid).items
