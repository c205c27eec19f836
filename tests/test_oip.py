"""tritonclient itself calls poolscore's Open Inference Protocol facade."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

import modelzoo
from poolscore.client import Client
from poolscore.server.app import build_server
from poolscore.server.config import ServeConfig
from poolscore.server.backends.torch.scorer import Scorer
from poolscore.server.strategies import ScoreOptions

X = modelzoo.digits()[:200]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("oip_models")
    nets = modelzoo.make_repo(root)
    app = build_server(ServeConfig(port=0, metrics_port=-1, device="cpu", compile="off", model_repo=str(root))).start()
    with Client(app.target) as c:
        c.wait_ready()
    yield app.target, nets
    app.stop()


def infer(target: str, model: str, inputs: dict[str, np.ndarray], **kw) -> triton.InferResult:
    client = triton.InferenceServerClient(url=target)
    tensors = []
    for name, array in inputs.items():
        t = triton.InferInput(name, list(array.shape), {np.float32: "FP32", np.float64: "FP64"}[array.dtype.type])
        t.set_data_from_numpy(array)
        tensors.append(t)
    return client.infer(model, tensors, **kw)


def test_health_and_metadata(served) -> None:
    client = triton.InferenceServerClient(url=served[0])
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("digits_onnx") and client.is_model_ready("entropy")
    assert not client.is_model_ready("nope")
    meta = client.get_model_metadata("digits_onnx")
    assert meta.inputs[0].name == "x" and list(meta.inputs[0].shape) == [-1, 64]
    assert [o.name for o in meta.outputs] == ["logits", "embedding", "scores"]
    assert client.get_server_metadata().name == "poolscore"


def test_a_hosted_model_through_tritonclient(served) -> None:
    target, nets = served
    result = infer(target, "digits_onnx", {"x": X})
    with torch.no_grad():
        logits = nets["digits"](torch.from_numpy(X))[0]
    np.testing.assert_allclose(result.as_numpy("logits"), logits.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result.as_numpy("scores"), Scorer("cpu", compile="off").score("entropy", logits).numpy(), rtol=1e-5, atol=1e-6)


def test_a_scorer_through_tritonclient_with_options_and_chosen_output(served, rng: np.random.Generator) -> None:
    logits = rng.normal(size=(64, 7)).astype(np.float32)
    result = infer(served[0], "entropy", {"logits": logits}, parameters={"base": 2.0},
                   outputs=[triton.InferRequestedOutput("scores")])
    want = Scorer("cpu", compile="off").score("entropy", torch.from_numpy(logits), options=ScoreOptions(base=2.0))
    np.testing.assert_allclose(result.as_numpy("scores"), want.numpy(), rtol=1e-6)


def test_errors_reach_tritonclient_with_their_status(served) -> None:
    bad = np.full((3, 4), np.nan, np.float32)
    with pytest.raises(InferenceServerException, match=r"logits: NaN in row 0"):
        infer(served[0], "margin", {"logits": bad})
    with pytest.raises(InferenceServerException, match=r"no model or scorer named 'nope'"):
        infer(served[0], "nope", {"logits": bad})


def test_a_misspelled_parameter_or_input_name_is_refused_by_name(served) -> None:
    target, _ = served
    z = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    with pytest.raises(InferenceServerException, match="parameters.tempreature: unknown"):
        infer(target, "entropy", {"logits": z}, parameters={"tempreature": 2.0})
    with pytest.raises(InferenceServerException, match="inputs.logit: scorer entropy takes inputs named logits"):
        infer(target, "entropy", {"logit": z})
    assert infer(target, "entropy", {"logits": z}, parameters={"temperature": 2.0}).as_numpy("scores").shape == (5,)


def test_model_config_repository_index_and_statistics_through_tritonclient(served) -> None:
    target, _ = served
    client = triton.InferenceServerClient(url=target)
    config = client.get_model_config("digits_onnx").config
    assert config.name == "digits_onnx" and config.max_batch_size == 500
    assert [(i.name, list(i.dims)) for i in config.input] == [("x", [64])]  # Triton's dims: no batch axis
    assert {o.name for o in config.output} == {"logits", "embedding", "scores"}
    assert client.get_model_config("entropy").config.input[0].name == "logits"
    index = {m.name: m for m in client.get_model_repository_index().models}
    assert index["digits_onnx"].state == "READY" and index["entropy"].state == "READY"
    assert index["broken"].state == "UNAVAILABLE" and "float31" in index["broken"].reason
    assert "broken" not in {m.name for m in client.get_model_repository_index(as_json=False).models if m.state == "READY"}
    before = client.get_inference_statistics("digits_onnx").model_stats[0].inference_count
    infer(target, "digits_onnx", {"x": X[:30]})
    with pytest.raises(InferenceServerException):
        infer(target, "digits_onnx", {"x": X[:3, :10]})  # a wrong width: a failure, counted
    stats = client.get_inference_statistics("digits_onnx").model_stats[0]
    assert stats.inference_count == before + 30 and stats.inference_stats.fail.count >= 1
    assert stats.inference_stats.success.ns > 0 and stats.last_inference > 0
    with pytest.raises(InferenceServerException, match="nope"):
        client.get_model_config("nope")
