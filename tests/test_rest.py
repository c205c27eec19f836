"""The KServe v2 REST endpoints (--http-port): health, metadata and infer, in JSON and in
Triton's binary tensor extension, called as curl would; errors as {"error": ...} with a status."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest

import modelzoo
import reference as ref
from poolscore.client import Client
from poolscore.server.app import build_server
from poolscore.server.config import ServeConfig

X = modelzoo.digits()[:50]


@pytest.fixture(scope="module")
def rest(tmp_path_factory):
    root = tmp_path_factory.mktemp("rest_models")
    nets = modelzoo.make_repo(root)
    app = build_server(ServeConfig(port=0, metrics_port=-1, device="cpu", compile="off", model_repo=str(root),
                                   http_port=0)).start()
    yield f"http://127.0.0.1:{app.http_port}", nets, app
    app.stop()


def call(url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_health_and_metadata(rest) -> None:
    base, _, _ = rest
    assert call(f"{base}/v2/health/live")[:1] == (200,) and json.loads(call(f"{base}/v2/health/ready")[2]) == {"ready": True}
    meta = json.loads(call(f"{base}/v2")[2])
    assert meta["name"] == "poolscore" and "binary_tensor_data" in meta["extensions"]
    model = json.loads(call(f"{base}/v2/models/digits_onnx")[2])
    assert model["inputs"][0]["name"] == "x" and {o["name"] for o in model["outputs"]} == {"logits", "embedding", "scores"}
    assert call(f"{base}/v2/models/digits_onnx/versions/1/ready")[0] == 200
    assert call(f"{base}/v2/models/entropy/ready")[0] == 200 and call(f"{base}/v2/models/nope/ready")[0] == 400


def test_infer_in_json_as_curl_sends_it(rest, rng: np.random.Generator) -> None:
    base, _, _ = rest
    z = rng.normal(size=(7, 5)).astype(np.float32)
    body = {"id": "r1", "inputs": [{"name": "logits", "shape": [7, 5], "datatype": "FP32", "data": z.ravel().tolist()}],
            "parameters": {"temperature": 2.0, "base": 2.0}}
    status, headers, data = call(f"{base}/v2/models/entropy/infer", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    assert status == 200, data
    reply = json.loads(data)
    assert reply["id"] == "r1" and reply["outputs"][0]["name"] == "scores" and reply["outputs"][0]["shape"] == [7]
    want = ref.entropy(ref.probs(z / 2.0)) / np.log(2)
    np.testing.assert_allclose(reply["outputs"][0]["data"], want, rtol=1e-4)  # float parameters arrive as floats


def test_infer_with_the_binary_tensor_extension_on_a_hosted_model(rest) -> None:
    base, nets, app = rest
    x = X[:9]
    head = json.dumps({"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()
    status, headers, data = call(f"{base}/v2/models/digits_onnx/infer", head + x.tobytes(),
                                 {"Inference-Header-Content-Length": str(len(head)),
                                  "Content-Type": "application/octet-stream"})
    assert status == 200, data
    n = int(headers["Inference-Header-Content-Length"])
    reply = json.loads(data[:n])
    out = reply["outputs"][0]
    assert out["name"] == "logits" and out["shape"] == [9, 10] and out["parameters"]["binary_data_size"] == 9 * 10 * 4
    logits = np.frombuffer(data[n:], np.float32).reshape(9, 10)
    import torch

    np.testing.assert_allclose(logits, nets["digits"](torch.from_numpy(x))[0].detach().numpy(), rtol=1e-4, atol=1e-5)
    with Client(app.target) as c:  # the hosted model's default strategy over gRPC: the same scores as over REST
        grpc_scores = c.score_batch(x, "entropy", model="digits_onnx")
    status, _, data = call(f"{base}/v2/models/digits_onnx/infer", json.dumps(
        {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}],
         "outputs": [{"name": "scores"}]}).encode())
    np.testing.assert_allclose(json.loads(data)["outputs"][0]["data"], grpc_scores, rtol=1e-5)


def test_errors_are_json_with_a_status(rest) -> None:
    base, _, _ = rest
    bad = {"inputs": [{"name": "logits", "shape": [2, 3], "datatype": "FP32", "data": [1.0, float("nan"), 0, 0, 0, 0]}]}
    cases = [(f"{base}/v2/models/entropy/infer", bad, 400, "NaN"),
             (f"{base}/v2/models/nope/infer", bad, 404, "nope"),
             (f"{base}/v2/models/entropy/infer", {"inputs": [], "parameters": {"temprature": 2.0}}, 400, "temprature"),
             (f"{base}/v2/models/entropy/infer", {"inputs": [{"name": "logit", "shape": [1, 2], "datatype": "FP32",
                                                              "data": [0.0, 1.0]}]}, 400, "logit"),
             (f"{base}/v2/nowhere", None, 404, "not a KServe v2 endpoint")]
    for url, body, code, word in cases:
        status, _, data = call(url, None if body is None else json.dumps(body).encode())
        assert status == code and word in json.loads(data)["error"], (url, status, data)
    status, _, data = call(f"{base}/v2/models/entropy/infer", b"{not json")
    assert status == 400 and "not JSON" in json.loads(data)["error"]
    import http.client

    conn = http.client.HTTPConnection(base.removeprefix("http://"), timeout=30)
    conn.putrequest("POST", "/v2/models/entropy/infer")
    conn.putheader("Content-Length", "-1")  # never "read to the end", past the size limit
    conn.endheaders()
    reply = conn.getresponse()
    assert reply.status == 400 and "Content-Length" in json.loads(reply.read())["error"]
    conn.close()


def test_tokens_guard_rest_too_but_not_health(tmp_path) -> None:
    app = build_server(ServeConfig(port=0, metrics_port=-1, device="cpu", compile="off", http_port=0, token="t0k")).start()
    try:
        base = f"http://127.0.0.1:{app.http_port}"
        assert call(f"{base}/v2/health/ready")[0] == 200
        assert call(f"{base}/v2")[0] == 401
        assert call(f"{base}/v2", headers={"Authorization": "Bearer t0k"})[0] == 200
    finally:
        app.stop()


def test_current_tritonclient_http_calls_the_rest_endpoints(rest, rng: np.random.Generator) -> None:
    import tritonclient.http as http_triton

    base, _, _ = rest
    client = http_triton.InferenceServerClient(url=base.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("digits_onnx")
    assert client.get_server_metadata()["name"] == "poolscore"
    assert client.get_model_metadata("entropy")["outputs"][0]["name"] == "scores"
    z = rng.normal(size=(6, 4)).astype(np.float32)
    for binary in (True, False):  # Triton's binary tensor extension, and plain JSON
        t = http_triton.InferInput("logits", list(z.shape), "FP32")
        t.set_data_from_numpy(z, binary_data=binary)
        out = http_triton.InferRequestedOutput("scores", binary_data=binary)
        got = client.infer("entropy", [t], outputs=[out], parameters={"temperature": 2.0}).as_numpy("scores")
        np.testing.assert_allclose(got, ref.entropy(ref.probs(z / 2.0)), rtol=1e-4)
    from importlib.metadata import version

    print(f"\ntritonclient {version('tritonclient')} over HTTP: JSON and binary, float parameters: ok")


def test_config_stats_and_the_repository_index_over_rest(rest) -> None:
    base, _, _ = rest
    config = json.loads(call(f"{base}/v2/models/digits_onnx/config")[2])
    assert config["name"] == "digits_onnx" and config["input"][0]["dims"] == ["64"]  # int64s are strings in proto JSON
    index = json.loads(call(f"{base}/v2/repository/index", b"{}")[2])
    assert {"name": "digits_onnx", "version": "1", "state": "READY"} in index
    ready = json.loads(call(f"{base}/v2/repository/index", json.dumps({"ready": True}).encode())[2])
    assert all(m["state"] == "READY" for m in ready) and len(ready) < len(index)
    body = {"inputs": [{"name": "logits", "shape": [3, 2], "datatype": "FP32", "data": [0.0] * 6}]}
    call(f"{base}/v2/models/margin/infer", json.dumps(body).encode())
    stats = json.loads(call(f"{base}/v2/models/margin/stats")[2])["model_stats"][0]
    assert stats["name"] == "margin" and int(stats["inference_count"]) >= 3
    every = json.loads(call(f"{base}/v2/models/stats")[2])["model_stats"]
    assert "margin" in {m["name"] for m in every}
    assert call(f"{base}/v2/models/nope/config")[0] == 404


def test_a_draining_server_is_live_but_not_ready_over_rest() -> None:
    app = build_server(ServeConfig(port=0, metrics_port=-1, device="cpu", compile="off", http_port=0)).start()
    try:
        base = f"http://127.0.0.1:{app.http_port}"
        assert call(f"{base}/v2/health/ready")[0] == 200
        app.scorer.drain(0.1)  # SIGTERM's first step: no stream is open, so it returns at once
        assert call(f"{base}/v2/health/live")[0] == 200
        status, _, data = call(f"{base}/v2/health/ready")
        assert status == 503 and json.loads(data) == {"ready": False}
    finally:
        app.stop()
