"""Outbox: a Score stream's batches, numbered, with those the server could still lose kept to resend.

A batch is kept from when it is read off the pool until the server says it is safe: durable
(an ack's durable_seq, on a server with --state-dir) or, on a server without one, committed.
So when a call breaks (a restart, a drain, a network cut), the next call resends from the
server's next_seq without reading the pool again, and a pool that is a one-pass generator
resumes too. The server bounds what is kept: it holds a stream back once it is 2 ×
--checkpoint-batches past its last checkpoint.

The pool is read under a lock, by whichever call's request thread needs the next batch: a
broken call's thread may still be inside the reader when the next call starts."""
from __future__ import annotations

import threading
from typing import Callable, Iterator

import grpc

from poolscore.client.errors import DataLoss, SequenceGap
from poolscore.client.pools import Batch


class Outbox:
    def __init__(self, batches: Iterator[Batch], first: int, encode: Callable[[int, Batch], bytes],
                 progress: Callable[[int], None] | None = None, *, from_start: bool = False,
                 keep_from: int | None = None) -> None:
        """`batches` are numbered from `first`; from_start: they are the session's whole pool
        read again (a resume), so those the server has committed are read past, not sent; of
        those, the ones from `keep_from` on (the server's durable_seq) are kept all the same,
        since a restart could still lose them."""
        self._batches, self._drawn = batches, 0 if from_start else first  # the seq the next batch read carries
        self._from_start = from_start
        self._skip_below = (first if keep_from is None else min(first, keep_from)) if from_start else 0
        self._error: BaseException | None = None  # the pool reader's failure: raised to every call after it
        self._encode, self._progress = encode, progress
        self._kept: dict[int, bytes] = {}  # seq → encoded request, until the server has it safe
        self._safe = 0  # every batch < _safe is safe on the server
        self._done = False
        self._lock = threading.Lock()  # guards all of the above; held while reading the pool

    def requests(self, start: int) -> Iterator[bytes]:
        """The requests from batch `start` on: kept ones first, then the pool's next ones."""
        seq = start
        while (data := self._get(seq)) is not None:
            yield data
            seq += 1

    def release(self, safe: int) -> None:
        """Batches < safe are safe on the server: no longer kept."""
        with self._lock:
            for seq in range(self._safe, safe):
                self._kept.pop(seq, None)
            self._safe = max(self._safe, safe)

    def check_resumable(self, session_id: str, start: int) -> None:
        """The server resumes at `start`: DataLoss if this client no longer keeps every batch from there."""
        with self._lock:
            if self._from_start:
                self._skip_below = max(self._skip_below, start)
            elif start > self._drawn:
                raise SequenceGap(grpc.StatusCode.FAILED_PRECONDITION, f"session {session_id!r}: the server is at batch {start}, past the {self._drawn} "
                                        f"this client sent: another writer is streaming into it")
            if start < self._drawn and start not in self._kept:
                told = f"it had acked batches up to {self._safe - 1} as safe, so " if self._safe else ""
                raise DataLoss(grpc.StatusCode.DATA_LOSS, f"session {session_id!r}: the server resumed at batch {start}, but "
                                                          f"{told}this client no longer keeps it (the server's state dir lost "
                                                          f"it?); stream the pool again with resume=True")

    def _get(self, seq: int) -> bytes | None:
        with self._lock:
            if self._error is not None:
                raise self._error  # a reader that failed in a broken call's thread fails this call too
            if seq < self._drawn and seq not in self._kept and seq >= self._skip_below:
                raise DataLoss(grpc.StatusCode.DATA_LOSS, f"batch {seq} was read and released as safe, but the server "
                                                          f"asks for it again; stream the pool again with resume=True")
            while seq >= self._drawn and not self._done:
                try:
                    batch = next(self._batches, None)
                except BaseException as err:
                    self._error = err
                    raise
                if batch is None:
                    self._done = True
                    break
                drawn, self._drawn = self._drawn, self._drawn + 1
                if drawn < self._skip_below:
                    continue  # committed before: read past, not sent
                self._kept[drawn] = self._encode(drawn, batch)
                if self._progress is not None:
                    self._progress(batch.rows)
            return self._kept.get(seq)
