"""build_server(config): wiring only — scorer, sessions, metrics, servicers, ports."""
from __future__ import annotations

import logging
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, start_http_server

from poolscore.server import wire
from poolscore.server.allocator import keep_freed_memory
from poolscore.server.auth import TokenAuth
from poolscore.server.config import ServeConfig
from poolscore.server.metrics import Metrics
from poolscore.server.oip_servicer import SERVICE as OIP_SERVICE, InferenceServicer
from poolscore.server.scoring import STRATEGIES
from poolscore.server.servicer import PoolScorer, version as servicer_version
from poolscore.server.sessions import SessionStore
from poolscore.v1 import inference_pb2 as oip, scoring_pb2 as pb

log = logging.getLogger(__name__)
SERVICE = pb.DESCRIPTOR.services_by_name["PoolScorer"].full_name


@dataclass
class App:
    server: grpc.Server
    port: int
    metrics_port: int | None  # None: /metrics is off
    backend: object  # TorchBackend or OnnxBackend
    health: health.HealthServicer
    models: object  # models.ModelRepository
    _metrics_http: object | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "App":
        self.server.start()
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        self.health.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
        return self

    def stop(self, grace: float | None = None) -> None:
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
        self.backend.close()


def build_server(config: ServeConfig) -> App:
    """A ready-to-start server bound to config.host:config.port (0: a free port)."""
    keep_freed_memory(4 * config.max_message_bytes)  # a few batches' buffers, reused, not re-faulted
    metrics = Metrics(CollectorRegistry())
    backend = _backend(config, metrics)
    _warm(backend, config.warm)
    options = [("grpc.max_receive_message_length", config.max_message_bytes),
               ("grpc.max_send_message_length", config.max_message_bytes)]
    denied = lambda: metrics.errors.labels(code=grpc.StatusCode.UNAUTHENTICATED.name).inc()  # noqa: E731
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="poolscore-rpc"),
                         options=options, interceptors=[TokenAuth(config.token, denied)] if config.token else [])
    models = backend.models(Path(config.model_repo) if config.model_repo else None)
    servicer = PoolScorer(config, backend, SessionStore(config.max_sessions, config.session_ttl_s), metrics, models)
    server.add_generic_rpc_handlers((_handlers(servicer), _oip_handlers(
        InferenceServicer(backend, models, metrics, servicer_version()))))
    checker = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    reflection.enable_server_reflection(
        [SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server)
    port = server.add_insecure_port(f"{config.host}:{config.port}")
    if port == 0:
        raise OSError(f"could not bind {config.host}:{config.port}")
    http, metrics_port = _serve_metrics(config, metrics)
    return App(server, port, metrics_port, backend, checker, models, http)


def _handlers(s: PoolScorer) -> grpc.GenericRpcHandler:
    """The generated table, but tensor-carrying requests are read by wire.py (zero-copy)."""
    out = lambda m: m.SerializeToString()  # noqa: E731
    return grpc.method_handlers_generic_handler(SERVICE, {
        "ScorePool": grpc.stream_unary_rpc_method_handler(s.ScorePool, wire.score_request, out),
        "Score": grpc.stream_stream_rpc_method_handler(s.Score, wire.score_request, out),
        "ScoreBatch": grpc.unary_unary_rpc_method_handler(s.ScoreBatch, wire.score_batch_request, out),
        "CreateSession": grpc.unary_unary_rpc_method_handler(s.CreateSession, pb.CreateSessionRequest.FromString, out),
        "GetSession": grpc.unary_unary_rpc_method_handler(s.GetSession, pb.SessionRef.FromString, out),
        "GetTopK": grpc.unary_unary_rpc_method_handler(s.GetTopK, pb.SessionRef.FromString, out),
        "DeleteSession": grpc.unary_unary_rpc_method_handler(s.DeleteSession, pb.SessionRef.FromString, out),
        "ServerInfo": grpc.unary_unary_rpc_method_handler(s.ServerInfo, pb.ServerInfoRequest.FromString, out),
        "ReloadModels": grpc.unary_unary_rpc_method_handler(s.ReloadModels, pb.ReloadModelsRequest.FromString, out),
    })


def _oip_handlers(s: InferenceServicer) -> grpc.GenericRpcHandler:
    out = lambda m: m.SerializeToString()  # noqa: E731
    calls = {"ServerLive": oip.ServerLiveRequest, "ServerReady": oip.ServerReadyRequest,
             "ModelReady": oip.ModelReadyRequest, "ServerMetadata": oip.ServerMetadataRequest,
             "ModelMetadata": oip.ModelMetadataRequest, "ModelInfer": oip.ModelInferRequest}
    return grpc.method_handlers_generic_handler(OIP_SERVICE, {
        name: grpc.unary_unary_rpc_method_handler(getattr(s, name), req.FromString, out) for name, req in calls.items()})


def _backend(config: ServeConfig, metrics: Metrics):
    """The scoring backend; each is imported only when chosen (onnx: torch is never loaded)."""
    if config.backend == "onnx":
        from poolscore.server.onnx_backend import OnnxBackend
        return OnnxBackend(config.device, threads=config.threads)
    if config.backend == "torch":
        from poolscore.server.torch_backend import TorchBackend
        return TorchBackend(config.device, config.compile, on_compiled=metrics.compiled.set, threads=config.threads)
    raise ValueError(f"--backend must be torch or onnx, got {config.backend!r}")


def _warm(backend, names: str) -> None:
    chosen = list(STRATEGIES) if names == "all" else [n for n in names.split(",") if n]
    unknown = [n for n in chosen if n not in STRATEGIES]
    if unknown:
        raise ValueError(f"--warm: unknown strategies {unknown}")
    backend.warm(chosen)


def _serve_metrics(config: ServeConfig, metrics: Metrics) -> tuple[object | None, int | None]:
    if config.metrics_port < 0:
        return None, None
    http, _thread = start_http_server(config.metrics_port, addr=config.host, registry=metrics.registry)
    return http, http.server_port
