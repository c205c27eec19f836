"""Bearer-token auth for every RPC but health and reflection (probes and tools stay open).

With `--token` set, a call must carry `authorization: Bearer <token>` metadata, else it
ends UNAUTHENTICATED before its handler runs (and before any batch is read). The token is
compared in constant time. /metrics is a separate HTTP port and stays open to scrapers.
"""
from __future__ import annotations

import hmac

import grpc

OPEN = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class TokenAuth(grpc.ServerInterceptor):
    def __init__(self, token: str, on_denied=lambda: None) -> None:
        self._want = token.encode()
        self._on_denied = on_denied  # e.g. count it in poolscore_errors_total

    def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = continuation(details)
        if handler is None or details.method.startswith(OPEN) or self._valid(details.invocation_metadata):
            return handler
        self._on_denied()
        return _denied(handler, details.method)

    def _valid(self, metadata) -> bool:
        """Any `authorization` entry of the form `Bearer <token>` (the scheme in any case)."""
        for key, value in metadata or ():
            if key != "authorization" or not isinstance(value, str):  # gRPC lower-cases keys; -bin ones are bytes
                continue
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self._want):
                return True
        return False


def _denied(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that only aborts."""
    message = f"{method}: no valid token; send metadata 'authorization: Bearer <token>'"

    def deny(request, context):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    kinds = {(False, False): grpc.unary_unary_rpc_method_handler, (True, False): grpc.stream_unary_rpc_method_handler,
             (False, True): grpc.unary_stream_rpc_method_handler, (True, True): grpc.stream_stream_rpc_method_handler}
    make = kinds[(handler.request_streaming, handler.response_streaming)]
    return make(deny, request_deserializer=None, response_serializer=handler.response_serializer)
