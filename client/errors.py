"""Typed client errors: every grpc.RpcError becomes one of these in one function.

grpc is imported where an error is made, not here: `poolscore score` without a server (the
in-process scorer) raises these too, and a 40 ms grpc import was an eighth of its run."""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
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


class DataLoss(PoolscoreError):
    """DATA_LOSS: the session's state on the server is damaged (its state file is torn), or the
    server resumed a session at a batch this client no longer keeps."""


class Unavailable(PoolscoreError, ConnectionError):
    """UNAVAILABLE or DEADLINE_EXCEEDED: the server could not be reached in time."""


_BY_NAME = {
    "INVALID_ARGUMENT": BadBatch, "NOT_FOUND": NotFound, "FAILED_PRECONDITION": SequenceGap,
    "ALREADY_EXISTS": SessionExists, "RESOURCE_EXHAUSTED": OverLimit, "UNAUTHENTICATED": Unauthenticated,
    "UNAVAILABLE": Unavailable, "DEADLINE_EXCEEDED": Unavailable, "DATA_LOSS": DataLoss,
}


def from_rpc_error(err: grpc.RpcError) -> PoolscoreError:
    import grpc

    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    return from_code(code, details or code.name)


def from_code(code: grpc.StatusCode | str, message: str) -> PoolscoreError:
    """The typed error a status (or its name) maps to; the in-process scorer raises these too."""
    if isinstance(code, str):
        import grpc

        code = grpc.StatusCode[code]
    return _BY_NAME.get(code.name, PoolscoreError)(code, message)


class Requests:
    """A request iterator that keeps its own exception: gRPC reports it only as
    "Exception iterating requests!", and the caller deserves the real one."""

    def __init__(self, source: Iterator[bytes]) -> None:
        self._source, self.error = source, None

    def __iter__(self) -> "Requests":
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._source)
        except StopIteration:
            raise
        except BaseException as err:
            self.error = err
            raise


@contextlib.contextmanager
def mapped(requests: Requests | None = None) -> Iterator[None]:
    """Every grpc.RpcError leaves the client as a typed PoolscoreError with the server's message."""
    import grpc

    try:
        yield
    except grpc.RpcError as err:
        if requests is not None and requests.error is not None:
            raise requests.error  # the pool reader failed on this side, not the server
        raise from_rpc_error(err) from None


def overtaken(session_id: str, ack) -> str:
    return (f"session {session_id!r}: batch {ack.acked_seq} was already committed by another writer, so this "
            f"client's batch {ack.acked_seq} and any after it in this call were not scored (the session is at "
            f"batch {ack.seq}, {ack.items} items). Give each session one writer; to keep them, send those batches "
            f"again without resume (the next call starts at the server's next seq)")
