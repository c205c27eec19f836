"""Who is calling: bearer tokens (and, with mTLS, client certificates) → principals, for every
RPC but health and reflection (probes and tools stay open).

With tokens configured, a call must carry `authorization: Bearer <token>` metadata (or, with
`--cert-principals`, a client certificate), else it ends UNAUTHENTICATED before its handler
runs and before any batch is read. Tokens are compared in constant time. A peer (an address,
its port aside) that fails `burst` times is refused for a while, valid token or not, so tokens
cannot be guessed at speed: it gets one more try per second. /metrics is a separate HTTP port
and stays open to scrapers.
"""
from __future__ import annotations

import hmac
import threading
import time
from pathlib import Path
from typing import Callable

import grpc

OPEN = ("/grpc.health.v1.Health/", "/grpc.reflection.")
CERT = "cert:"  # a certificate principal's prefix: never the same as a tokens-file principal


class Principals:
    """Bearer tokens → principals: `--tokens-file` (a line `principal token` each, `#` comments;
    re-read by `reload`, on SIGHUP), and `--token` as the one anonymous principal "". With
    `certs`, a call with no token but a client certificate is `cert:<subject CN>`. Every session
    belongs to the principal that created it."""

    def __init__(self, token: str = "", tokens_file: str = "", certs: bool = False) -> None:
        self._token, self._file, self.certs = token, tokens_file, certs
        self._by_token: dict[bytes, str] = {}
        self.reload()

    @property
    def required(self) -> bool:
        return bool(self._by_token)

    def reload(self) -> None:
        """Read the tokens file again (a bad line is named, and the old map stays)."""
        by_token = {self._token.encode(): ""} if self._token else {}
        if self._file:
            for number, line in enumerate(Path(self._file).read_text().splitlines(), start=1):
                line = line.split("#", 1)[0].strip()
                if not line:
                    continue
                principal, _, token = line.partition(" ")
                if not principal or not token.strip() or principal.startswith(CERT):
                    raise ValueError(f"{self._file}:{number}: want 'principal token' (a principal not starting {CERT!r})")
                by_token[token.strip().encode()] = principal
        self._by_token = by_token

    def of_call(self, context: grpc.ServicerContext) -> str | None:
        """The caller's principal: its token's, else (with certs) its certificate's; None if neither."""
        if not self._by_token:  # no tokens: the certificate, or the one anonymous principal
            return self._certificate(context) if self.certs else ""
        metadata = context.invocation_metadata()
        found = self.of(metadata)
        sent = any(key == "authorization" for key, _ in metadata or ())
        return self._certificate(context) if found is None and not sent else found  # a wrong token is wrong

    def of(self, metadata) -> str | None:
        """The principal of `authorization: Bearer <token>` metadata; None if no valid token was
        sent ("" when no tokens are configured). Every token is compared in constant time."""
        if not self._by_token:
            return None if self.certs else ""
        found = None
        for key, value in metadata or ():
            if key != "authorization" or not isinstance(value, str):  # gRPC lower-cases keys; -bin ones are bytes
                continue
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() != "bearer":
                continue
            for known, principal in self._by_token.items():
                if hmac.compare_digest(token.strip().encode(), known):
                    found = principal
        return found

    def _certificate(self, context: grpc.ServicerContext) -> str | None:
        if not self.certs:
            return None
        names = context.auth_context().get("x509_common_name") or []
        return f"{CERT}{names[0].decode(errors='replace')}" if names else None


class PeerLimiter:
    """Failed authentications per peer: a bucket of `burst`, one back per second."""

    def __init__(self, burst: int = 20, per_s: float = 1.0, most_peers: int = 100_000) -> None:
        self.burst, self.per_s, self.most_peers = burst, per_s, most_peers
        self._buckets: dict[str, tuple[float, float]] = {}  # peer → (tokens left, when counted)
        self._lock = threading.Lock()  # guards _buckets; held for a few dict operations only

    def wait_s(self, peer: str) -> float:
        """0 if the peer may try; else how long until it may."""
        with self._lock:
            left = self._left(peer, time.monotonic())
        return 0.0 if left >= 1 else (1 - left) / self.per_s

    def failed(self, peer: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._buckets) >= self.most_peers:  # forget the peers whose buckets have refilled
                self._buckets = {p: b for p, b in self._buckets.items() if self._left(p, now) < self.burst}
            self._buckets[peer] = (max(0.0, self._left(peer, now) - 1), now)

    def _left(self, peer: str, now: float) -> float:
        left, since = self._buckets.get(peer, (self.burst, now))
        return min(self.burst, left + (now - since) * self.per_s)


class TokenAuth(grpc.ServerInterceptor):
    """Every guarded call is checked when it starts, where its peer is known."""

    def __init__(self, principals: Principals, limiter: PeerLimiter | None = None,
                 on_denied: Callable[[str], None] = lambda reason: None) -> None:
        self._principals, self._limiter = principals, limiter or PeerLimiter()
        self._on_denied = on_denied  # counts it: reason "bad_token" or "rate_limited"

    def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = continuation(details)
        if handler is None or details.method.startswith(OPEN):
            return handler
        return _guarded(handler, details.method, self._check)

    def _check(self, context: grpc.ServicerContext, method: str) -> None:
        if not self._principals.required:  # no tokens (yet: a SIGHUP may bring some), so nothing to check
            return
        peer = host_of(context.peer())
        wait = self._limiter.wait_s(peer)
        if wait > 0:
            self._on_denied("rate_limited")
            context.abort(grpc.StatusCode.UNAUTHENTICATED, f"{method}: too many failed authentications from {peer}; "
                                                           f"retry in {wait:.1f} s")
        if self._principals.of_call(context) is None:
            self._limiter.failed(peer)
            self._on_denied("bad_token")
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          f"{method}: no valid token; send metadata 'authorization: Bearer <token>'")


def host_of(peer: str) -> str:
    """`ipv4:10.0.0.7:51234` → `ipv4:10.0.0.7`: a peer's address, whatever port it called from."""
    return peer.rsplit(":", 1)[0] if peer.count(":") >= 2 else peer


def _guarded(handler: grpc.RpcMethodHandler, method: str, check) -> grpc.RpcMethodHandler:
    """`handler`, checked first: a handler of the same kind, with the same (de)serializers."""
    streams_out = handler.response_streaming
    inner = next(b for b in (handler.unary_unary, handler.unary_stream, handler.stream_unary, handler.stream_stream) if b)

    if streams_out:
        def behavior(request, context):
            check(context, method)
            yield from inner(request, context)
    else:
        def behavior(request, context):
            check(context, method)
            return inner(request, context)

    kinds = {(False, False): grpc.unary_unary_rpc_method_handler, (True, False): grpc.stream_unary_rpc_method_handler,
             (False, True): grpc.unary_stream_rpc_method_handler, (True, True): grpc.stream_stream_rpc_method_handler}
    make = kinds[(handler.request_streaming, streams_out)]
    return make(behavior, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
