"""The scoring kernels as hand-built ONNX graphs: logits in, scores out (no torch: numpy and onnx only).

The same math as the torch kernels in backends/torch/, op for op, in float32:
`d = z - max z`, `e = exp d`, `rest` = Σ e without the max's exact 1 (ties: Σe - 1), and the
row guard that turns a NaN/Inf row into a NaN score. Every strategy of the registry has a graph,
keyed by its name; what it takes (rank, embedding, classes, entropic) is the registry's.

Precision notes: ONNX has no Log1p, so log1p(rest) uses Kahan's form `u = 1 + x; x if u == 1
else log(u) · x / (u - 1)`, good to a few ulp (a plain Log(1 + rest) is 0 below 6e-8: entropy of
logits [30, 0, 0] would come out 1/31 = 3.2 % low). onnxruntime's ReduceMax may skip a NaN (it
does past the first element), so the max is taken of z with NaN as +inf: a NaN row fails the
guard. expected_gradient_length departs from gradient.py for the max class only (see there).
`random` needs uint64 BitwiseXor, so its graph is opset ≥ 18 whatever `opset` says.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper

from poolscore.server.backends.onnx.builder import CLASS, MIN_OPSET, SAMPLE, Graph, Softmax, row_guard, row_max
from poolscore.server.strategies import POINTWISE as STRATEGIES, InputKind

INPUT_KINDS = tuple(k.value for k in InputKind)
Build = Callable[[Graph, str, str, "str | None"], str]  # (graph, z, input kind, embedding) → scores


def _top2(g: Graph, z: str) -> tuple[str, str]:
    values, _ = g.op("TopK", z, g.c([2], np.int64), outputs=2, axis=CLASS, largest=1, sorted=1)
    return tuple(g.op("Gather", values, g.c(i, np.int64), axis=CLASS) for i in (0, 1))


def _least_confidence(g: Graph, z: str, kind: str, emb: str | None) -> str:
    sm = Softmax(g, z, kind)
    return g.op("Add", g.op("Div", g.squeeze(sm.rest), g.squeeze(sm.s)), sm.guard)


def _margin(g: Graph, z: str, kind: str, emb: str | None) -> str:
    z1, z2 = _top2(g, z)
    runner_up = g.op("Exp", g.tempered(g.op("Sub", z2, z1)))
    sm = Softmax(g, z, kind)
    return g.op("Add", g.op("Div", g.op("Add", g.squeeze(sm.rest), runner_up), g.squeeze(sm.s)), sm.guard)


def _ratio(g: Graph, z: str, kind: str, emb: str | None) -> str:
    z1, z2 = _top2(g, z)
    return g.op("Add", g.op("Exp", g.tempered(g.op("Sub", z2, z1))), row_guard(g, z, row_max(g, z), kind))


def _entropy(g: Graph, z: str, kind: str, emb: str | None) -> str:
    sm = Softmax(g, z, kind)
    return g.op("Add", sm.entropy(), sm.guard)


def _votes(g: Graph, z: str) -> str:
    """[C, T, N] → [C, N] counts of each class as a sample's argmax (ties: the lower class)."""
    arg = g.op("ArgMax", z, axis=CLASS, keepdims=0, select_last_index=0)  # [T, N]
    depth = g.op("Gather", g.op("Shape", z), g.c(CLASS, np.int64), axis=0)
    return g.reduce("ReduceSum", g.op("OneHot", arg, depth, g.c([0.0, 1.0]), axis=CLASS), SAMPLE)


def _variation_ratios(g: Graph, z: str, kind: str, emb: str | None) -> str:
    modal = g.reduce("ReduceMax", _votes(g, z), CLASS)
    score = g.op("Sub", g.c(1.0), g.op("Div", modal, g.dim(z, SAMPLE)))
    return g.op("Add", score, row_guard(g, z, row_max(g, z), kind))


def _predictive_entropy(g: Graph, z: str, kind: str, emb: str | None) -> str:
    sm = Softmax(g, z, kind)
    return g.op("Add", g.xlogx_entropy(g.reduce("ReduceMean", sm.p(), SAMPLE)), sm.guard)


def _bald(g: Graph, z: str, kind: str, emb: str | None) -> str:
    sm = Softmax(g, z, kind)
    mean_entropy = g.reduce("ReduceMean", sm.entropy(), 0)  # [T, N] → [N]
    mi = g.op("Sub", g.xlogx_entropy(g.reduce("ReduceMean", sm.p(), SAMPLE)), mean_entropy)
    return g.op("Add", g.clamp0(mi), sm.guard)


def _vote_entropy(g: Graph, z: str, kind: str, emb: str | None) -> str:
    """The shares sorted before they are summed: equal vote counts over other classes tie exactly."""
    share = g.op("Div", _votes(g, z), g.dim(z, SAMPLE))
    classes = g.op("Reshape", g.op("Gather", g.op("Shape", z), g.c(CLASS, np.int64), axis=0), g.c([1], np.int64))
    ordered, _ = g.op("TopK", share, classes, outputs=2, axis=CLASS, largest=1, sorted=1)
    return g.op("Add", g.xlogx_entropy(ordered), row_guard(g, z, row_max(g, z), kind))


def _kl_to_mean(g: Graph, z: str, kind: str) -> tuple[str, str]:
    """KL(p_m ‖ p̄) per member [M, N] (0 where p_m,c = 0), and the row guard."""
    sm = Softmax(g, z, kind)
    p = sm.p()
    log_p = g.op("Sub", sm.d, g.log(sm.s))
    log_mean = g.log(g.reduce("ReduceMean", p, SAMPLE, keepdims=True))
    terms = g.where(g.op("Greater", p, g.c(0.0)), g.op("Mul", p, g.op("Sub", log_p, log_mean)), g.c(0.0))
    return g.reduce("ReduceSum", terms, CLASS), sm.guard


def _kl_disagreement(g: Graph, z: str, kind: str, emb: str | None) -> str:
    kl, guard = _kl_to_mean(g, z, kind)
    return g.op("Add", g.clamp0(g.reduce("ReduceMean", kl, 0)), guard)


def _kl_max_disagreement(g: Graph, z: str, kind: str, emb: str | None) -> str:
    kl, guard = _kl_to_mean(g, z, kind)
    return g.op("Add", g.clamp0(g.reduce("ReduceMax", kl, 0)), guard)


def _expected_gradient_length(g: Graph, z: str, kind: str, emb: str | None) -> str:
    """‖h‖ · Σ_c p_c ‖p - e_c‖; NaN/Inf in h gives NaN. `emb` is [D, N], rows inner too.

    gradient.py's ‖p - e_c‖² = Σp² - 2p_c + 1 is kept for every class but a unique max, where it
    is well conditioned (p_c < 1/2). For the max it cancels (torch loses up to half the score on
    a confident row), so there ‖p - e_c‖ = rest·√(1 + Σ_{j≠c} (e_j/rest)²) / s: sums of small parts.
    """
    sm = Softmax(g, z, kind)
    p = sm.p()
    sq = g.reduce("ReduceSum", g.op("Mul", p, p), CLASS, keepdims=True)
    far = g.op("Sqrt", g.clamp0(g.op("Add", g.op("Sub", sq, g.op("Mul", g.c(2.0), p)), g.c(1.0))))
    small = g.op("And", g.op("Less", sm.d, g.c(0.0)), g.op("Greater", sm.e, g.c(0.0)))  # so rest > 0
    q = g.where(small, g.op("Div", sm.e, sm.rest), g.c(0.0))
    q2 = g.reduce("ReduceSum", g.op("Mul", q, q), CLASS, keepdims=True)
    near = g.op("Div", g.op("Mul", sm.rest, g.op("Sqrt", g.op("Add", g.c(1.0), q2))), sm.s)
    dist = g.where(g.op("Or", g.op("Less", sm.d, g.c(0.0)), sm.ties), far, near)
    emb_ok = g.where(g.finite(g.reduce("ReduceSum", emb, 0)), g.c(0.0), g.c(np.nan))
    score = g.op("Mul", g.reduce("ReduceL2", emb, 0), g.reduce("ReduceSum", g.op("Mul", p, dist), CLASS))
    return g.op("Add", g.op("Add", score, sm.guard), emb_ok)


GRAPHS: dict[str, Build] = {  # keyed by the registry; random (ids, not logits) is _random_graph
    "least_confidence": _least_confidence, "margin": _margin, "ratio": _ratio, "entropy": _entropy,
    "variation_ratios": _variation_ratios, "predictive_entropy": _predictive_entropy, "bald": _bald,
    "vote_entropy": _vote_entropy, "kl_disagreement": _kl_disagreement, "kl_max_disagreement": _kl_max_disagreement,
    "expected_gradient_length": _expected_gradient_length,
}


def scorer_graph(strategy: str, *, classes: int | None = None, samples: int | None = None,
                 input_kind: str = "logits", temperature: float = 1.0, base: float = math.e,
                 normalized: bool = False, opset: int = 17) -> onnx.ModelProto:
    """The strategy's kernel as an ONNX model: "logits" float32 [N, C] ([N, T, C] for sample and
    committee strategies; plus "embedding" [N, D] for expected_gradient_length) → "scores" float32 [N].

    `random` instead takes "ids" int64 [N] and "seed" int64 [] and gives float64 scores, as torch.
    """
    input_kind = getattr(input_kind, "value", input_kind)  # an InputKind enum is welcome
    _check(strategy, classes, samples, input_kind, temperature, base, opset)
    if strategy == "random":
        return _random_graph(max(opset, 18))
    spec = STRATEGIES[strategy]
    g = Graph(opset, spec.rank, temperature)
    dims = ["N"] + ([samples or spec.sample_axis] if spec.rank == 3 else []) + [classes or "C"]
    inputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, dims)]
    emb = None
    if spec.needs_embedding:
        emb = "embedding"
        inputs.append(helper.make_tensor_value_info(emb, TensorProto.FLOAT, ["N", "D"]))
    z = g.rows_inner("logits", spec.rank)
    if input_kind == "probabilities":
        z = g.log(z)
    score = GRAPHS[strategy](g, z, input_kind, None if emb is None else g.rows_inner(emb, 2))
    if spec.entropic and normalized:  # ÷ log C; C = 1 scores 0 (NaN kept: NaN · 0)
        if classes is None:
            c = g.dim("logits", -1, TensorProto.DOUBLE)
            log_c = g.op("Cast", g.op("Log", c), to=TensorProto.FLOAT)
            score = g.where(g.op("Greater", c, g.c(1.0, np.float64)), g.op("Div", score, log_c),
                            g.op("Mul", score, g.c(0.0)))
        else:
            score = g.op("Div", score, g.c(math.log(classes))) if classes > 1 else g.op("Mul", score, g.c(0.0))
    elif spec.entropic and base != math.e:
        score = g.op("Div", score, g.c(math.log(base)))
    g.nodes.append(helper.make_node("Identity", [score], ["scores"]))
    output = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N"])
    doc = f"poolscore {strategy}: kind={input_kind} temperature={temperature} base={base} normalized={normalized}"
    return _model(helper.make_graph(g.nodes, f"poolscore_{strategy}", inputs, [output], g.inits, doc_string=doc), opset)


def _check(strategy, classes, samples, input_kind, temperature, base, opset) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: unknown {strategy!r}; known: {', '.join(sorted(STRATEGIES))}")
    if input_kind not in INPUT_KINDS:
        raise ValueError(f"input_kind: {input_kind!r} is not one of {', '.join(INPUT_KINDS)}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature: must be a finite number > 0, got {temperature}")
    if not (math.isfinite(base) and base > 1):
        raise ValueError(f"base: must be a finite number > 1, got {base}")
    if opset < MIN_OPSET:
        raise ValueError(f"opset: the scorer graphs need opset >= {MIN_OPSET}, got {opset}")
    need = STRATEGIES[strategy].min_classes
    if classes is not None and classes < need:
        raise ValueError(f"classes: strategy {strategy} needs at least {need} classes, got {classes}")
    if samples is not None and samples < 1:
        raise ValueError(f"samples: must be >= 1, got {samples}")


def _model(graph: onnx.GraphProto, opset: int) -> onnx.ModelProto:
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="poolscore",
                              ir_version=helper.find_min_ir_version_for(opsets))
    onnx.checker.check_model(model, full_check=True)
    return model


def _random_graph(opset: int) -> onnx.ModelProto:
    """SplitMix64 in uint64 (wrapping Mul, logical BitShift): bit-exact with hashing.py."""
    g = Graph(opset, 1)
    u64 = lambda v: g.c(v, np.uint64)  # noqa: E731

    def splitmix64(v: str) -> str:
        v = g.op("Add", v, u64(0x9E3779B97F4A7C15))
        for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
            v = g.op("Mul", g.op("BitwiseXor", v, g.op("BitShift", v, u64(shift), direction="RIGHT")), u64(mult))
        return g.op("BitwiseXor", v, g.op("BitShift", v, u64(31), direction="RIGHT"))

    key = splitmix64(g.op("Cast", "seed", to=TensorProto.UINT64))  # int64 → uint64 keeps the bits
    h = splitmix64(g.op("BitwiseXor", g.op("Cast", "ids", to=TensorProto.UINT64), key))
    top = g.op("Cast", g.op("BitShift", h, u64(11), direction="RIGHT"), to=TensorProto.DOUBLE)
    g.nodes.append(helper.make_node("Mul", [top, g.c(2.0 ** -53, np.float64)], ["scores"]))
    inputs = [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N"]),
              helper.make_tensor_value_info("seed", TensorProto.INT64, [])]
    output = helper.make_tensor_value_info("scores", TensorProto.DOUBLE, ["N"])
    return _model(helper.make_graph(g.nodes, "poolscore_random", inputs, [output], g.inits), opset)
