"""Run by test_onnx_backend.py in a fresh interpreter: serve with --backend onnx, score,
and prove torch was never imported. argv: model repo, .npz of data; prints JSON."""
import json
import sys

import numpy as np

from poolscore.client import Client
from poolscore.server.app import build_server
from poolscore.server.config import ServeConfig

app = build_server(ServeConfig(port=0, metrics_port=-1, backend="onnx", model_repo=sys.argv[1])).start()
data = np.load(sys.argv[2])
out = {}
with Client(app.target) as client:
    client.wait_ready()
    for name in ("least_confidence", "margin", "ratio", "entropy"):
        out[name] = client.score_batch(data["flat"], name, temperature=0.7).tolist()
    for name in ("variation_ratios", "predictive_entropy", "bald", "vote_entropy", "kl_disagreement", "kl_max_disagreement"):
        out[name] = client.score_batch(data["sampled"], name, base=2.0).tolist()
    out["expected_gradient_length"] = client.score_batch(data["flat"], "expected_gradient_length", embedding=data["emb"]).tolist()
    out["random"] = client.score_batch(None, "random", ids=np.arange(50), seed=3).tolist()
    out["model_top"] = client.score_pool(data["x"], "margin", k=20, model="digits_onnx").ids.tolist()
    out["device"] = client.info().device
    out["models"] = sorted(m.name for m in client.info().models)
app.stop()
out["torch_loaded"] = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
print(json.dumps(out))
