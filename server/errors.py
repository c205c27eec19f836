"""Domain errors, plain Python: the core raises these, statuses.py maps them to gRPC codes."""
from __future__ import annotations


class PoolscoreError(Exception):
    """Base of every error the service reports to its caller."""


def shown(text: str, most: int = 64) -> str:
    """A caller's string as a message quotes it: cut short, so a status never outgrows its metadata."""
    return repr(text) if len(text) <= most else f"{text[:most]!r}… ({len(text)} characters)"


class BadInput(PoolscoreError, ValueError):
    """A tensor or option the caller sent is wrong: names the field and, for NaN/Inf, the row."""

    def __init__(self, field: str, problem: str, row: int | None = None) -> None:
        self.field, self.problem, self.row = field, problem, row
        where = f" in row {row}" if row is not None else ""
        super().__init__(f"{field}: {problem}{where}")

    def in_batch(self, seq: int, first_row: int = 0) -> "BadBatch":
        """The same error, told as part of batch `seq` of a stream whose rows before it were `first_row`."""
        return BadBatch(seq, self.field, self.problem, self.row, first_row)


class BadBatch(BadInput):
    """A BadInput inside a streamed batch: `batch 17: logits: NaN in row 3 (item 68003 of the stream)`."""

    def __init__(self, seq: int, field: str, problem: str, row: int | None = None, first_row: int = 0) -> None:
        self.seq = seq
        super().__init__(field, problem, row)
        item = f" (item {first_row + row} of the stream)" if row is not None and first_row else ""
        self.args = (f"batch {seq}: {self.args[0]}{item}",)

    def __str__(self) -> str:
        return self.args[0]


class Draining(PoolscoreError):
    def __init__(self) -> None:
        super().__init__("the server is draining (SIGTERM): retry against another replica; "
                         "sessions resume where their acks left off")


class StreamIdle(PoolscoreError):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"stream: nothing received for {seconds:g} s (--stream-idle-s); what was committed is kept, "
                         f"reopen the stream to go on")


class UnknownStrategy(PoolscoreError, ValueError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"strategy: unknown {name!r}; known: {', '.join(sorted(known))}")


class SessionNotFound(PoolscoreError, KeyError):
    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {shown(session_id)} not found (expired, deleted or never created)")

    def __str__(self) -> str:  # KeyError would quote the message again
        return self.args[0]


class SessionConflict(PoolscoreError):
    """A create names an existing session but asks for another strategy, k or model."""

    def __init__(self, session_id: str, has: str, asked: str) -> None:
        super().__init__(f"session {session_id!r} exists with {has}; this create asks for {asked}")


class ModelNotFound(PoolscoreError, KeyError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no model or scorer named {name!r}")

    def __str__(self) -> str:
        return self.args[0]


class SequenceGap(PoolscoreError):
    def __init__(self, session_id: str, expected: int, got: int) -> None:
        super().__init__(
            f"session {session_id!r}: batch {got} sent but the next batch must be {expected}"
        )


class ResendConflict(PoolscoreError):
    def __init__(self, session_id: str, seq: int) -> None:
        super().__init__(f"session {shown(session_id)}: batch {seq} was already committed, with other content (by "
                         f"another writer, or from a pool read in another order); a resend must carry the same batch")


class OverLimit(PoolscoreError):
    """A configured limit (sessions, k, message size, memory) would be exceeded."""


class BadToken(PoolscoreError):
    """The call carried no valid bearer token."""


class SessionCorrupt(PoolscoreError):
    """A session's state file in --state-dir is torn or altered: it was not loaded (DATA_LOSS)."""

    def __init__(self, session_id: str, path: str, problem: str) -> None:
        super().__init__(f"session {shown(session_id)}: its state file {path} is unreadable ({problem}), so it was not "
                         f"loaded; delete the session to start it over, or restore the file and restart")


class SessionUnrestorable(PoolscoreError):
    """A session's state file is whole but could not be restored here (its model is not served,
    the memory budget is spent): FAILED_PRECONDITION, naming why."""

    def __init__(self, session_id: str, path: str, problem: str) -> None:
        super().__init__(f"session {shown(session_id)}: its state file {path} was not restored: {problem}")


class NotDurable(PoolscoreError):
    """Checkpoints have fallen too far behind (a slow or failing --state-dir): UNAVAILABLE, so the
    client backs off and resends from the durable batch."""


class SessionElsewhere(PoolscoreError):
    """Another replica sharing the state dir serves this session now: UNAVAILABLE, so the client
    retries (and finds it here once that replica is gone)."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {shown(session_id)} is served by another replica sharing this state dir; "
                         f"retry (it moves here once that replica stops)")


class RegionNotFound(PoolscoreError, KeyError):
    """A shared-memory region or segment that is not registered for this principal (NOT_FOUND)."""

    def __str__(self) -> str:
        return self.args[0]


class NoSharedMemory(PoolscoreError):
    """This server maps no shared memory (--shm false, or no /dev/shm): FAILED_PRECONDITION, so a
    client sends bytes instead."""

    def __init__(self) -> None:
        super().__init__("this server does not take shared memory (--shm false, or no /dev/shm); send the bytes")


# DESIGN.md's error table by status name; transport/statuses.py makes gRPC codes of them, and
# the in-process scorer the client's typed errors (it imports no grpc)
STATUS_NAMES = {
    BadInput: "INVALID_ARGUMENT", UnknownStrategy: "INVALID_ARGUMENT",
    SessionNotFound: "NOT_FOUND", ModelNotFound: "NOT_FOUND",
    SequenceGap: "FAILED_PRECONDITION", SessionConflict: "ALREADY_EXISTS",
    OverLimit: "RESOURCE_EXHAUSTED", BadToken: "UNAUTHENTICATED",
    StreamIdle: "DEADLINE_EXCEEDED", ResendConflict: "FAILED_PRECONDITION",
    Draining: "UNAVAILABLE", NotDurable: "UNAVAILABLE", SessionElsewhere: "UNAVAILABLE",
    SessionCorrupt: "DATA_LOSS", SessionUnrestorable: "FAILED_PRECONDITION",
    RegionNotFound: "NOT_FOUND", NoSharedMemory: "FAILED_PRECONDITION",
}


def status_name(err: Exception) -> str:
    for kind, name in STATUS_NAMES.items():
        if isinstance(err, kind):
            return name
    return "INTERNAL"
