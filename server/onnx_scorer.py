"""The `--backend onnx` path: scorer graphs run by onnxruntime, and fusing one onto a model.

No torch import here or in onnx_graphs (numpy, onnx and onnxruntime only). The onnx backend
computes in float32 whatever the input's float dtype (torch keeps float64 in float64), and it
reports a bad row the way the torch kernels do: a NaN score in that row, for the caller to name.
"""
from __future__ import annotations

import math
import threading
from typing import Any, Mapping

import numpy as np
import onnx
import onnx.compose
import onnx.version_converter
import onnxruntime as ort
from onnx import TensorProto, helper

from poolscore.server.onnx_graphs import GRAPHS, INPUT_KINDS, STRATEGIES, scorer_graph

__all__ = ["GRAPHS", "INPUT_KINDS", "STRATEGIES", "OnnxScorer", "default_providers", "first_bad_row",
           "fuse", "scorer_graph"]


def _opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def fuse(model: onnx.ModelProto, scorer: onnx.ModelProto, logits_output: str | None = None, *,
         embedding_output: str | None = None, prefix: str = "scorer/") -> onnx.ModelProto:
    """`model` with `scorer` appended to its logits output (default: its first output).

    The model's other outputs stay (an embedding too, when the scorer also reads it:
    `embedding_output`, default the output named "embedding"), and "scores" is added. The
    scorer's names get `prefix`; it is converted to the model's opset if that differs, and a
    Cast is put before it when the model's logits are not float32.
    """
    outputs = {o.name: o for o in model.graph.output}
    wanted = {i.name for i in scorer.graph.input}
    logits_output = logits_output or model.graph.output[0].name
    if "logits" not in wanted:
        raise ValueError("the scorer reads no logits (random scores ids): nothing to fuse")
    if logits_output not in outputs:
        raise ValueError(f"logits_output: the model has no output {logits_output!r} (it has {list(outputs)})")
    if "scores" in outputs:
        raise ValueError("the model already has an output named 'scores'")
    io_map = [(logits_output, "logits")]
    if "embedding" in wanted:
        embedding_output = embedding_output or "embedding"
        if embedding_output not in outputs:
            raise ValueError(f"embedding_output: the model has no output {embedding_output!r} (it has {list(outputs)})")
        io_map.append((embedding_output, "embedding"))
    sc = onnx.ModelProto()
    sc.CopyFrom(scorer)
    if _opset(sc) != _opset(model):
        sc = onnx.version_converter.convert_version(sc, _opset(model))
    sc.ir_version = model.ir_version
    for out_name, in_name in io_map:
        _match_input(sc.graph, in_name, outputs[out_name])
    sc = onnx.compose.add_prefix(sc, prefix)
    for node in sc.graph.node:  # the result keeps its plain name
        node.output[:] = ["scores" if o == prefix + "scores" else o for o in node.output]
    sc.graph.output[0].name = "scores"
    kept = [o.name for o in model.graph.output if o.name != logits_output] + ["scores"]
    fused = onnx.compose.merge_models(model, sc, io_map=[(o, prefix + i) for o, i in io_map], outputs=kept)
    onnx.checker.check_model(fused)
    return fused


def _match_input(graph: onnx.GraphProto, name: str, source: onnx.ValueInfoProto) -> None:
    """Check the model's output fits scorer input `name`; cast it to float32 when it is not."""
    entry = next(i for i in graph.input if i.name == name)
    have, want = source.type.tensor_type, entry.type.tensor_type
    if have.HasField("shape") and len(have.shape.dim) != len(want.shape.dim):
        raise ValueError(f"{source.name} has rank {len(have.shape.dim)}; the scorer's {name} needs {len(want.shape.dim)}")
    if name == "logits" and have.HasField("shape") and have.shape.dim[-1].HasField("dim_value") \
            and want.shape.dim[-1].HasField("dim_value") and have.shape.dim[-1].dim_value != want.shape.dim[-1].dim_value:
        raise ValueError(f"{source.name} has {have.shape.dim[-1].dim_value} classes; "
                         f"the scorer was built for {want.shape.dim[-1].dim_value}")
    if have.elem_type not in (TensorProto.FLOAT, TensorProto.UNDEFINED):
        cast = f"{name}_float32"
        for node in graph.node:
            node.input[:] = [cast if i == name else i for i in node.input]
        graph.node.insert(0, helper.make_node("Cast", [name], [cast], to=TensorProto.FLOAT))
        want.elem_type = have.elem_type


def default_providers() -> list[str]:
    """CUDA first when this onnxruntime has it, then the CPU."""
    cuda = ["CUDAExecutionProvider"] if "CUDAExecutionProvider" in ort.get_available_providers() else []
    return cuda + ["CPUExecutionProvider"]


def first_bad_row(scores: np.ndarray) -> int | None:
    """The first row whose score is not finite (NaN marks a NaN/Inf input row), or None."""
    bad = np.flatnonzero(~np.isfinite(scores))
    return int(bad[0]) if bad.size else None


def _options(options: Mapping[str, Any] | Any | None) -> tuple[str, float, float, bool, int]:
    """A dict, or an object with these attributes (ScoreOptions) → (kind, temperature, base, normalized, seed).

    Missing entries take the defaults; a base or temperature of 0 means the default, as in spec.py.
    """
    options = {} if options is None else options
    get = options.get if isinstance(options, Mapping) else (lambda k, d=None: getattr(options, k, d))
    kind = get("input_kind", "logits")
    return (getattr(kind, "value", kind), float(get("temperature", None) or 1.0), float(get("base", None) or math.e),
            bool(get("normalized", False)), int(get("seed", 0)))


class OnnxScorer:
    """Scores batches with onnxruntime: one cached session per (strategy, options, rank, classes)."""

    def __init__(self, providers: list[str] | None = None, *, opset: int = 17,
                 intra_op_threads: int | None = None) -> None:
        self.providers = providers or default_providers()
        self.opset = opset
        self._session_options = ort.SessionOptions()
        if intra_op_threads:
            self._session_options.intra_op_num_threads = intra_op_threads
        self._sessions: dict[tuple, ort.InferenceSession] = {}
        self._lock = threading.Lock()

    def session(self, strategy: str, *, classes: int | None = None,
                options: Mapping[str, Any] | Any | None = None) -> ort.InferenceSession:
        """The cached session of this strategy's graph; options that do not apply stay out of the key."""
        kind, temperature, base, normalized, _ = _options(options)
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy: unknown {strategy!r}; known: {', '.join(sorted(STRATEGIES))}")
        spec = GRAPHS.get(strategy)
        if spec is None:  # random: ids and seed are inputs, no options apply
            kind, temperature, base, normalized, classes = "logits", 1.0, math.e, False, None
        elif not spec.entropic or normalized:
            base, normalized = math.e, normalized and spec.entropic
        key = (strategy, kind, temperature, base, normalized, spec.rank if spec else 1, classes)
        with self._lock:
            found = self._sessions.get(key)
            if found is None:
                graph = scorer_graph(strategy, classes=classes, input_kind=kind, temperature=temperature,
                                     base=base, normalized=normalized, opset=self.opset)
                found = ort.InferenceSession(graph.SerializeToString(), sess_options=self._session_options,
                                             providers=self.providers)
                self._sessions[key] = found
            return found

    def score(self, strategy: str, x: np.ndarray, *, embedding: np.ndarray | None = None,
              options: Mapping[str, Any] | Any | None = None) -> np.ndarray:
        """Scores [N]: float32, NaN in rows of invalid input. For `random`, x is the int64 ids
        and the scores are float64 (as the torch backend). float16/float64 input is scored in float32."""
        if strategy == "random":
            ids = np.ascontiguousarray(x, dtype=np.int64).reshape(-1)
            seed = np.array(_options(options)[4], np.int64)
            return self.session("random").run(["scores"], {"ids": ids, "seed": seed})[0]
        spec = GRAPHS.get(strategy)
        x = np.ascontiguousarray(x, dtype=np.float32)
        if spec is not None and x.ndim != spec.rank:
            raise ValueError(f"{strategy} needs a rank-{spec.rank} input, got shape {list(x.shape)}")
        if any(n == 0 for n in x.shape[1:]):
            raise ValueError(f"empty axis in shape {list(x.shape)}")
        session = self.session(strategy, classes=x.shape[-1], options=options)
        if x.shape[0] == 0:
            return np.empty(0, np.float32)
        feeds = {"logits": x}
        if spec.embedding:
            if embedding is None or np.ndim(embedding) != 2 or len(embedding) != len(x):
                raise ValueError(f"{strategy} needs an embedding [{len(x)}, D]")
            feeds["embedding"] = np.ascontiguousarray(embedding, dtype=np.float32)
        return session.run(["scores"], feeds)[0]

    @property
    def cached(self) -> int:
        """How many sessions are cached."""
        return len(self._sessions)

    def close(self) -> None:
        with self._lock:
            self._sessions.clear()
