"""The scoring kernels as hand-built ONNX graphs: logits in, scores out (no torch: numpy and onnx only).

The same math as the torch kernels in poolscore.server.scoring, op for op, in float32:
`d = z - max z`, `e = exp d`, `rest` = Σ e without the max's exact 1 (ties: Σe - 1), and the
row guard that turns a NaN/Inf row into a NaN score. Every strategy of the registry has a graph.

Precision notes: ONNX has no Log1p, so log1p(rest) uses Kahan's form `u = 1 + x; x if u == 1
else log(u) · x / (u - 1)`, good to a few ulp (a plain Log(1 + rest) is 0 below 6e-8: entropy of
logits [30, 0, 0] would come out 1/31 = 3.2 % low). onnxruntime's ReduceMax may skip a NaN (it
does past the first element), so the max is taken of z with NaN as +inf: a NaN row fails the
guard. expected_gradient_length departs from gradient.py for the max class only (see there).
`random` needs uint64 BitwiseXor, so its graph is opset ≥ 18 whatever `opset` says.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INPUT_KINDS = ("logits", "probabilities", "log_probabilities")
MIN_OPSET = 13  # ReduceSum/Squeeze take axes as an input from 13 on


class _G:
    """Nodes and constants of one graph under construction; every op returns its output's name."""

    def __init__(self, opset: int, rank: int) -> None:
        self.opset, self.rank, self.nodes, self.inits, self._consts, self._n = opset, rank, [], [], {}, 0

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attrs) -> str | list[str]:
        names = []
        for _ in range(outputs):
            self._n += 1
            names.append(f"{op_type.lower()}_{self._n}")
        self.nodes.append(helper.make_node(op_type, list(inputs), names, **attrs))
        return names[0] if outputs == 1 else names

    def c(self, value, dtype=np.float32) -> str:
        """A constant (deduplicated), float32 unless told."""
        arr = np.asarray(value, dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            self._consts[key] = name = f"const_{len(self._consts)}"
            self.inits.append(numpy_helper.from_array(arr, name))
        return self._consts[key]

    def reduce(self, op_type: str, x: str, axis: int, keepdims: bool = False) -> str:
        if op_type == "ReduceSum" or self.opset >= 18:  # axes became an input (ReduceSum: in 13)
            return self.op(op_type, x, self.c([axis], np.int64), keepdims=int(keepdims))
        return self.op(op_type, x, axes=[axis], keepdims=int(keepdims))

    def squeeze(self, x: str, axis: int = -1) -> str:
        return self.op("Squeeze", x, self.c([axis], np.int64))

    def finite(self, x: str) -> str:
        return self.op("Less", self.op("Abs", x), self.c(np.inf))  # NaN < inf is false

    def where(self, cond: str, a: str, b: str) -> str:
        return self.op("Where", cond, a, b)

    def clamp0(self, x: str) -> str:
        """clamp_min(x, 0), NaN kept (as torch)."""
        return self.where(self.op("Less", x, self.c(0.0)), self.c(0.0), x)

    def log1p(self, x: str) -> str:
        """Kahan: log(u)·x/(u-1) with u = 1 + x, exact to a few ulp for every x ≥ 0; x where u == 1."""
        u = self.op("Add", self.c(1.0), x)
        den = self.op("Sub", u, self.c(1.0))
        slow = self.op("Div", self.op("Mul", self.op("Log", u), x), den)
        return self.where(self.op("Equal", den, self.c(0.0)), x, slow)

    def xlogx_entropy(self, p: str) -> str:
        """-Σ xlogy(p, p) over the last axis (0·log 0 = 0)."""
        plogp = self.where(self.op("Equal", p, self.c(0.0)), self.c(0.0), self.op("Mul", p, self.op("Log", p)))
        return self.op("Neg", self.reduce("ReduceSum", plogp, -1))

    def dim(self, x: str, axis: int, to: int = TensorProto.FLOAT) -> str:
        """x.shape[axis] as a 0-d tensor of type `to`."""
        return self.op("Cast", self.op("Gather", self.op("Shape", x), self.c(axis, np.int64), axis=0), to=to)


class _Softmax:
    """softmax.py's statistics: m, d, e, rest, s = 1 + rest (kept dims, [..., 1]) and the row guard."""

    def __init__(self, g: _G, z: str, kind: str) -> None:
        zero = g.c(0.0)
        self.m = _row_max(g, z)
        self.d = g.op("Sub", z, self.m)
        self.e = g.op("Exp", self.d)
        below = g.reduce("ReduceSum", g.where(g.op("Less", self.d, zero), self.e, zero), -1, keepdims=True)
        total = g.reduce("ReduceSum", self.e, -1, keepdims=True)
        self.ties = g.op("Greater", g.op("Sub", total, below), g.c(1.5))  # two maxima or more
        self.rest = g.where(self.ties, g.op("Sub", total, g.c(1.0)), below)
        self.s = g.op("Add", g.c(1.0), self.rest)
        self.guard = _guard(g, z, self.m, kind)
        self.g = g

    def p(self) -> str:
        return self.g.op("Div", self.e, self.s)

    def entropy(self) -> str:
        """log1p(rest) - Σ e·d / s over the last axis, 0·log 0 = 0."""
        g = self.g
        plogp = g.where(g.op("Greater", self.e, g.c(0.0)), g.op("Mul", self.e, self.d), g.c(0.0))
        return g.op("Sub", g.log1p(g.squeeze(self.rest)), g.op("Div", g.reduce("ReduceSum", plogp, -1), g.squeeze(self.s)))


def _row_max(g: _G, z: str) -> str:
    """max z over classes, kept dims; a NaN anywhere gives +inf (onnxruntime's ReduceMax may skip NaN)."""
    return g.reduce("ReduceMax", g.where(g.op("IsNaN", z), g.c(np.inf), z), -1, keepdims=True)


def _guard(g: _G, z: str, m: str, kind: str) -> str:
    """row_guard: 0 for a valid row, NaN where the max (and for logits the min) is not finite; [N]."""
    ok = g.finite(m)
    if kind == "logits":  # -inf is no logit; it is p = 0 in the other kinds
        ok = g.op("And", ok, g.finite(g.reduce("ReduceMin", z, -1, keepdims=True)))
    guard = g.squeeze(g.where(ok, g.c(0.0), g.c(np.nan)))
    return g.reduce("ReduceSum", guard, 1) if g.rank == 3 else guard  # one bad sample spoils the item


def _top2(g: _G, z: str) -> tuple[str, str]:
    values, _ = g.op("TopK", z, g.c([2], np.int64), outputs=2, axis=-1, largest=1, sorted=1)
    return tuple(g.op("Gather", values, g.c(i, np.int64), axis=-1) for i in (0, 1))


def _least_confidence(g: _G, z: str, kind: str, emb: str | None) -> str:
    sm = _Softmax(g, z, kind)
    return g.op("Add", g.op("Div", g.squeeze(sm.rest), g.squeeze(sm.s)), sm.guard)


def _margin(g: _G, z: str, kind: str, emb: str | None) -> str:
    z1, z2 = _top2(g, z)
    runner_up = g.op("Exp", g.op("Sub", z2, z1))
    sm = _Softmax(g, z, kind)
    return g.op("Add", g.op("Div", g.op("Add", g.squeeze(sm.rest), runner_up), g.squeeze(sm.s)), sm.guard)


def _ratio(g: _G, z: str, kind: str, emb: str | None) -> str:
    z1, z2 = _top2(g, z)
    return g.op("Add", g.op("Exp", g.op("Sub", z2, z1)), _guard(g, z, _row_max(g, z), kind))


def _entropy(g: _G, z: str, kind: str, emb: str | None) -> str:
    sm = _Softmax(g, z, kind)
    return g.op("Add", sm.entropy(), sm.guard)


def _votes(g: _G, z: str) -> str:
    """[N, T, C] → [N, C] counts of each class as a sample's argmax (ties: the lower class)."""
    arg = g.op("ArgMax", z, axis=-1, keepdims=0, select_last_index=0)
    depth = g.op("Gather", g.op("Shape", z), g.c(-1, np.int64), axis=0)
    return g.reduce("ReduceSum", g.op("OneHot", arg, depth, g.c([0.0, 1.0]), axis=-1), 1)


def _variation_ratios(g: _G, z: str, kind: str, emb: str | None) -> str:
    modal = g.reduce("ReduceMax", _votes(g, z), -1)
    score = g.op("Sub", g.c(1.0), g.op("Div", modal, g.dim(z, 1)))
    return g.op("Add", score, _guard(g, z, _row_max(g, z), kind))


def _predictive_entropy(g: _G, z: str, kind: str, emb: str | None) -> str:
    sm = _Softmax(g, z, kind)
    return g.op("Add", g.xlogx_entropy(g.reduce("ReduceMean", sm.p(), 1)), sm.guard)


def _bald(g: _G, z: str, kind: str, emb: str | None) -> str:
    sm = _Softmax(g, z, kind)
    mi = g.op("Sub", g.xlogx_entropy(g.reduce("ReduceMean", sm.p(), 1)), g.reduce("ReduceMean", sm.entropy(), 1))
    return g.op("Add", g.clamp0(mi), sm.guard)


def _vote_entropy(g: _G, z: str, kind: str, emb: str | None) -> str:
    share = g.op("Div", _votes(g, z), g.dim(z, 1))
    return g.op("Add", g.xlogx_entropy(share), _guard(g, z, _row_max(g, z), kind))


def _kl_to_mean(g: _G, z: str, kind: str) -> tuple[str, str]:
    """KL(p_m ‖ p̄) per member [N, M] (0 where p_m,c = 0), and the row guard."""
    sm = _Softmax(g, z, kind)
    p = sm.p()
    log_p = g.op("Sub", sm.d, g.op("Log", sm.s))
    log_mean = g.op("Log", g.reduce("ReduceMean", p, 1, keepdims=True))
    terms = g.where(g.op("Greater", p, g.c(0.0)), g.op("Mul", p, g.op("Sub", log_p, log_mean)), g.c(0.0))
    return g.reduce("ReduceSum", terms, -1), sm.guard


def _kl_disagreement(g: _G, z: str, kind: str, emb: str | None) -> str:
    kl, guard = _kl_to_mean(g, z, kind)
    return g.op("Add", g.clamp0(g.reduce("ReduceMean", kl, 1)), guard)


def _kl_max_disagreement(g: _G, z: str, kind: str, emb: str | None) -> str:
    kl, guard = _kl_to_mean(g, z, kind)
    return g.op("Add", g.clamp0(g.reduce("ReduceMax", kl, 1)), guard)


def _expected_gradient_length(g: _G, z: str, kind: str, emb: str | None) -> str:
    """‖h‖ · Σ_c p_c ‖p - e_c‖; NaN/Inf in h gives NaN.

    gradient.py's ‖p - e_c‖² = Σp² - 2p_c + 1 is kept for every class but a unique max, where it
    is well conditioned (p_c < 1/2). For the max it cancels (torch loses up to half the score on
    a confident row), so there ‖p - e_c‖ = rest·√(1 + Σ_{j≠c} (e_j/rest)²) / s: sums of small parts.
    """
    sm = _Softmax(g, z, kind)
    p = sm.p()
    sq = g.reduce("ReduceSum", g.op("Mul", p, p), -1, keepdims=True)
    far = g.op("Sqrt", g.clamp0(g.op("Add", g.op("Sub", sq, g.op("Mul", g.c(2.0), p)), g.c(1.0))))
    small = g.op("And", g.op("Less", sm.d, g.c(0.0)), g.op("Greater", sm.e, g.c(0.0)))  # so rest > 0
    q = g.where(small, g.op("Div", sm.e, sm.rest), g.c(0.0))
    q2 = g.reduce("ReduceSum", g.op("Mul", q, q), -1, keepdims=True)
    near = g.op("Div", g.op("Mul", sm.rest, g.op("Sqrt", g.op("Add", g.c(1.0), q2))), sm.s)
    dist = g.where(g.op("Or", g.op("Less", sm.d, g.c(0.0)), sm.ties), far, near)
    emb_ok = g.where(g.finite(g.reduce("ReduceSum", emb, -1)), g.c(0.0), g.c(np.nan))
    score = g.op("Mul", g.reduce("ReduceL2", emb, -1), g.reduce("ReduceSum", g.op("Mul", p, dist), -1))
    return g.op("Add", g.op("Add", score, sm.guard), emb_ok)


@dataclass(frozen=True)
class GraphSpec:
    build: Callable[[_G, str, str, "str | None"], str]
    rank: int  # 2: [N, C]; 3: [N, T, C] or [N, M, C]
    entropic: bool = False  # base and normalized apply
    sample_axis: str = "T"
    embedding: bool = False
    min_classes: int = 1


GRAPHS: dict[str, GraphSpec] = {
    "least_confidence": GraphSpec(_least_confidence, 2),
    "margin": GraphSpec(_margin, 2, min_classes=2),
    "ratio": GraphSpec(_ratio, 2, min_classes=2),
    "entropy": GraphSpec(_entropy, 2, entropic=True),
    "variation_ratios": GraphSpec(_variation_ratios, 3),
    "predictive_entropy": GraphSpec(_predictive_entropy, 3, entropic=True),
    "bald": GraphSpec(_bald, 3, entropic=True),
    "vote_entropy": GraphSpec(_vote_entropy, 3, entropic=True, sample_axis="M"),
    "kl_disagreement": GraphSpec(_kl_disagreement, 3, entropic=True, sample_axis="M"),
    "kl_max_disagreement": GraphSpec(_kl_max_disagreement, 3, entropic=True, sample_axis="M"),
    "expected_gradient_length": GraphSpec(_expected_gradient_length, 2, embedding=True),
}
STRATEGIES = (*GRAPHS, "random")  # every strategy of the registry: ONNX expresses all of them


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
    spec = GRAPHS[strategy]
    g = _G(opset, spec.rank)
    dims = ["N"] + ([samples or spec.sample_axis] if spec.rank == 3 else []) + [classes or "C"]
    inputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, dims)]
    emb = None
    if spec.embedding:
        emb = "embedding"
        inputs.append(helper.make_tensor_value_info(emb, TensorProto.FLOAT, ["N", "D"]))
    z = g.op("Log", "logits") if input_kind == "probabilities" else "logits"
    if temperature != 1.0:  # z · float32(1/T), as logits_of; · 1 is exact, so skipped
        z = g.op("Mul", z, g.c(1.0 / temperature))
    score = spec.build(g, z, input_kind, emb)
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
    need = GRAPHS[strategy].min_classes if strategy in GRAPHS else 1
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
    g = _G(opset, 1)
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
