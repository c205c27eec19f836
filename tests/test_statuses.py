"""transport/statuses.py: DESIGN.md's error table as code, one status per kind of error."""
from __future__ import annotations

import inspect

import grpc
import pytest

from poolscore.server import errors
from poolscore.server.transport.statuses import STATUS_OF, code_of

WANT = {
    errors.BadInput("logits", "NaN", 3): grpc.StatusCode.INVALID_ARGUMENT,
    errors.BadBatch(17, "logits", "NaN", 3, 68000): grpc.StatusCode.INVALID_ARGUMENT,
    errors.UnknownStrategy("entropi", ["entropy"]): grpc.StatusCode.INVALID_ARGUMENT,
    errors.SessionNotFound("s"): grpc.StatusCode.NOT_FOUND,
    errors.ModelNotFound("m"): grpc.StatusCode.NOT_FOUND,
    errors.SequenceGap("s", 1, 3): grpc.StatusCode.FAILED_PRECONDITION,
    errors.SessionConflict("s", "a", "b"): grpc.StatusCode.ALREADY_EXISTS,
    errors.OverLimit("k: too big"): grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.BadToken("no token"): grpc.StatusCode.UNAUTHENTICATED,
    errors.StreamIdle(300.0): grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.ResendConflict("s", 4): grpc.StatusCode.FAILED_PRECONDITION,
    errors.Draining(): grpc.StatusCode.UNAVAILABLE,
    errors.NotDurable("checkpoints behind"): grpc.StatusCode.UNAVAILABLE,
    errors.SessionElsewhere("s"): grpc.StatusCode.UNAVAILABLE,
    errors.SessionCorrupt("s", "/state/x.session", "checksum mismatch"): grpc.StatusCode.DATA_LOSS,
    errors.SessionUnrestorable("s", "/state/x.session", "no model named 'm'"): grpc.StatusCode.FAILED_PRECONDITION,
    errors.RegionNotFound("shared-memory region 'r'"): grpc.StatusCode.NOT_FOUND,
    errors.NoSharedMemory(): grpc.StatusCode.FAILED_PRECONDITION,
}


@pytest.mark.parametrize("err, code", list(WANT.items()), ids=[type(e).__name__ for e in WANT])
def test_each_error_maps_to_its_status(err: Exception, code: grpc.StatusCode) -> None:
    assert code_of(err) is code


def test_every_error_the_core_raises_has_a_status_and_a_bug_is_internal() -> None:
    kinds = [c for _, c in inspect.getmembers(errors, inspect.isclass)
             if issubclass(c, errors.PoolscoreError) and c is not errors.PoolscoreError]
    assert {type(e) for e in WANT} == set(kinds)
    assert all(any(issubclass(k, mapped) for mapped in STATUS_OF) for k in kinds)
    assert code_of(ZeroDivisionError()) is grpc.StatusCode.INTERNAL and code_of(KeyError("x")) is grpc.StatusCode.INTERNAL


def test_a_batch_error_reads_as_the_design_says() -> None:
    assert str(errors.BadBatch(17, "logits", "NaN", 3, 68000)) == "batch 17: logits: NaN in row 3 (item 68003 of the stream)"
