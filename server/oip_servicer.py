"""The Open Inference Protocol facade: hosted models and scorers for tritonclient & co.

OIP models served:
- each hosted model, by its name: input as configured; outputs `logits`, `embedding`
  (when it has one) and `scores` (its default strategy);
- each pointwise strategy, by its name (`entropy`, `bald`, ...): input `logits` (and
  `embedding` or `ids` where the strategy takes them), output `scores` [N]; request
  parameters carry the options (input_kind, temperature, base, normalized, seed).
A hosted model shadows a strategy of the same name.
"""
from __future__ import annotations

import numpy as np

from poolscore.server.errors import BadInput, ModelNotFound
from poolscore.server.models import Committee, ModelRepository
from poolscore.server.scoring import STRATEGIES, ScoreOptions
from poolscore.server.statuses import maps_errors
from poolscore.server.wire import RawTensor
from poolscore.v1 import inference_pb2 as oip, scoring_pb2 as pb

SERVICE = "inference.GRPCInferenceService"  # the protocol's service path (see inference.proto)
_WIRE = {"FP32": pb.FP32, "FP16": pb.FP16, "BF16": pb.BF16, "FP64": pb.FP64, "INT64": pb.INT64}
_TO_OIP = {"float32": "FP32", "float64": "FP64", "int64": "INT64", "float16": "FP16"}
_TYPED = {"FP32": ("fp32_contents", np.float32), "FP64": ("fp64_contents", np.float64),
          "INT64": ("int64_contents", np.int64)}


class InferenceServicer:
    def __init__(self, backend, models: ModelRepository, metrics, version: str) -> None:
        self.backend, self.models, self.metrics, self.version = backend, models, metrics, version

    @maps_errors
    def ServerLive(self, req, context) -> oip.ServerLiveResponse:
        return oip.ServerLiveResponse(live=True)

    @maps_errors
    def ServerReady(self, req, context) -> oip.ServerReadyResponse:
        return oip.ServerReadyResponse(ready=True)

    @maps_errors
    def ModelReady(self, req: oip.ModelReadyRequest, context) -> oip.ModelReadyResponse:
        return oip.ModelReadyResponse(ready=req.name in self.models.models or req.name in STRATEGIES)

    @maps_errors
    def ServerMetadata(self, req, context) -> oip.ServerMetadataResponse:
        return oip.ServerMetadataResponse(name="poolscore", version=self.version)

    @maps_errors
    def ModelMetadata(self, req: oip.ModelMetadataRequest, context) -> oip.ModelMetadataResponse:
        meta = oip.ModelMetadataResponse.TensorMetadata
        if req.name in self.models.models:
            c = self.models.models[req.name].config
            first = self.models.models[req.name].members[0].config if c.committee else c
            dtype = first.input_dtype.upper().replace("FLOAT", "FP")
            outputs = [meta(name="logits", datatype="FP32", shape=[-1, -1] if not c.committee else [-1, -1, -1]),
                       meta(name="scores", datatype="FP32", shape=[-1])]
            if c.embedding_output:
                outputs.insert(1, meta(name="embedding", datatype="FP32", shape=[-1, -1]))
            return oip.ModelMetadataResponse(name=c.name, versions=["1"], platform=f"poolscore_{c.platform}",
                                             inputs=[meta(name=first.input_name or "input", datatype=dtype,
                                                          shape=list(first.input_shape))], outputs=outputs)
        s = _scorer(req.name)
        inputs = [meta(name="logits", datatype="FP32", shape=[-1] * s.rank)]
        if s.needs_embedding:
            inputs.append(meta(name="embedding", datatype="FP32", shape=[-1, -1]))
        return oip.ModelMetadataResponse(name=s.name, versions=["1"], platform="poolscore_scorer", inputs=inputs,
                                         outputs=[meta(name="scores", datatype="FP32", shape=[-1])])

    @maps_errors
    def ModelInfer(self, req: oip.ModelInferRequest, context) -> oip.ModelInferResponse:
        tensors = {name: self.backend.from_numpy(a) if isinstance(a, np.ndarray) else a
                   for name, a in _inputs(req, self.backend).items()}
        options = _options(req.parameters)
        if req.model_name in self.models.models:
            outputs = self._hosted(req.model_name, tensors, options)
        else:
            s = _scorer(req.model_name)
            x = tensors.get("logits")
            scores = self.backend.score(s, x, embedding=tensors.get("embedding"), ids=tensors.get("ids"), options=options)
            outputs = {"scores": scores}
            self.metrics.scored(s.name, self.backend.device_type, 0 if x is None else x.shape[0], 0)
        wanted = [o.name for o in req.outputs] or list(outputs)
        for name in wanted:
            if name not in outputs:
                raise BadInput(f"outputs.{name}", f"model {req.model_name} has outputs {sorted(outputs)}")
        return _response(req, {n: self.backend.to_numpy(outputs[n]) for n in wanted})

    def _hosted(self, name: str, tensors: dict, options: ScoreOptions) -> dict:
        model = self.models.models[name]
        if len(tensors) != 1:
            raise BadInput("inputs", f"model {name} takes one input, got {sorted(tensors)}")
        logits, emb = model.forward(next(iter(tensors.values())))
        strategy = STRATEGIES.get(model.config.strategy)
        if strategy is None:
            raise BadInput("model", f"{name}'s default strategy {model.config.strategy!r} is unknown")
        out = {"logits": logits, "scores": self.backend.score(strategy, logits, embedding=emb, options=options)}
        if emb is not None and not isinstance(model, Committee):
            out["embedding"] = emb
        return out


def _scorer(name: str):
    s = STRATEGIES.get(name)
    if s is None:
        raise ModelNotFound(name)
    return s


def _inputs(req: oip.ModelInferRequest, backend) -> dict:
    """Raw contents as views of the request's bytes; typed contents as NumPy arrays."""
    raw = list(req.raw_input_contents)
    if raw and len(raw) != len(req.inputs):
        raise BadInput("raw_input_contents", f"{len(raw)} buffers for {len(req.inputs)} inputs")
    out = {}
    for i, t in enumerate(req.inputs):
        if t.datatype not in _WIRE:
            raise BadInput(f"inputs.{t.name}.datatype", f"{t.datatype!r} is not one of {', '.join(_WIRE)}")
        if raw:
            out[t.name] = backend.view(RawTensor(_WIRE[t.datatype], tuple(t.shape), memoryview(raw[i])), f"inputs.{t.name}")
            continue
        field, dtype = _TYPED.get(t.datatype, (None, None))
        if field is None:
            raise BadInput(f"inputs.{t.name}.contents", f"send {t.datatype} as raw_input_contents")
        values = np.asarray(getattr(t.contents, field), dtype=dtype)
        if values.size != int(np.prod(t.shape)):
            raise BadInput(f"inputs.{t.name}.contents", f"{values.size} values for shape {list(t.shape)}")
        out[t.name] = values.reshape(tuple(t.shape))
    return out


def _options(params) -> ScoreOptions:
    def value(p):
        return getattr(p, p.WhichOneof("parameter_choice")) if p.WhichOneof("parameter_choice") else None

    known = {"input_kind", "temperature", "base", "normalized", "seed"}
    given = {k: value(v) for k, v in params.items() if k in known}
    return ScoreOptions(**given)


def _response(req: oip.ModelInferRequest, outputs: dict[str, np.ndarray]) -> oip.ModelInferResponse:
    reply = oip.ModelInferResponse(model_name=req.model_name, model_version="1", id=req.id)
    for name, a in outputs.items():
        a = np.ascontiguousarray(a.astype(np.float32) if a.dtype.kind == "f" else a)  # scores and logits as FP32
        reply.outputs.add(name=name, datatype=_TO_OIP[str(a.dtype)], shape=list(a.shape))
        reply.raw_output_contents.append(a.tobytes())
    return reply
