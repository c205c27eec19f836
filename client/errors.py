"""Typed client errors: every grpc.RpcError becomes one of these in one function."""
from __future__ import annotations

import grpc


class PoolscoreError(Exception):
    """A call to a poolscore server failed; `code` is the gRPC status, the message the server's."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class BadBatch(PoolscoreError, ValueError):
    """INVALID_ARGUMENT: a tensor, option or strategy the server refused (the message names it)."""


class NotFound(PoolscoreError, KeyError):
    """NOT_FOUND: the session does not exist (expired, deleted, or never created)."""

    def __str__(self) -> str:
        return self.args[0]


class SequenceGap(PoolscoreError):
    """FAILED_PRECONDITION: a batch skipped a sequence number."""


class OverLimit(PoolscoreError):
    """RESOURCE_EXHAUSTED: over a server limit (sessions, k, message size, memory)."""


class SessionExists(PoolscoreError):
    """ALREADY_EXISTS: the session id is taken by a session with another strategy, k or model."""


class Unauthenticated(PoolscoreError):
    """UNAUTHENTICATED: no valid token."""


class Unavailable(PoolscoreError, ConnectionError):
    """UNAVAILABLE or DEADLINE_EXCEEDED: the server could not be reached in time."""


_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: BadBatch, grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: SequenceGap, grpc.StatusCode.ALREADY_EXISTS: SessionExists,
    grpc.StatusCode.RESOURCE_EXHAUSTED: OverLimit,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated, grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Unavailable,
}


def from_rpc_error(err: grpc.RpcError) -> PoolscoreError:
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    return _BY_CODE.get(code, PoolscoreError)(code, details or code.name)
