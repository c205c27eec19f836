"""Session: a handle on one scoring session of a server, for the resumable Score stream."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, Iterator

import grpc

import numpy as np

from poolscore.client.errors import NotFound, Requests, SequenceGap, mapped, overtaken
from poolscore.client.pools import Batch
from poolscore.v1 import scoring_pb2 as pb

if TYPE_CHECKING:
    from poolscore.client.client import Client, TopK


class Session:
    """Batches go in with `score` or `stream`; `top_k` reads the best K so far.

    As a context manager, a clean exit deletes the session on the server; an exit by an
    exception keeps it, so a pipeline that crashed can open it again by its id and go on
    with `stream(..., resume=True)` (idle sessions expire after the server's TTL).
    """

    def __init__(self, client: "Client", session_id: str) -> None:
        self._client, self.id = client, session_id

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.delete()

    def __repr__(self) -> str:
        return f"Session({self.id!r} on {self._client.target})"

    def score(self, logits: np.ndarray | None = None, *, ids: np.ndarray | None = None,
              embedding: np.ndarray | None = None, keys: list[str] | None = None) -> pb.ScoreAck:
        """Add one batch (split under the message limit); the last ack."""
        return self._client.score(self.id, logits, ids=ids, embedding=embedding, keys=keys)

    def stream(self, batches: Iterable[Batch | tuple], *, resume: bool = False,
               progress: Callable[[int], None] | None = None) -> pb.ScoreAck:
        """Stream batches over one pipelined Score call (see Client.stream for `resume`)."""
        return self._client.stream(self.id, batches, resume=resume, progress=progress)

    def top_k(self) -> "TopK":
        return self._client.top_k(self.id)

    def info(self) -> pb.Session:
        """The server's view: strategy, k, next_seq, items."""
        return self._client.get_session(self.id)

    def delete(self) -> None:
        """Free the session on the server; deleting one that is already gone is not an error."""
        try:
            self._client.delete_session(self.id)
        except NotFound:
            pass


def send_labeled(client: "Client", session_id: str, labeled: np.ndarray) -> pb.ScoreAck:
    """Client.add_labeled: the rows as batches of no rows at the session's next seqs, one call each."""
    from poolscore.client import wire

    session = client.get_session(session_id)
    ack = None
    with mapped():
        for seq, req in enumerate(wire.labeled_requests(labeled, client.batch_bytes), start=session.next_seq):
            small = pb.ScoreRequest(session_id=session_id, seq=seq).SerializeToString()
            for ack in client._score(iter([small + req]), timeout=client.timeout):
                client._committed[session_id] = (ack.seq + 1, ack.items)
    return ack


def resume_point(client: "Client", session_id: str, ask: bool) -> tuple[int, int]:
    """(next_seq, items) of the session: from this client's last ack, or asked of the server."""
    known = client._committed.get(session_id)
    if ask or known is None or session_id not in client._hosted:
        session = client.get_session(session_id)
        client._hosted[session_id] = bool(session.model.name)
        return session.next_seq, session.items
    return known


def acks(client: "Client", session_id: str, requests: Iterator[bytes], tolerate_replays: bool) -> Iterator[pb.ScoreAck]:
    """One Score call's acks. Outside a resume, this client never resends, so a replayed ack
    means another writer took our seq; on a resume, a broken call may still commit what the
    server had received from it."""
    stream = Requests(requests)
    try:
        with mapped(stream):
            call = client._score(stream, timeout=client.timeout)
            for ack in call:
                if ack.replayed and not tolerate_replays:
                    call.cancel()
                    raise SequenceGap(grpc.StatusCode.FAILED_PRECONDITION, overtaken(session_id, ack))
                client._committed[session_id] = (ack.seq + 1, ack.items)
                client.reached = True
                yield ack
    except BaseException:
        client._committed.pop(session_id, None)  # ask the server next time
        raise

