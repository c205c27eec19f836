"""`--backend onnx`: scorer graphs in onnxruntime, no torch import, the torch backend's scores."""
from __future__ import annotations

import json
import subprocess
import sys
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

HERE = Path(__file__).resolve().parent


def torch_scores(name: str, x: np.ndarray, **options) -> np.ndarray:
    emb = options.pop("embedding", None)
    return Scorer("cpu", compile="off").score(name, torch.from_numpy(x), embedding=None if emb is None else torch.from_numpy(emb),
                                              options=ScoreOptions(**options)).numpy()


def test_serves_every_strategy_and_a_model_without_importing_torch(tmp_path: Path) -> None:
    nets = modelzoo.make_repo(tmp_path / "models")
    rng = np.random.default_rng(6)
    data = {"flat": (rng.normal(size=(300, 9)) * 3).astype(np.float32), "sampled": rng.normal(size=(120, 5, 7)).astype(np.float32),
            "emb": rng.normal(size=(300, 16)).astype(np.float32), "x": modelzoo.digits()[:400]}
    np.savez(tmp_path / "data.npz", **data)
    done = subprocess.run([sys.executable, str(HERE / "onnx_backend_probe.py"), str(tmp_path / "models"), str(tmp_path / "data.npz")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["torch_loaded"] == [], "the onnx backend imported torch"
    assert "onnx backend" in out["device"] and "digits_pt2" not in out["models"] and "digits_onnx" in out["models"]
    for name in ("least_confidence", "margin", "ratio", "entropy"):
        np.testing.assert_allclose(out[name], torch_scores(name, data["flat"], temperature=0.7), rtol=1e-5, atol=1e-6, err_msg=name)
    for name in ("variation_ratios", "predictive_entropy", "bald", "vote_entropy", "kl_disagreement", "kl_max_disagreement"):
        np.testing.assert_allclose(out[name], torch_scores(name, data["sampled"], base=2.0), rtol=1e-5, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(out["expected_gradient_length"], torch_scores("expected_gradient_length", data["flat"], embedding=data["emb"]),
                               rtol=1e-5, atol=1e-6)
    ids = torch.arange(50)
    np.testing.assert_array_equal(out["random"], Scorer("cpu", compile="off").score("random", ids=ids, options=ScoreOptions(seed=3)).numpy())
    with torch.no_grad():
        want = torch_scores("margin", nets["digits"](torch.from_numpy(data["x"]))[0].numpy())
    assert out["model_top"] == np.lexsort((np.arange(400), -want))[:20].tolist()


@pytest.fixture(scope="module")
def onnx_client():
    app = build_server(ServeConfig(port=0, metrics_port=-1, backend="onnx")).start()
    with Client(app.target) as c:
        c.wait_ready()
        yield c
    app.stop()


def test_onnx_backend_names_the_bad_row(onnx_client: Client) -> None:
    x = np.zeros((6, 4), np.float32)
    x[4, 1] = np.inf
    with pytest.raises(BadBatch, match=r"batch 0: logits: Inf in row 4"):
        onnx_client.score_batch(x, "entropy")
    with pytest.raises(BadBatch, match=r"strategy bald needs shape \[N, T, C\], got \[6, 4\]"):
        onnx_client.score_batch(x, "bald")


def test_onnx_backend_session_top_k_equals_the_torch_backend(onnx_client: Client, client: Client) -> None:
    x = np.random.default_rng(2).normal(size=(5000, 6)).astype(np.float32)
    batches = [(np.arange(i, min(i + 700, 5000)), x[i:i + 700]) for i in range(0, 5000, 700)]
    tops = []
    for c in (onnx_client, client):
        sid = c.create_session("least_confidence", k=40)
        c.stream(sid, batches)
        tops.append(c.top_k(sid))
    np.testing.assert_array_equal(tops[0].ids, tops[1].ids)
    np.testing.assert_allclose(tops[0].scores, tops[1].scores, rtol=1e-5)


def test_onnx_backend_breaks_ties_by_id_like_the_torch_backend(onnx_client: Client, client: Client) -> None:
    """6000 copies of 5 rows, all over the pool: copies tie exactly, so the top-K holds the best
    rows' copies with the smallest ids, in id order (the ONNX backend scored them by position)."""
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(5, 10)) * 2).astype(np.float32)[rng.integers(0, 5, 6000)]
    scores = Scorer("cpu", compile="off").score("entropy", torch.from_numpy(x)).numpy()
    want = np.lexsort((np.arange(6000), -scores))[:1500].tolist()
    for c in (onnx_client, client):
        top = c.score_pool(x, "entropy", k=1500)
        assert top.ids.tolist() == want
