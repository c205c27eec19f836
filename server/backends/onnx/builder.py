"""An ONNX graph under construction, and softmax.py's statistics as graph nodes.

numpy and onnx only (no torch). Every op returns its output's name; constants are shared.

Layout: rows innermost. A graph transposes its input once to [C, N] (or [C, T, N]), so that
every reduction is over an outer axis, a vertical op over the rows. onnxruntime reduces an
innermost axis with an association that depends on where a row starts in memory, so copies
of one row scored 1 ulp apart by position (and broke the top-K's id order among ties); over
an outer axis each row is summed in the same order wherever it sits. Its Log, too, computes
the last (size mod 4) elements of a buffer another way: `log` pads the buffer first.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

MIN_OPSET = 13  # ReduceSum/Squeeze take axes as an input from 13 on
CLASS, SAMPLE = 0, 1  # the axes of [C, N] and [C, T, N]; rows are always the last axis
_LOG_BLOCK = 64  # Log's vector body covers multiples of this on every x86 vector width


class Graph:
    """Nodes and constants of one graph under construction; every op returns its output's name."""

    def __init__(self, opset: int, rank: int, temperature: float = 1.0) -> None:
        self.opset, self.rank, self.nodes, self.inits, self._consts, self._n = opset, rank, [], [], {}, 0
        self.inv_t = None if temperature == 1.0 else self.c(1.0 / temperature)  # · 1 is exact: skipped

    def tempered(self, d: str) -> str:
        """d / T for a difference of logits (z - max z), as softmax.py tempers it."""
        return d if self.inv_t is None else self.op("Mul", d, self.inv_t)

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

    def squeeze(self, x: str, axis: int = CLASS) -> str:
        return self.op("Squeeze", x, self.c([axis], np.int64))

    def finite(self, x: str) -> str:
        return self.op("Less", self.op("Abs", x), self.c(np.inf))  # NaN < inf is false

    def where(self, cond: str, a: str, b: str) -> str:
        return self.op("Where", cond, a, b)

    def clamp0(self, x: str) -> str:
        """clamp_min(x, 0), NaN kept (as torch)."""
        return self.where(self.op("Less", x, self.c(0.0)), self.c(0.0), x)

    def log(self, x: str) -> str:
        """Log of every element computed alike: the buffer padded (with 1) to a whole vector block."""
        shape = self.op("Shape", x)
        flat = self.op("Reshape", x, self.c([-1], np.int64))
        size = self.op("Shape", flat)
        block = self.c([_LOG_BLOCK], np.int64)
        pad = self.op("Mod", self.op("Sub", block, self.op("Mod", size, block)), block)
        padded = self.op("Pad", flat, self.op("Concat", self.c([0], np.int64), pad, axis=0), self.c(1.0))
        logs = self.op("Slice", self.op("Log", padded), self.c([0], np.int64), size)
        return self.op("Reshape", logs, shape)

    def log1p(self, x: str) -> str:
        """Kahan: log(u)·x/(u-1) with u = 1 + x, exact to a few ulp for every x ≥ 0; x where u == 1."""
        u = self.op("Add", self.c(1.0), x)
        den = self.op("Sub", u, self.c(1.0))
        slow = self.op("Div", self.op("Mul", self.log(u), x), den)
        return self.where(self.op("Equal", den, self.c(0.0)), x, slow)

    def xlogx_entropy(self, p: str) -> str:
        """-Σ xlogy(p, p) over the class axis (0·log 0 = 0)."""
        plogp = self.where(self.op("Equal", p, self.c(0.0)), self.c(0.0), self.op("Mul", p, self.log(p)))
        return self.op("Neg", self.reduce("ReduceSum", plogp, CLASS))

    def dim(self, x: str, axis: int, to: int = TensorProto.FLOAT) -> str:
        """x.shape[axis] as a 0-d tensor of type `to`."""
        return self.op("Cast", self.op("Gather", self.op("Shape", x), self.c(axis, np.int64), axis=0), to=to)

    def rows_inner(self, x: str, rank: int) -> str:
        """[N, C] → [C, N]; [N, T, C] → [C, T, N]."""
        return self.op("Transpose", x, perm=list(range(rank))[::-1])


class Softmax:
    """softmax.py's statistics of z [C, ...]: m, d, e, rest, s = 1 + rest (class axis kept, [1, ...]),
    and the row guard [N]."""

    def __init__(self, g: Graph, z: str, kind: str) -> None:
        zero = g.c(0.0)
        self.m = row_max(g, z)
        self.d = g.tempered(g.op("Sub", z, self.m))
        self.e = g.op("Exp", self.d)
        below = g.reduce("ReduceSum", g.where(g.op("Less", self.d, zero), self.e, zero), CLASS, keepdims=True)
        total = g.reduce("ReduceSum", self.e, CLASS, keepdims=True)
        self.ties = g.op("Greater", g.op("Sub", total, below), g.c(1.5))  # two maxima or more
        self.rest = g.where(self.ties, g.op("Sub", total, g.c(1.0)), below)
        self.s = g.op("Add", g.c(1.0), self.rest)
        self.guard = row_guard(g, z, self.m, kind)
        self.g = g

    def p(self) -> str:
        return self.g.op("Div", self.e, self.s)

    def entropy(self) -> str:
        """log1p(rest) - Σ e·d / s over the class axis, 0·log 0 = 0; [N] or [T, N]."""
        g = self.g
        plogp = g.where(g.op("Greater", self.e, g.c(0.0)), g.op("Mul", self.e, self.d), g.c(0.0))
        return g.op("Sub", g.log1p(g.squeeze(self.rest)), g.op("Div", g.reduce("ReduceSum", plogp, CLASS), g.squeeze(self.s)))


def row_max(g: Graph, z: str) -> str:
    """max z over classes, kept dims; a NaN anywhere gives +inf (onnxruntime's ReduceMax may skip NaN)."""
    return g.reduce("ReduceMax", g.where(g.op("IsNaN", z), g.c(np.inf), z), CLASS, keepdims=True)


def row_guard(g: Graph, z: str, m: str, kind: str) -> str:
    """0 for a valid row, NaN where the max (and for logits the min) is not finite; [N]."""
    ok = g.finite(m)
    if kind == "logits":  # -inf is no logit; it is p = 0 in the other kinds
        ok = g.op("And", ok, g.finite(g.reduce("ReduceMin", z, CLASS, keepdims=True)))
    guard = g.squeeze(g.where(ok, g.c(0.0), g.c(np.nan)))
    return g.reduce("ReduceSum", guard, 0) if g.rank == 3 else guard  # [T, N] → [N]: one bad sample spoils the item
