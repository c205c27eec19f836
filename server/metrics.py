"""Prometheus metrics on a registry passed in (never the global one), moved once per batch."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.items = Counter("poolscore_items_scored_total", "Items (rows) scored.",
                             ["strategy", "device"], registry=registry)
        self.bytes = Counter("poolscore_bytes_scored_total", "Tensor bytes received and scored.",
                             ["strategy", "device"], registry=registry)
        self.batch_seconds = Histogram("poolscore_batch_duration_seconds",
                                       "Time to decode, score and merge one batch.",
                                       ["rpc"], buckets=_LATENCY, registry=registry)
        self.kernel_seconds = Histogram("poolscore_kernel_duration_seconds",
                                        "Time in the scoring kernel for one batch.",
                                        ["strategy"], buckets=_LATENCY, registry=registry)
        self.sessions = Gauge("poolscore_sessions_active", "Scoring sessions held.", registry=registry)
        self.errors = Counter("poolscore_errors_total", "RPCs that ended in an error, by gRPC code.",
                              ["code"], registry=registry)
        self.compiled = Gauge("poolscore_compiled_kernels", "Kernels compiled and serving.", registry=registry)
        self.auth_failures = Counter("poolscore_auth_failures", "Calls refused UNAUTHENTICATED, by reason "
                                     "(bad_token, rate_limited: the peer failed too often).", ["reason"], registry=registry)
        self.checkpoint_seconds = Histogram("poolscore_checkpoint_duration_seconds",
                                            "Time to write one session's checkpoint (--state-dir), fsyncs included.",
                                            buckets=_LATENCY, registry=registry)
        self.checkpoint_bytes = Counter("poolscore_checkpoint_bytes", "Bytes of session checkpoints written.",
                                        registry=registry)

    def checkpointed(self, nbytes: int, seconds: float) -> None:
        self.checkpoint_seconds.observe(seconds)
        self.checkpoint_bytes.inc(nbytes)

    def scored(self, strategy: str, device: str, rows: int, nbytes: int) -> None:
        self.items.labels(strategy, device).inc(rows)
        self.bytes.labels(strategy, device).inc(nbytes)
