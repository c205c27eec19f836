"""Bearer-token auth for every RPC but health and reflection (probes and tools stay open).

With `--token` set, a call must carry `authorization: Bearer <token>` metadata, else it
ends UNAUTHENTICATED before its handler runs (and before any batch is read). The token is
compared in constant time. /metrics is a separate HTTP port and stays open to scrapers.
"""
from __future__ import annotations

import hmac
from pathlib import Path

import grpc

OPEN = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class Principals:
    """Bearer tokens → principals: `--tokens-file` (a line `principal token` each, `#` comments;
    re-read by `reload`, on SIGHUP), and `--token` as the one anonymous principal "". Every
    session belongs to the principal that created it."""

    def __init__(self, token: str = "", tokens_file: str = "") -> None:
        self._token, self._file = token, tokens_file
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
                if not principal or not token.strip():
                    raise ValueError(f"{self._file}:{number}: want 'principal token'")
                by_token[token.strip().encode()] = principal
        self._by_token = by_token

    def of(self, metadata) -> str | None:
        """The caller's principal from its `authorization: Bearer <token>` metadata; None if no
        valid token was sent (every token compared in constant time)."""
        if not self._by_token:
            return ""
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


class TokenAuth(grpc.ServerInterceptor):
    def __init__(self, principals: Principals, on_denied=lambda: None) -> None:
        self._principals = principals
        self._on_denied = on_denied  # e.g. count it in poolscore_errors_total

    def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = continuation(details)
        if handler is None or details.method.startswith(OPEN) or self._principals.of(details.invocation_metadata) is not None:
            return handler
        self._on_denied()
        return _denied(handler, details.method)


def _denied(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that only aborts."""
    message = f"{method}: no valid token; send metadata 'authorization: Bearer <token>'"

    def deny(request, context):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    kinds = {(False, False): grpc.unary_unary_rpc_method_handler, (True, False): grpc.stream_unary_rpc_method_handler,
             (False, True): grpc.unary_stream_rpc_method_handler, (True, True): grpc.stream_stream_rpc_method_handler}
    make = kinds[(handler.request_streaming, handler.response_streaming)]
    return make(deny, request_deserializer=None, response_serializer=handler.response_serializer)
