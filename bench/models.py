"""Raw inputs through a hosted model, end to end, beside the same model run in-process.

A 256 → 512 → C MLP (random weights, written as ONNX) scores a pool of raw inputs:
(a) through a real poolscore server on loopback (`score_pool(..., model=...)`), and
(b) in-process with onnxruntime, scored with careful NumPy (the peer) and with baal's Entropy,
    and a NumPy top-K.
With --backend onnx in the server (when available), the scorer runs as an ONNX graph too.

    python bench/models.py [--rows 200000] [--classes 100]
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from baal.active.heuristics import Entropy
from onnx import TensorProto, helper, numpy_helper

from poolscore.client import Client

K = 1000


def write_mlp(folder: Path, features: int, hidden: int, classes: int) -> None:
    rng = np.random.default_rng(0)
    w = {"w1": rng.normal(size=(features, hidden)) / np.sqrt(features), "b1": np.zeros(hidden),
         "w2": rng.normal(size=(hidden, classes)) / np.sqrt(hidden), "b2": np.zeros(classes)}
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["a"]), helper.make_node("Add", ["a", "b1"], ["b"]),
             helper.make_node("Relu", ["b"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["c"]),
             helper.make_node("Add", ["c", "b2"], ["logits"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True)
    onnx.save(model, folder / "model.onnx")
    (folder / "config.json").write_text(json.dumps({"input": {"name": "x", "shape": [-1, features]}, "max_batch_rows": 8192}))


def timed(fn, repeats: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def careful_entropy(logits: np.ndarray) -> np.ndarray:
    """Entropy as a careful user writes it: a stable log-softmax in float32, one pass per stat."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1)
    return np.log(s) - (e * z).sum(axis=1) / s


def in_process(model: Path, x: np.ndarray, score=None) -> np.ndarray:
    """A peer: onnxruntime in batches, then baal's Entropy (its own softmax) or `score`, NumPy top-K."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    logits = np.concatenate([session.run(["logits"], {"x": c})[0] for c in np.array_split(x, max(1, len(x) // 8192))])
    scores = (score or Entropy().get_uncertainties)(logits)
    top = np.argpartition(-scores, K)[:K]
    return top[np.lexsort((top, -scores[top]))]


def serve(repo: Path, backend: str) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "poolscore.server.cli", "serve", "--port", "0", "--metrics-port", "-1",
           "--model-repo", str(repo), "--compile", "sync", "--warm", "entropy", "--log-level", "WARNING"]
    if backend != "torch":
        cmd += ["--backend", backend]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        found = re.search(r"listening on [\d.]+:(\d+)", line)
        if found:
            return proc, f"127.0.0.1:{found.group(1)}"
    raise RuntimeError(f"the {backend} server did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--features", type=int, default=256)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--backends", default="torch,onnx")
    args = ap.parse_args()
    x = np.random.default_rng(1).normal(size=(args.rows, args.features)).astype(np.float32)
    print(f"pool: {args.rows:,} x {args.features} float32 inputs ({x.nbytes / 1e6:.0f} MB); "
          f"MLP {args.features}-512-{args.classes}; entropy, k={K}")
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        write_mlp(repo / "mlp", args.features, 512, args.classes)
        t_baal, peer_ids = timed(lambda: in_process(repo / "mlp" / "model.onnx", x), repeats=2)
        print(f"  {'onnxruntime + baal in-process':<36} {args.rows / t_baal / 1e3:8.1f} k rows/s  {t_baal:6.2f} s")
        t_peer, _ = timed(lambda: in_process(repo / "mlp" / "model.onnx", x, careful_entropy), repeats=2)
        print(f"  {'onnxruntime + careful NumPy':<36} {args.rows / t_peer / 1e3:8.1f} k rows/s  {t_peer:6.2f} s"
              f"  (the peer below; baal's public path is {t_baal / t_peer:.2f}x its time)")
        for backend in args.backends.split(","):
            try:
                proc, target = serve(repo, backend)
            except RuntimeError as err:
                print(f"  poolscore {backend} backend: {err}")
                continue
            try:
                with Client(target, timeout=600) as c:
                    c.wait_ready()
                    c.score_pool(x[:20_000], "entropy", k=K, model="mlp")  # warm
                    t, top = timed(lambda: c.score_pool(x, "entropy", k=K, model="mlp"))
                same = len(np.intersect1d(top.ids, peer_ids)) / K
                print(f"  {'poolscore ' + backend + ' backend, end to end':<36} {args.rows / t / 1e3:8.1f} k rows/s  "
                      f"{t:6.2f} s  -> {t_peer / t:.2f}x the careful peer (target >= 1.0), {t_baal / t:.2f}x baal's; "
                      f"top-{K} overlap {same:.1%}")
            finally:
                proc.terminate()
                proc.wait(timeout=30)


if __name__ == "__main__":
    main()
