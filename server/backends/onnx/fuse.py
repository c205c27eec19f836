"""Fusing a scorer graph onto an ONNX model: the model then outputs scores itself.

numpy, onnx only (no torch, no onnxruntime)."""
from __future__ import annotations

import onnx
import onnx.compose
import onnx.version_converter
from onnx import TensorProto, helper


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
