"""The Open Inference Protocol facade: hosted models and scorers for tritonclient & co.

OIP models served:
- each hosted model, by its name: input as configured; outputs `logits`, `embedding`
  (when it has one) and `scores` (its default strategy);
- each pointwise strategy, by its name (`entropy`, `bald`, ...): input `logits` (and
  `embedding` or `ids` where the strategy takes them), output `scores` [N]; request
  parameters carry the options (input_kind, temperature, base, normalized, seed).
A hosted model shadows a strategy of the same name. Requests go through the same pipeline
as PoolScorer's batches: one decoding, one validation, the same metrics.
"""
from __future__ import annotations

import math
import time

import grpc
import numpy as np

from poolscore.server.backends.base import Backend
from poolscore.server.errors import BadInput, ModelNotFound
from poolscore.server.ingest.dtypes import BY_WIRE, wire_of
from poolscore.server.ingest.tensors import Batch, RawTensor, checked
from poolscore.server.metrics import Metrics
from poolscore.server.models.feed import feed_for
from poolscore.server.models.hosted import Committee
from poolscore.server.models.repository import ModelRepository
from poolscore.server.pipeline import Pipeline, Scored
from poolscore.server.strategies import STRATEGIES, Spec, Strategy, options_from, parse_spec
from poolscore.server.strategies.options import NAMES as OPTION_NAMES
from poolscore.server.transport import oip_extensions as ext
from poolscore.server.transport.statuses import maps_errors
from poolscore.v1.oip import inference_pb2 as oip

SERVICE = "inference.GRPCInferenceService"  # the protocol's service path (see inference.proto)
_TYPED = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT64": "int64_contents", "INT32": "int_contents"}
_SCORER_INPUTS = ("logits", "embedding", "ids")


class InferenceServicer:
    def __init__(self, backend: Backend, models: ModelRepository, pipeline: Pipeline, metrics: Metrics,
                 version: str) -> None:
        self.backend, self.models, self.pipeline, self.metrics, self.version = backend, models, pipeline, metrics, version
        self.statistics = ext.Statistics()

    @maps_errors
    def ModelConfig(self, req: oip.ModelConfigRequest, context: grpc.ServicerContext) -> oip.ModelConfigResponse:
        return self.config(req.name)

    def config(self, name: str) -> oip.ModelConfigResponse:
        """A model's or scorer's config (NOT_FOUND for neither): the gRPC and the REST answer."""
        return ext.model_config(name, self.models, _is_scorer)

    @maps_errors
    def RepositoryIndex(self, req: oip.RepositoryIndexRequest, context: grpc.ServicerContext) -> oip.RepositoryIndexResponse:
        return self.index(req.ready)

    def index(self, ready_only: bool) -> oip.RepositoryIndexResponse:
        return ext.repository_index(self.models, [n for n in STRATEGIES if _is_scorer(n)], ready_only)

    @maps_errors
    def ModelStatistics(self, req: oip.ModelStatisticsRequest, context: grpc.ServicerContext) -> oip.ModelStatisticsResponse:
        return self.stats(req.name)

    def stats(self, name: str) -> oip.ModelStatisticsResponse:
        """One model's statistics, or ("") every model inferred with so far."""
        if name and not self.ready(name):
            raise ModelNotFound(name)
        return self.statistics.reply([name] if name else self.statistics.used())

    @maps_errors
    def ServerLive(self, req: oip.ServerLiveRequest, context: grpc.ServicerContext) -> oip.ServerLiveResponse:
        return oip.ServerLiveResponse(live=True)

    @maps_errors
    def ServerReady(self, req: oip.ServerReadyRequest, context: grpc.ServicerContext) -> oip.ServerReadyResponse:
        return oip.ServerReadyResponse(ready=True)

    @maps_errors
    def ModelReady(self, req: oip.ModelReadyRequest, context: grpc.ServicerContext) -> oip.ModelReadyResponse:
        return oip.ModelReadyResponse(ready=self.ready(req.name))

    @maps_errors
    def ServerMetadata(self, req: oip.ServerMetadataRequest, context: grpc.ServicerContext) -> oip.ServerMetadataResponse:
        return oip.ServerMetadataResponse(name="poolscore", version=self.version)

    @maps_errors
    def ModelMetadata(self, req: oip.ModelMetadataRequest, context: grpc.ServicerContext) -> oip.ModelMetadataResponse:
        return self.metadata(req.name)

    def ready(self, name: str) -> bool:
        return name in self.models.models or _is_scorer(name)

    def metadata(self, name: str) -> oip.ModelMetadataResponse:
        """A model's or scorer's metadata (NOT_FOUND for neither): the gRPC and the REST answer."""
        req = oip.ModelMetadataRequest(name=name)
        meta = oip.ModelMetadataResponse.TensorMetadata
        if req.name in self.models.models:
            model = self.models.models[req.name]
            c, first = model.config, model.input_config
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
    def ModelInfer(self, req: oip.ModelInferRequest, context: grpc.ServicerContext) -> oip.ModelInferResponse:
        return self.infer(req)

    def infer(self, req: oip.ModelInferRequest) -> oip.ModelInferResponse:
        """One inference, as the gRPC ModelInfer and the REST /infer both ask for it (counted in
        the model's statistics when the model exists)."""
        start = time.perf_counter_ns()
        try:
            reply = self._infer(req)
        except Exception:
            if self.ready(req.model_name):
                self.statistics.record(req.model_name, 0, False, time.perf_counter_ns() - start)
            raise
        rows = reply.outputs[0].shape[0] if reply.outputs and reply.outputs[0].shape else 0
        self.statistics.record(req.model_name, rows, True, time.perf_counter_ns() - start)
        return reply

    def _infer(self, req: oip.ModelInferRequest) -> oip.ModelInferResponse:
        tensors, options = _inputs(req), _parameters(req.parameters)
        if req.model_name in self.models.models:
            outputs = self._hosted(req.model_name, tensors, options)
        else:
            strategy = _scorer(req.model_name)
            for name in tensors:
                if name not in _SCORER_INPUTS:
                    raise BadInput(f"inputs.{name}", f"scorer {strategy.name} takes inputs named "
                                                     f"{', '.join(_SCORER_INPUTS)} ({strategy.shape})")
            spec = Spec(strategy, options_from(options, "parameters"))
            batch = Batch(tensors)
            outputs = {"scores": self.pipeline.score(spec, batch, seq=None).scores}
        wanted = [o.name for o in req.outputs] or list(outputs)
        for name in wanted:
            if name not in outputs:
                raise BadInput(f"outputs.{name}", f"model {req.model_name} has outputs {sorted(outputs)}")
        return _response(req, {n: self.backend.to_numpy(outputs[n]) for n in wanted})

    def _hosted(self, name: str, tensors: dict[str, RawTensor], options: dict) -> dict:
        model = self.models.models[name]
        if len(tensors) != 1:
            raise BadInput("inputs", f"model {name} takes one input, got {sorted(tensors)}")
        if model.config.strategy not in STRATEGIES:
            raise BadInput("model", f"{name}'s default strategy {model.config.strategy!r} is unknown")
        spec = parse_spec(model.config.strategy, options, prefix="parameters")
        feed = feed_for(name, 0, 0, spec, self.models)
        scored: Scored = self.pipeline.score(spec, Batch({"inputs": next(iter(tensors.values()))}), seq=None, feed=feed)
        out = {"logits": scored.logits, "scores": scored.scores}
        if scored.embedding is not None and not isinstance(model, Committee):
            out["embedding"] = scored.embedding
        return out


def _is_scorer(name: str) -> bool:
    """A pointwise strategy answers as a scorer model (a selection needs a session)."""
    return name in STRATEGIES and STRATEGIES[name].pointwise


def _scorer(name: str) -> Strategy:
    if not _is_scorer(name):
        raise ModelNotFound(name)
    return STRATEGIES[name]


def _inputs(req: oip.ModelInferRequest) -> dict[str, RawTensor]:
    """Each input as a RawTensor, checked against its bytes: raw contents as views of the
    request, typed contents as the bytes of the array they make."""
    raw = list(req.raw_input_contents)
    if raw and len(raw) != len(req.inputs):
        raise BadInput("raw_input_contents", f"{len(raw)} buffers for {len(req.inputs)} inputs")
    out = {}
    for i, t in enumerate(req.inputs):
        field = f"inputs.{t.name}"
        if t.datatype not in BY_WIRE:
            raise BadInput(f"{field}.datatype", f"{t.datatype!r} is not one of {', '.join(BY_WIRE)}")
        if raw:
            out[t.name] = RawTensor(t.datatype, tuple(t.shape), memoryview(raw[i]))
        else:
            out[t.name] = _typed(t, field)
        checked(out[t.name], field)  # named as OIP names it, before the pipeline views it
    return out


def _typed(t: oip.ModelInferRequest.InferInputTensor, field: str) -> RawTensor:
    contents = _TYPED.get(t.datatype)
    if contents is None:
        raise BadInput(f"{field}.contents", f"send {t.datatype} as raw_input_contents")
    if any(n < 0 for n in t.shape):
        raise BadInput(f"{field}.shape", f"negative size in {list(t.shape)}")
    values = np.asarray(getattr(t.contents, contents), dtype=BY_WIRE[t.datatype].name)
    if values.size != math.prod(t.shape):
        raise BadInput(f"{field}.contents", f"{values.size} values for shape {list(t.shape)}")
    return RawTensor(t.datatype, tuple(t.shape), memoryview(values).cast("B"))


def _parameters(params) -> dict:
    """The request's parameters by name, as Python values."""
    def value(p):
        return getattr(p, p.WhichOneof("parameter_choice")) if p.WhichOneof("parameter_choice") else None

    given = {k: value(v) for k, v in params.items() if k not in _PROTOCOL_PARAMETERS}
    for name in given:
        if name not in OPTION_NAMES:
            raise BadInput(f"parameters.{name}", f"unknown; the scoring parameters are {', '.join(OPTION_NAMES)}")
    return given


# The protocol's own request parameters (KServe v2, Triton): understood as theirs, not as options
_PROTOCOL_PARAMETERS = ("sequence_id", "sequence_start", "sequence_end", "priority", "timeout", "binary_data_output")


def _response(req: oip.ModelInferRequest, outputs: dict[str, np.ndarray]) -> oip.ModelInferResponse:
    reply = oip.ModelInferResponse(model_name=req.model_name, model_version="1", id=req.id)
    for name, a in outputs.items():
        a = np.ascontiguousarray(a.astype(np.float32) if a.dtype.kind == "f" else a)  # scores and logits as FP32
        reply.outputs.add(name=name, datatype=wire_of(a), shape=list(a.shape))
        reply.raw_output_contents.append(a.tobytes())
    return reply
