"""build_server(config): wiring only — backend, models, pipeline, sessions, servicers, ports."""
from __future__ import annotations

import gc
import logging
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from poolscore.server import backends
from poolscore.server.backends.base import Backend
from poolscore.server.config import ServeConfig
from poolscore.server.metrics import GpuCollector, Metrics
from poolscore.server.models.repository import ModelRepository
from poolscore.server.pipeline import Pipeline
from poolscore.server.runtime.allocator import keep_freed_memory
from poolscore.server.runtime.budget import MemoryBudget
from poolscore.server.sessions.checkpoints import Checkpoints
from poolscore.server.sessions.store import SessionStore
from poolscore.server.strategies import STRATEGIES
from poolscore.server.transport import handlers, messages as msg
from poolscore.server.transport.auth import PeerLimiter, Principals, TokenAuth
from poolscore.server.transport.oip import SERVICE as OIP_SERVICE, InferenceServicer
from poolscore.server.transport.poolscorer import PoolScorer, version
from poolscore.server.transport.rest import Rest, serve as rest_serve

log = logging.getLogger(__name__)
SERVICE = handlers.SERVICE
SERVED = (SERVICE, OIP_SERVICE)  # what health and reflection answer for, beside themselves


@dataclass
class App:
    server: grpc.Server
    port: int
    metrics_port: int | None  # None: /metrics is off
    backend: Backend
    health: health.HealthServicer
    models: ModelRepository
    _metrics_http: WSGIServer | None = None  # the HTTP server prometheus_client started
    principals: Principals | None = None  # re-read on SIGHUP (cli.py)
    scorer: PoolScorer | None = None
    health_server: grpc.Server | None = None  # --health-port: plaintext, grpc.health.v1 only
    health_port: int | None = None
    rest: WSGIServer | None = None  # --http-port: KServe v2 REST
    warming: list = field(default_factory=list)  # --warm's compilations: health says SERVING once they are done
    rehearsal: tuple = ((), ())  # --warm's (strategies, class counts): run once through the batch path before SERVING

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http_port(self) -> int | None:
        return None if self.rest is None else self.rest.server_port

    def start(self) -> "App":
        gc.freeze()  # what start-up made (torch, models, kernels) is never collected: gen-2 passes stay short
        self.server.start()
        if self.health_server is not None:
            self.health_server.start()
        if self.warming or self.rehearsal[0]:  # calls are answered meanwhile (eagerly); probes and wait_ready
            # wait for full speed: compiled kernels, and a rehearsed batch path (the ONNX backend's too)
            self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
            threading.Thread(target=self._serve_when_warm, name="poolscore-warm", daemon=True).start()
        else:
            self._set_health(health_pb2.HealthCheckResponse.SERVING)
        return self

    def _serve_when_warm(self) -> None:
        started = time.monotonic()
        futures.wait(self.warming)
        rehearsed = 0
        try:  # the first pool then meets no first-call costs in the batch path: measured 10 ms of ~50
            rehearsed = self.scorer.rehearse(*self.rehearsal) if self.scorer is not None else 0
        except Exception:  # noqa: BLE001 - a rehearsal is an optimisation: serving goes on without it
            log.exception("rehearsing the batch path failed")
        log.info("%d kernels warm after %.1f s, %d batch paths rehearsed: serving", len(self.warming),
                 time.monotonic() - started, rehearsed)
        self._set_health(health_pb2.HealthCheckResponse.SERVING)  # a drain begun meanwhile keeps NOT_SERVING

    def _set_health(self, status) -> None:
        for service in ("", *SERVED):  # health answers per service, as grpc.health.v1 lets probes ask
            self.health.set(service, status)

    def drain(self, grace_s: float) -> None:
        """SIGTERM: health NOT_SERVING while still answering, new streams UNAVAILABLE, streams in
        flight finish (up to grace_s), then stop."""
        start = time.monotonic()
        self.health.enter_graceful_shutdown()
        done = self.scorer.drain(grace_s) if self.scorer is not None else True
        if not done:
            log.warning("drain: streams still open after %g s; they are cancelled", grace_s)
        self.stop(grace=max(0.0, grace_s - (time.monotonic() - start)))

    def stop(self, grace: float | None = None) -> None:
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        if self.health_server is not None:
            self.health_server.stop(None)
        if self.scorer is not None and self.scorer.sessions.checkpoints is not None:
            self.scorer.sessions.checkpoints.close()  # every committed batch on disk before exit
        if self.scorer is not None:
            self.scorer.regions.close()
        for http in (self._metrics_http, self.rest):
            if http is not None:
                http.shutdown()
        self.backend.close()


def build_server(config: ServeConfig) -> App:
    """A ready-to-start server bound to config.host:config.port (0: a free port)."""
    credentials = _tls(config)  # a bad TLS setting fails before anything starts
    principals = Principals(config.token, config.tokens_file, config.cert_principals)  # and so does a bad tokens file
    warm_classes = _class_counts(config.warm_classes)
    if config.http_port >= 0 and (config.tls_cert or config.cert_principals):
        raise ValueError("--http-port serves REST in plaintext: beside --tls-cert it would carry tokens in the clear, "
                         "and it sees no client certificates; put TLS in front of it, or leave it off")
    if config.cert_principals and not config.tls_client_ca:
        raise ValueError("--cert-principals needs --tls-client-ca: without client certificates there is no subject")
    keep_freed_memory(4 * config.max_message_bytes)  # a few batches' buffers, reused, not re-faulted
    metrics = Metrics(CollectorRegistry())
    backend = backends.load(config.backend, config.device, compile=config.compile, threads=config.threads,
                            on_compiled=metrics.compiled.set)
    warming = _warm(backend, config.warm, warm_classes)
    metrics.build.info({"version": version(), "backend": backend.name, "device": backend.description})
    if backend.device_type == "cuda":
        GpuCollector.register(metrics.registry)
    options = [("grpc.max_receive_message_length", config.max_message_bytes),
               ("grpc.max_send_message_length", config.max_message_bytes),
               ("grpc.keepalive_time_ms", int(config.keepalive_s * 1000)),  # ping idle connections: dead peers let go
               ("grpc.keepalive_timeout_ms", 20_000),
               ("grpc.keepalive_permit_without_calls", 1),
               ("grpc.http2.min_ping_interval_without_data_ms", 5_000)]  # clients may ping every 5 s
    def denied(reason: str) -> None:
        metrics.errors.labels(code=grpc.StatusCode.UNAUTHENTICATED.name).inc()
        metrics.auth_failures.labels(reason).inc()

    limiter = PeerLimiter(config.auth_failures)
    auth = TokenAuth(principals, limiter, denied)  # always: a tokens file filled later (SIGHUP) is enforced at once
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="poolscore-rpc"),
                         options=options, interceptors=[auth])
    models = ModelRepository(Path(config.model_repo) if config.model_repo else None, backend)
    pipeline = Pipeline(backend, metrics)
    checkpoints = _checkpoints(config, metrics)
    budget = MemoryBudget(config.session_memory_mb * 2**20)
    metrics.memory_limit.set(budget.total)
    metrics.memory_reserved.set_function(lambda: budget.total - budget.free)
    sessions = SessionStore(config.max_sessions, config.session_ttl_s, budget, checkpoints)
    scorer = PoolScorer(config, backend, sessions, metrics, models, pipeline, principals)
    if checkpoints is not None:
        sessions.restore(checkpoints.files.load(scorer.revive))  # before the port opens: no call sees a half-loaded store
    inference = InferenceServicer(backend, models, pipeline, metrics, version())
    server.add_generic_rpc_handlers((handlers.poolscorer(scorer), handlers.inference(inference)))
    checker = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    handlers.enable_reflection(server, [*SERVED, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name])
    address = f"{config.host}:{config.port}"
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind {config.host}:{config.port}")
    if config.uds:  # same-host clients skip TCP: the same services, auth and TLS
        Path(config.uds).unlink(missing_ok=True)  # a socket file left by a killed server
        unix = f"unix:{config.uds}"
        if (server.add_secure_port(unix, credentials) if credentials else server.add_insecure_port(unix)) == 0:
            raise OSError(f"could not bind the Unix socket {config.uds} (--uds)")
    http, metrics_port = _serve_metrics(config, metrics)
    health_server, health_port = _health_only(config, checker)
    rest = rest_serve(Rest(inference, principals, config.max_message_bytes, limiter, denied,
                           draining=lambda: scorer.draining), config.host, config.http_port) \
        if config.http_port >= 0 else None
    rehearsal = ([n for n in _warm_names(config.warm) if STRATEGIES[n].pointwise and STRATEGIES[n].rank == 2
                  and not STRATEGIES[n].needs_embedding], warm_classes)
    return App(server, port, metrics_port, backend, checker, models, http, principals, scorer, health_server, health_port,
               rest, warming, rehearsal)


def _health_only(config: ServeConfig, checker: health.HealthServicer) -> tuple[grpc.Server | None, int | None]:
    """--health-port: the same health statuses on a plaintext port that serves nothing else,
    for a kubelet's gRPC probe while the main port is TLS."""
    if config.health_port < 0:
        return None, None
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="poolscore-health"))
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    port = server.add_insecure_port(f"{config.host}:{config.health_port}")
    if port == 0:
        raise OSError(f"could not bind {config.host}:{config.health_port} (--health-port)")
    return server, port


def _checkpoints(config: ServeConfig, metrics: Metrics) -> Checkpoints | None:
    if not config.state_dir:
        return None
    return Checkpoints(Path(config.state_dir), msg.session_header, config.checkpoint_batches, config.checkpoint_s,
                       config.checkpoint_stall_s, on_written=metrics.checkpointed)


def _tls(config: ServeConfig) -> grpc.ServerCredentials | None:
    """TLS from --tls-cert and --tls-key; with --tls-client-ca, client certificates are required."""
    if not (config.tls_cert or config.tls_key or config.tls_client_ca):
        return None
    if not (config.tls_cert and config.tls_key):
        raise ValueError("--tls-cert and --tls-key go together (and --tls-client-ca needs both)")
    read = lambda path: Path(path).read_bytes()  # noqa: E731
    ca = read(config.tls_client_ca) if config.tls_client_ca else None
    return grpc.ssl_server_credentials([(read(config.tls_key), read(config.tls_cert))], root_certificates=ca,
                                       require_client_auth=ca is not None)


def _warm_names(names: str) -> list[str]:
    return list(STRATEGIES) if names == "all" else [n for n in names.split(",") if n]


def _warm(backend: Backend, names: str, classes: tuple[int, ...]) -> list:
    chosen = _warm_names(names)
    unknown = [n for n in chosen if n not in STRATEGIES]
    if unknown:
        raise ValueError(f"--warm: unknown strategies {unknown}")
    return backend.warm([n for n in chosen if STRATEGIES[n].pointwise], classes)  # a selection runs its pre_score's


def _class_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(c) for c in text.split(",") if c.strip())
    except ValueError:
        raise ValueError(f"--warm-classes: {text!r} is not a comma-separated list of class counts") from None
    if any(c < 2 for c in counts):
        raise ValueError(f"--warm-classes: {text!r}: a class count is at least 2")
    return counts


def _serve_metrics(config: ServeConfig, metrics: Metrics) -> tuple[WSGIServer | None, int | None]:
    """/metrics on its own HTTP port; every other path there is 404."""
    if config.metrics_port < 0:
        return None, None
    exposition = make_wsgi_app(metrics.registry)

    def app(environ, start_response):
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"not found: the metrics are at /metrics\n"]
        return exposition(environ, start_response)

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args) -> None:  # a scrape every few seconds is not news
            pass

    http = make_server(config.host, config.metrics_port, app, ThreadingWSGIServer, handler_class=Quiet)
    threading.Thread(target=http.serve_forever, name="poolscore-metrics", daemon=True).start()
    return http, http.server_port
