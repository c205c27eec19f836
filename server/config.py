"""ServeConfig: one field = one `poolscore serve` flag = one POOLSCORE_* variable."""
from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"  # 0.0.0.0 in a container
    port: int = 50051  # 0 asks the OS for a free port (tests do)
    metrics_port: int = 9464  # 0 asks the OS for a free port; -1 turns /metrics off
    device: str = "auto"  # auto = cuda when torch sees one, else cpu
    backend: str = "torch"  # torch (compiled kernels), or onnx (scorer graphs in onnxruntime, no torch)
    compile: str = "background"  # torch.compile the kernels: off, background (serve eagerly meanwhile), sync
    warm: str = "entropy,margin,least_confidence"  # kernels compiled at start ("" for none, "all")
    warm_classes: str = "10,100,1000"  # class counts --warm compiles for: one per bucket serves any C; a C <= 16 named here is also tuned (CPU)
    model_repo: str = ""  # a folder of model folders (see README); "" hosts none
    max_sessions: int = 1024
    max_k: int = 1_000_000
    max_message_bytes: int = 64 * 1024 * 1024
    session_ttl_s: float = 3600.0  # idle sessions are dropped after this long
    state_dir: str = ""  # durable sessions: each session's state is checkpointed here and restored at start
    checkpoint_batches: int = 8  # with --state-dir: a session is written once this many batches are undurable
    checkpoint_s: float = 1.0  # ... or this long after its first undurable batch, whichever comes first
    checkpoint_stall_s: float = 30.0  # a stream 2 × checkpoint_batches ahead of its checkpoint waits this long, then UNAVAILABLE
    session_memory_mb: int = 4096  # every session reserves its state (top-K, keys, candidate set) from this budget
    workers: int = 72  # gRPC handler threads: one per open stream, and the rest for unary calls and health
    max_streams: int = 0  # concurrent Score/ScorePool streams (0: workers − 8, so unary calls and health keep threads)
    read_ahead_mb: int = 1024  # requests received ahead of their scoring, all streams together
    drain_grace_s: float = 30.0  # SIGTERM: calls in flight get this long to finish (match terminationGracePeriodSeconds)
    stream_idle_s: float = 300.0  # a stream that sends nothing for this long is closed (DEADLINE_EXCEEDED)
    keepalive_s: float = 60.0  # HTTP/2 pings on idle connections, so dead peers are noticed
    threads: int = 0  # kernels' intra-op threads (0: half the cores; gRPC's threads need the rest)
    token: str = ""  # bearer token every RPC but health and reflection must carry ("" for none): one anonymous principal
    tokens_file: str = ""  # lines `principal token`: each token a principal owning its sessions (re-read on SIGHUP)
    tls_cert: str = ""  # PEM certificate chain: serve TLS (with --tls-key) instead of plaintext
    tls_key: str = ""  # PEM private key of --tls-cert
    tls_client_ca: str = ""  # PEM CA bundle: require client certificates signed by it (mTLS)
    cert_principals: bool = False  # mTLS: a call with no token is the principal cert:<its certificate's CN>
    shm: bool = True  # same-host clients may send batches through POSIX shared memory (--shm false: bytes only)
    shm_max_mb: int = 4096  # shared-memory regions mapped at once, all principals together
    shm_max_regions: int = 16  # regions one principal may hold
    shm_idle_s: float = 300.0  # a region no request used for this long is unmapped (its client died, or forgot it)
    uds: str = ""  # also listen on this Unix domain socket path (same-host clients: Client("unix:PATH"))
    http_port: int = -1  # KServe v2 REST (health, metadata, infer) on this port, as Triton's 8000; 0: free; -1: off
    health_port: int = -1  # a plaintext port serving only grpc.health.v1 (kubelet probes of a TLS server); 0: free; -1: off
    auth_failures: int = 20  # failed authentications a peer may make at once; then one more per second
    log_level: str = "INFO"


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def add_flags(parser: argparse.ArgumentParser, env: Mapping[str, str] = os.environ) -> None:
    """One flag per field; its default comes from POOLSCORE_<FIELD> when set (flag > env > default)."""
    hints = typing.get_type_hints(ServeConfig)
    for f in dataclasses.fields(ServeConfig):
        parse = _parse_bool if hints[f.name] is bool else hints[f.name]
        var = f"POOLSCORE_{f.name.upper()}"
        try:
            default = parse(env[var]) if var in env else f.default
        except (ValueError, argparse.ArgumentTypeError) as err:
            parser.error(f"{var}={env[var]!r}: {err}")
        flag = {"nargs": "?", "const": True} if hints[f.name] is bool else {}  # `--cert-principals` alone means true
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=parse, default=default,
                            help=f"(env {var}, default {f.default!r})", **flag)


def from_args(args: argparse.Namespace) -> ServeConfig:
    return ServeConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ServeConfig)})
