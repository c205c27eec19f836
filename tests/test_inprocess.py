"""poolscore score without --target scores in its own process (server/inprocess.py): the same
pipeline and session state as a server, so the same top-K as a server on the same backend,
and the same typed errors."""
from __future__ import annotations

import numpy as np
import pytest

from poolscore.client import BadBatch, Batch, Client, OverLimit
from poolscore.server import inprocess
from poolscore.server.app import build_server
from poolscore.server.config import ServeConfig


@pytest.fixture(scope="module")
def onnx_server():
    app = build_server(ServeConfig(port=0, metrics_port=-1, device="cpu", backend="onnx", warm="")).start()
    yield app.target
    app.stop()


def pools(rng: np.random.Generator) -> dict:
    z = rng.normal(size=(4000, 6)).astype(np.float32)
    emb = rng.normal(size=(4000, 8)).astype(np.float32)
    ids = rng.permutation(10**6)[:4000]
    keyed = [Batch(z[i:i + 1000], keys=[f"img/{j:05d}.png" for j in range(i, i + 1000)]) for i in range(0, 4000, 1000)]
    mc = rng.normal(size=(1500, 5, 4)).astype(np.float32)
    return {
        "entropy": (z, {}, {"ids": ids}),
        "margin-t2": (z, {"temperature": 2.0}, {}),
        "keyed": (keyed, {}, {}),
        "class_balanced": (z, {"pre_score": "entropy"}, {}),
        "stochastic": (z, {"beta": 2.0, "seed": 5}, {}),
        "coreset": (z, {"candidates": 500}, {"embedding": emb, "labeled": emb[:3]}),
        "expected_gradient_length": (z, {}, {"embedding": emb}),
        "bald": (mc, {}, {}),
    }


@pytest.mark.parametrize("case", ["entropy", "margin-t2", "keyed", "class_balanced", "stochastic", "coreset",
                                  "expected_gradient_length", "bald"])
def test_in_process_gives_the_servers_top_k(onnx_server: str, rng: np.random.Generator, case: str) -> None:
    pool, options, extra = pools(rng)[case]
    strategy = {"margin-t2": "margin", "keyed": "entropy"}.get(case, case)
    labeled = extra.pop("labeled", None)
    with Client(onnx_server) as c:
        want = c.score_pool(pool, strategy, k=25, labeled=labeled, **extra, **options)
    if "ids" in extra or "embedding" in extra:  # in process, a pool is what batches_of takes: one batch here
        pool = [Batch(pool, extra.get("ids"), extra.get("embedding"))]
    seen = []
    got = inprocess.score(pool, strategy, 25, options=options, labeled=labeled, progress=seen.append)
    assert got == want and got.items == want.items
    assert sum(seen) == want.items  # the progress callback saw every row


def test_errors_are_the_clients_typed_ones(rng: np.random.Generator) -> None:
    z = rng.normal(size=(10, 3)).astype(np.float32)
    z[4, 1] = np.nan
    with pytest.raises(BadBatch, match=r"batch 0: logits: NaN in row 4"):
        inprocess.score(z, "entropy", 3, options={})
    with pytest.raises(BadBatch, match="unknown 'entropi'"):
        inprocess.score(z, "entropi", 3, options={})
    with pytest.raises(OverLimit, match="over this server's limit"):
        inprocess.score(z, "entropy", 10**10, options={})


def test_scoring_in_process_imports_neither_grpc_nor_torch(tmp_path) -> None:
    """`poolscore score` without a server is a short job: importing grpc (40 ms) or torch
    (seconds) would be most of it. A bad row still raises the client's typed error."""
    import subprocess
    import sys

    pool = tmp_path / "pool.npy"
    np.save(pool, np.random.default_rng(1).normal(size=(3000, 5)).astype(np.float32))
    script = f"""
import sys
from poolscore.client.cli import main
assert main(["score", {str(pool)!r}, "--strategy", "margin", "-k", "5", "--out", {str(tmp_path / 'top.csv')!r},
             "--no-progress"]) == 0
assert "grpc" not in sys.modules and "torch" not in sys.modules, [m for m in sys.modules if m.startswith(("grpc", "torch"))][:5]
from poolscore.server import inprocess
import numpy as np
bad = np.zeros((10, 3), np.float32); bad[4, 1] = np.nan
try:
    inprocess.score(bad, "entropy", 3, options=dict())
except Exception as err:
    print(type(err).__name__, err.code.name)
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[-2:] == ["BadBatch", "INVALID_ARGUMENT"]
    assert len((tmp_path / "top.csv").read_text().splitlines()) == 6  # a header and the top 5
