"""The ONNX scorer graphs (the `--backend onnx` path) against the torch kernels, and fusing a graph onto a model."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from poolscore.server.errors import BadInput
from poolscore.server.backends.onnx.fuse import fuse
from poolscore.server.backends.onnx.graphs import GRAPHS, scorer_graph
from poolscore.server.backends.onnx.scorer import OnnxScorer, first_bad_row
from poolscore.server.strategies import POINTWISE, STRATEGIES
from poolscore.server.backends.torch.scorer import Scorer
from poolscore.server.strategies import ScoreOptions
from poolscore.server.backends.torch.hashing import random_scores
from poolscore.server.backends.torch.kernels import KERNELS

RTOL, ATOL = 1e-5, 1e-6
KINDS = ["logits", "probabilities", "log_probabilities"]


@pytest.fixture(scope="module")
def torch_scorer():
    s = Scorer("cpu", compile="off")
    yield s
    s.close()


@pytest.fixture(scope="module")
def onnx_scorer():
    s = OnnxScorer(["CPUExecutionProvider"])
    yield s
    s.close()


def run(model: onnx.ModelProto, **feeds: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def torch_scores(scorer: Scorer, name: str, x: np.ndarray, emb: np.ndarray | None = None, **options) -> np.ndarray:
    e = None if emb is None else torch.from_numpy(emb)
    return scorer.score(name, torch.from_numpy(x), embedding=e, options=ScoreOptions(**options)).double().numpy()


def onnx_scores(scorer: OnnxScorer, name: str, x: np.ndarray, emb: np.ndarray | None = None, **options) -> np.ndarray:
    got = scorer.score(name, x, embedding=emb, options=options)
    assert got.dtype == np.float32 and got.shape == (x.shape[0],)
    return got.astype(np.float64)


def logits(seed: int, name: str, n: int, c: int, scale: float = 3.0, t: int = 5) -> np.ndarray:
    shape = (n, t, c) if STRATEGIES[name].rank == 3 else (n, c)
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32)


def softmax64(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# --- graphs keyed by the registry (scores: test_parity.py) ------------------------------------

def test_every_strategy_of_the_registry_has_a_graph_and_a_kernel_keyed_by_its_name() -> None:
    assert set(GRAPHS) == set(KERNELS) == {n for n, s in POINTWISE.items() if not s.scores_ids}
    for name, s in POINTWISE.items():  # what each graph takes is the registry's
        graph = scorer_graph(name)
        inputs = {i.name: len(i.type.tensor_type.shape.dim) for i in graph.graph.input}
        assert inputs == ({"ids": 1, "seed": 0} if s.scores_ids else
                          {"logits": s.rank} | ({"embedding": 2} if s.needs_embedding else {}))


@pytest.mark.parametrize("name", ["entropy", "bald", "vote_entropy"])
def test_normalization_with_classes_read_at_run_time(torch_scorer, name: str) -> None:
    model = scorer_graph(name, normalized=True)  # classes=None: log C from the Shape
    assert model.graph.input[0].type.tensor_type.shape.dim[-1].dim_param == "C"
    for c in (1, 2, 7, 100):
        x = logits(c, name, 20, c)
        (got,) = run(model, logits=x)
        want = torch_scores(torch_scorer, name, x, normalized=True)
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
        if c == 1:  # one class: torch scores 0 rather than 0 / log 1
            np.testing.assert_array_equal(got, 0.0)


# --- bad rows --------------------------------------------------------------------------------

def _bad_rows(kind: str, rank: int) -> tuple[np.ndarray, list[int]]:
    """Valid input of `kind` but for the rows listed; at rank 3 only sample 1 of a row is bad."""
    p = softmax64(np.random.default_rng(5).normal(size=(10, 4)) * 2)
    if kind != "logits":  # a class of probability 0 (log-probability -inf) is valid
        p[8, 1] = 0.0
        p[8] /= p[8].sum()
    with np.errstate(divide="ignore"):
        clean = {"logits": np.log(p) + 1.0, "probabilities": p, "log_probabilities": np.log(p)}[kind].astype(np.float32)
    every = slice(None)
    bad = {"logits": {1: (2, np.nan), 2: (0, np.nan), 3: (2, np.inf), 5: (1, -np.inf)},  # NaN past column 0:
           "probabilities": {1: (2, np.nan), 3: (2, -0.1), 5: (every, 0.0), 6: (3, np.inf)},  # onnxruntime's
           "log_probabilities": {1: (3, np.nan), 3: (2, np.inf), 5: (every, -np.inf)}}[kind]  # ReduceMax skips it
    x = clean.copy()
    for row, (col, value) in bad.items():
        x[row, col] = value
    return (np.stack([clean, x, clean], axis=1) if rank == 3 else x), sorted(bad)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_bad_rows_give_nan_in_the_same_rows_as_torch(torch_scorer, onnx_scorer, name: str, kind: str) -> None:
    x, rows = _bad_rows(kind, STRATEGIES[name].rank)
    h = None
    if STRATEGIES[name].needs_embedding:
        h = np.ones((10, 4), np.float32)
        h[7, 2], h[9, 0] = np.nan, -np.inf
        rows = sorted(rows + [7, 9])
    got = onnx_scorer.score(name, x, embedding=h, options={"input_kind": kind})
    kernel = KERNELS[name]
    with torch.no_grad():
        raw = kernel(torch.from_numpy(x), None if h is None else torch.from_numpy(h), torch.tensor(1.0, dtype=torch.float64), kind)
    assert np.flatnonzero(np.isnan(got)).tolist() == rows
    np.testing.assert_array_equal(np.isnan(got), np.isnan(raw.numpy()))
    with pytest.raises(BadInput) as err:
        torch_scores(torch_scorer, name, x, h, input_kind=kind)
    assert err.value.row == first_bad_row(got) == rows[0]
    good = [r for r in range(10) if r not in rows]
    if not STRATEGIES[name].needs_embedding:  # (expected_gradient_length: see its own tests)
        np.testing.assert_allclose(got[good], raw.numpy()[good], rtol=RTOL, atol=ATOL)


def test_first_bad_row() -> None:
    assert first_bad_row(np.array([0.5, 1.0], np.float32)) is None
    assert first_bad_row(np.array([0.5, np.nan, np.inf], np.float32)) == 1


# --- dtypes, random, sessions, graphs ----------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float16, np.float64])
@pytest.mark.parametrize("name", ["entropy", "margin", "bald", "kl_disagreement"])
def test_float16_and_float64_inputs_are_scored_in_float32(torch_scorer, onnx_scorer, name: str, dtype) -> None:
    x = logits(11, name, 64, 11).astype(dtype)
    got = onnx_scores(onnx_scorer, name, x)  # asserts float32 out
    np.testing.assert_allclose(got, torch_scores(torch_scorer, name, x), rtol=RTOL, atol=ATOL)


def test_random_is_bit_exact_with_torch(onnx_scorer) -> None:
    ids = np.array([0, 1, 2, -5, 2**62, 123456789, -(2**63), 2**63 - 1], np.int64)
    for seed in (0, 7, -1, 2**63 - 1, -(2**63)):
        got = onnx_scorer.score("random", ids, options={"seed": seed})
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, random_scores(torch.from_numpy(ids), seed).numpy())
    assert not np.array_equal(onnx_scorer.score("random", ids, options={"seed": 1}), onnx_scorer.score("random", ids))


def test_sessions_are_cached_per_strategy_options_and_classes() -> None:
    s = OnnxScorer(["CPUExecutionProvider"])
    x = logits(0, "margin", 4, 6)
    s.score("margin", x, options={})
    s.score("margin", x, options={"base": 2.0, "normalized": True})  # options a margin ignores
    s.score("margin", x[:2], options=ScoreOptions())  # another N, a ScoreOptions
    assert s.cached == 1
    s.score("margin", x, options={"temperature": 2.0})
    s.score("margin", logits(0, "margin", 4, 7))
    s.score("entropy", x, options={"normalized": True, "base": 2.0})
    s.score("entropy", x, options={"normalized": True})  # normalized: the base does not apply
    assert s.cached == 4


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_graph_inputs_and_outputs(name: str) -> None:
    spec = STRATEGIES[name]
    model = scorer_graph(name, classes=10, samples=4 if spec.rank == 3 else None)
    onnx.checker.check_model(model, full_check=True)
    x, out = model.graph.input[0], model.graph.output[0]
    assert x.name == "logits" and x.type.tensor_type.elem_type == TensorProto.FLOAT
    dims = [d.dim_param or d.dim_value for d in x.type.tensor_type.shape.dim]
    assert dims == (["N", 4, 10] if spec.rank == 3 else ["N", 10])
    assert (out.name, out.type.tensor_type.elem_type) == ("scores", TensorProto.FLOAT)
    assert [d.dim_param for d in out.type.tensor_type.shape.dim] == ["N"]
    assert [i.name for i in model.graph.input] == ["logits"] + (["embedding"] if spec.needs_embedding else [])
    assert not any(n.domain for n in model.graph.node)  # standard ops only


@pytest.mark.parametrize("opset", [13, 18, 21])
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_other_opsets_give_the_same_scores(name: str, opset: int) -> None:
    """From opset 18 ReduceMax/Mean/L2 take their axes as an input: the other code path."""
    x = logits(2, name, 33, 6)
    feeds = {"logits": x}
    if STRATEGIES[name].needs_embedding:
        feeds["embedding"] = np.random.default_rng(1).normal(size=(33, 5)).astype(np.float32)
    other = scorer_graph(name, input_kind="log_probabilities", opset=opset)
    assert other.opset_import[0].version == opset
    np.testing.assert_allclose(run(other, **feeds)[0], run(scorer_graph(name, input_kind="log_probabilities"), **feeds)[0],
                               rtol=1e-6, atol=1e-7)


def test_bad_arguments_are_refused(onnx_scorer) -> None:
    for kwargs in (dict(strategy="nope"), dict(input_kind="odds"), dict(temperature=0.0), dict(temperature=math.inf),
                   dict(base=1.0), dict(opset=12), dict(strategy="margin", classes=1), dict(samples=0)):
        with pytest.raises(ValueError):
            scorer_graph(**{"strategy": "entropy", **kwargs})
    with pytest.raises(ValueError, match="rank-3"):
        onnx_scorer.score("bald", np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="embedding"):
        onnx_scorer.score("expected_gradient_length", np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="unknown"):
        onnx_scorer.score("nope", np.zeros((4, 3), np.float32))
    empty = onnx_scorer.score("entropy", np.zeros((0, 3), np.float32))
    assert empty.shape == (0,) and empty.dtype == np.float32


# --- fusing a scorer onto a model ---------------------------------------------------------------

def mlp(opset: int = 18, logits_type: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """x [N, 8] → hidden (output "embedding", [N, 16]) → "logits" [N, 5]."""
    rng = np.random.default_rng(42)
    w = {"w1": rng.normal(size=(8, 16)), "b1": rng.normal(size=16), "w2": rng.normal(size=(16, 5)), "b2": rng.normal(size=5)}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["xw1"]), helper.make_node("Add", ["xw1", "b1"], ["pre"]),
             helper.make_node("Relu", ["pre"], ["embedding"]), helper.make_node("MatMul", ["embedding", "w2"], ["hw2"]),
             helper.make_node("Add", ["hw2", "b2"], ["logits32" if logits_type != TensorProto.FLOAT else "logits"])]
    if logits_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", ["logits32"], ["logits"], to=logits_type))
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
                              [helper.make_tensor_value_info("logits", logits_type, ["batch", 5]),
                               helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 16])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


X = np.random.default_rng(9).normal(size=(31, 8)).astype(np.float32) * 2


@pytest.mark.parametrize("name", ["entropy", "margin", "least_confidence", "expected_gradient_length"])
@pytest.mark.parametrize("opset", [17, 18])
def test_fused_model_scores_as_model_then_scorer(torch_scorer, name: str, opset: int) -> None:
    model = mlp(opset)
    scorer = scorer_graph(name, classes=5, temperature=0.5)  # opset 17: converted for an opset-18 model
    fused = fuse(model, scorer)
    assert [o.name for o in fused.graph.output] == ["embedding", "scores"]
    assert [i.name for i in fused.graph.input] == ["x"] and fused.opset_import[0].version == opset
    embedding, scores = run(fused, x=X)
    logits_, embedding_ = run(model, x=X)
    feeds = {"logits": logits_} | ({"embedding": embedding_} if STRATEGIES[name].needs_embedding else {})
    np.testing.assert_array_equal(embedding, embedding_)
    np.testing.assert_allclose(scores, run(scorer, **feeds)[0], rtol=1e-6, atol=0)
    if not STRATEGIES[name].needs_embedding:
        np.testing.assert_allclose(scores, torch_scores(torch_scorer, name, logits_, temperature=0.5), rtol=RTOL, atol=ATOL)


def test_fusing_float16_logits_casts_them() -> None:
    model = mlp(17, TensorProto.FLOAT16)
    (scores,) = run(fuse(model, scorer_graph("entropy")), x=X)[1:]
    logits16 = run(model, x=X)[0]
    assert logits16.dtype == np.float16
    np.testing.assert_allclose(scores, run(scorer_graph("entropy"), logits=logits16.astype(np.float32))[0], rtol=1e-6)


def test_fuse_refuses_what_does_not_fit() -> None:
    model = mlp(17)
    with pytest.raises(ValueError, match="classes"):
        fuse(model, scorer_graph("entropy", classes=7))
    with pytest.raises(ValueError, match="nothing to fuse"):
        fuse(model, scorer_graph("random"))
    with pytest.raises(ValueError, match="no output"):
        fuse(model, scorer_graph("entropy"), logits_output="missing")
    with pytest.raises(ValueError, match="rank"):
        fuse(model, scorer_graph("bald"))
    fused = fuse(model, scorer_graph("entropy"))
    with pytest.raises(ValueError, match="scores"):
        fuse(fused, scorer_graph("entropy"), logits_output="embedding")


def test_a_fused_model_can_take_its_second_output_as_logits() -> None:
    fused = fuse(mlp(17), scorer_graph("ratio"), logits_output="embedding")
    assert [o.name for o in fused.graph.output] == ["logits", "scores"]
    logits_, scores = run(fused, x=X)
    np.testing.assert_allclose(scores, run(scorer_graph("ratio"), logits=run(mlp(17), x=X)[1])[0], rtol=1e-6)
    assert logits_.shape == (31, 5)


# --- no torch on the onnx path --------------------------------------------------------------------

def test_the_onnx_scorer_imports_no_torch() -> None:
    code = """
import sys
import numpy as np
from poolscore.server.backends.onnx.fuse import fuse
from poolscore.server.backends.onnx.graphs import scorer_graph
from poolscore.server.backends.onnx.scorer import OnnxScorer
scores = OnnxScorer().score("bald", np.zeros((2, 3, 4), np.float32))
assert scores.shape == (2,), scores
assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))
print("torch-free")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "torch-free"
