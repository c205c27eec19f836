"""AsyncClient: the client for asyncio code (grpc.aio), with the sync Client's calls and errors.

    async with AsyncClient("localhost:50051") as client:
        await client.wait_ready()
        top = await client.score_pool(logits, "margin", k=1000)
        sid = await client.create_session("entropy", k=100)
        await client.stream(sid, batches)

Requests are encoded as the sync client encodes them (client/wire.py: tensors as raw bytes,
never re-copied by protobuf), and errors arrive as the same typed exceptions. Pool files are
read on the event loop's thread a record batch at a time; a pool that must not block the loop
is best given as arrays. Outages are not retried here (the sync Client's retry_s)."""
from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from typing import AsyncIterator, Iterable

import grpc
import grpc.aio
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from poolscore.client import tensors, wire
from poolscore.client.channels import channel_args, room
from poolscore.client.errors import SequenceGap, Unavailable, from_rpc_error
from poolscore.client.pools import Batch, as_ids, batches_of
from poolscore.client.specs import TopK, model_spec, strategy_spec
from poolscore.v1 import scoring_pb2 as pb

_METHOD = f"/{pb.DESCRIPTOR.services_by_name['PoolScorer'].full_name}/"


def _serialized(message) -> bytes:
    return message.SerializeToString()


class _Reader:
    """A request stream that keeps its own exception: grpc.aio reports a failing request
    iterator as a bare cancellation, and the caller deserves the real error."""

    def __init__(self, source: AsyncIterator[bytes]) -> None:
        self.source, self.error = source, None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for item in self.source:
                yield item
        except BaseException as err:
            self.error = err
            raise


@contextlib.contextmanager
def _mapped(reader: _Reader | None = None):
    try:
        yield
    except (grpc.RpcError, asyncio.CancelledError) as err:
        if reader is not None and reader.error is not None:
            raise reader.error from None  # the pool reader failed on this side, not the server
        if isinstance(err, asyncio.CancelledError):
            raise
        raise from_rpc_error(err) from None


class AsyncClient:
    def __init__(self, target: str, *, timeout: float | None = None, token: str | None = None,
                 max_message_bytes: int = 64 * 1024 * 1024, batch_bytes: int = 4 * 1024 * 1024,
                 root_certificates: bytes | None = None, private_key: bytes | None = None,
                 certificate_chain: bytes | None = None, tls: bool = False) -> None:
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._batch_bytes = min(batch_bytes, room(max_message_bytes))
        self.target, creds, options = channel_args(target, max_message_bytes, tls, root_certificates, private_key,
                                                   certificate_chain)
        self._channel = (grpc.aio.secure_channel(self.target, creds, options=options) if creds
                         else grpc.aio.insecure_channel(self.target, options=options))
        # tensor-carrying calls send the bytes wire.py built (no serializer: no copy); the rest are messages
        unary = lambda name, reply, out=_serialized: self._channel.unary_unary(_METHOD + name, out, reply.FromString)  # noqa: E731
        self._score_pool = self._channel.stream_unary(_METHOD + "ScorePool", None, pb.TopK.FromString)
        self._score = self._channel.stream_stream(_METHOD + "Score", None, pb.ScoreAck.FromString)
        self._score_batch = unary("ScoreBatch", pb.ScoreBatchReply, None)
        self._calls = {name: unary(name, reply) for name, reply in (
            ("ServerInfo", pb.ServerInfoReply), ("CreateSession", pb.Session), ("GetSession", pb.Session),
            ("GetTopK", pb.TopK), ("DeleteSession", pb.Session), ("ReloadModels", pb.ServerInfoReply))}
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._server_bytes: int | None = None

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll the standard health service until SERVING (Unavailable after timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                reply = await self._health.Check(health_pb2.HealthCheckRequest(),
                                                 timeout=max(0.1, deadline - time.monotonic()))
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError as err:
                if time.monotonic() >= deadline:
                    raise Unavailable(err.code(), f"{self.target} not serving after {timeout}s: {err.details()}") from None
            if time.monotonic() >= deadline:
                raise Unavailable(grpc.StatusCode.UNAVAILABLE, f"{self.target} not serving after {timeout}s")
            await asyncio.sleep(0.05)  # poll interval of a health check

    async def info(self) -> pb.ServerInfoReply:
        return await self._unary("ServerInfo", pb.ServerInfoRequest())

    async def reload_models(self) -> pb.ServerInfoReply:
        return await self._unary("ReloadModels", pb.ReloadModelsRequest())

    async def batch_bytes(self) -> int:
        """Tensor bytes per message, under the server's message limit too (asked once)."""
        if self._server_bytes is None:
            self._server_bytes = room((await self.info()).limits.max_message_bytes or 2**31 - 1)
        return min(self._batch_bytes, self._server_bytes)

    async def score_batch(self, array: np.ndarray | None, strategy: str = "entropy", *, embedding=None, ids=None,
                          model: str | None = None, samples: int = 0, model_seed: int = 0, **options) -> np.ndarray:
        spec, hosted = strategy_spec(strategy, options), model_spec(model, samples, model_seed)
        numbers = wire.SCORE_BATCH_REQUEST_INPUTS if hosted else wire.SCORE_BATCH_REQUEST
        whole = Batch(None if array is None else np.asarray(array), as_ids(ids), embedding)
        parts = []
        for part in batches_of([whole], await self.batch_bytes()):
            req = wire.encode(pb.ScoreBatchRequest(strategy=spec, model=hosted), part, numbers)
            with _mapped():
                reply = await self._score_batch(req, timeout=self.timeout, metadata=self._metadata)
            parts.append(tensors.decode(reply.scores))
        return np.concatenate(parts) if parts else np.empty(0, np.float32)

    async def score_pool(self, pool, strategy: str = "entropy", k: int = 100, *, ids=None, embedding=None, keys=None,
                         model: str | None = None, samples: int = 0, model_seed: int = 0, columns: dict | None = None,
                         labeled: np.ndarray | None = None, **options) -> TopK:
        """The top-k of a pool (what the sync Client.score_pool takes), over one ScorePool stream."""
        spec, hosted = strategy_spec(strategy, options), model_spec(model, samples, model_seed)
        numbers = wire.SCORE_REQUEST_INPUTS if hosted else wire.SCORE_REQUEST
        size = await self.batch_bytes()
        source = batches_of(pool, size, ids=ids, embedding=embedding, keys=keys, **(columns or {}))

        async def requests() -> AsyncIterator[bytes]:
            yield pb.ScoreRequest(strategy=spec, k=k, model=hosted).SerializeToString()
            for req in wire.labeled_requests(labeled, size):
                yield req
            for batch in source:
                yield wire.encode(pb.ScoreRequest(), batch, numbers)

        reader = _Reader(requests())
        with _mapped(reader):
            return TopK.from_pb(await self._score_pool(reader.__aiter__(), timeout=self.timeout, metadata=self._metadata))

    async def create_session(self, strategy: str = "entropy", k: int = 100, *, session_id: str = "",
                             model: str | None = None, samples: int = 0, model_seed: int = 0, **options) -> str:
        req = pb.CreateSessionRequest(strategy=strategy_spec(strategy, options), k=k,
                                      session_id=session_id or secrets.token_hex(16),
                                      model=model_spec(model, samples, model_seed))
        return (await self._unary("CreateSession", req)).session_id

    async def get_session(self, session_id: str) -> pb.Session:
        return await self._unary("GetSession", pb.SessionRef(session_id=session_id))

    async def top_k(self, session_id: str) -> TopK:
        return TopK.from_pb(await self._unary("GetTopK", pb.SessionRef(session_id=session_id)))

    async def delete_session(self, session_id: str) -> None:
        await self._unary("DeleteSession", pb.SessionRef(session_id=session_id))

    async def stream(self, session_id: str, batches: Iterable[Batch | tuple]) -> pb.ScoreAck:
        """Stream batches into a session from its next seq, pipelined; the last ack."""
        session = await self.get_session(session_id)
        numbers = wire.SCORE_REQUEST_INPUTS if session.model.name else wire.SCORE_REQUEST
        size = await self.batch_bytes()

        async def requests() -> AsyncIterator[bytes]:
            for seq, batch in enumerate(batches_of(batches, size), start=session.next_seq):
                yield wire.encode(pb.ScoreRequest(session_id=session_id, seq=seq), batch, numbers)

        ack = pb.ScoreAck(session_id=session_id, seq=session.next_seq - 1, items=session.items)
        reader = _Reader(requests())
        with _mapped(reader):
            call = self._score(reader.__aiter__(), timeout=self.timeout, metadata=self._metadata)
            async for ack in call:
                if ack.replayed:  # this client never resends: another writer took the seq
                    call.cancel()
                    raise SequenceGap(grpc.StatusCode.FAILED_PRECONDITION,
                                      f"session {session_id!r}: batch {ack.acked_seq} was committed by another writer")
        return ack

    async def _unary(self, name: str, request):
        with _mapped():
            return await self._calls[name](request, timeout=self.timeout, metadata=self._metadata)
