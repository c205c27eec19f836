"""The PoolScorer RPCs, a few lines each: wire → pipeline → session → reply."""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from typing import Any, Iterator, Mapping

import grpc
import numpy as np

from poolscore.server.backends.base import Backend
from poolscore.server.config import ServeConfig
from poolscore.server.errors import BadInput, Draining, OverLimit
from poolscore.server.ingest.tensors import Batch, RawTensor
from poolscore.server.metrics import Metrics
from poolscore.server.models.repository import ModelRepository
from poolscore.server.pipeline import Pipeline
from poolscore.server.runtime.budget import ByteBudget
from poolscore.server.runtime.threads import lent, usable_cores
from poolscore.server.sessions.session import Session, State, empty_state
from poolscore.server.sessions.store import SessionStore
from poolscore.server.strategies import Spec, check_k
from poolscore.server.transport import messages as msg, wire
from poolscore.server.transport.auth import Principals
from poolscore.server.transport.readahead import read_ahead
from poolscore.server.transport.shared_memory import Regions, resolved
from poolscore.server.transport.statuses import maps_errors
from poolscore.server.transport.wire import Parsed
from poolscore.v1 import scoring_pb2 as pb
from poolscore.v1 import scoring_pb2_grpc as pb_grpc


log = logging.getLogger(__name__)


class PoolScorer(pb_grpc.PoolScorerServicer):
    def __init__(self, config: ServeConfig, backend: Backend, sessions: SessionStore, metrics: Metrics,
                 models: ModelRepository, pipeline: Pipeline, principals: Principals | None = None) -> None:
        self.config, self.backend, self.sessions, self.metrics = config, backend, sessions, metrics
        self.models, self.pipeline = models, pipeline
        self.principals = principals or Principals()
        self.regions = Regions(config.shm, config.shm_max_mb * 2**20, config.shm_max_regions, config.shm_idle_s)
        metrics.sessions.set_function(lambda: len(sessions))  # live at each scrape, expiry included
        metrics.shm_regions.set_function(self.regions.count)
        metrics.shm_mapped.set_function(self.regions.mapped_bytes)
        self.max_streams = config.max_streams or max(1, config.workers - 8)
        self._shm_threads = usable_cores()  # a batch read from shared memory: its kernel on every core (threads.lent)
        self._streams = threading.BoundedSemaphore(self.max_streams)
        self._open = 0  # streams in flight, for the drain
        self._open_changed = threading.Condition()
        self.draining = False
        self._read_ahead = ByteBudget(config.read_ahead_mb * 2**20)
        # one receiving thread per open stream, reused: a stream's pump may outlive its call briefly
        self._pumps = ThreadPoolExecutor(2 * self.max_streams, thread_name_prefix="poolscore-read-ahead")

    @maps_errors
    def ScorePool(self, requests: Iterator[Parsed], context: grpc.ServicerContext) -> pb.TopK:
        self._take_stream()
        session: Session | None = None
        try:
            for req in self._stream(requests, context):  # a gone caller's queued batches: unscored
                if session is None:  # the first message opens the pool: strategy, k, model
                    spec = msg.spec_of(req.strategy)
                    session = Session("pool", spec, self._first(spec, req.k), msg.feed_of(req.model, spec, self.models))
                    session.reserve(session.state, self.sessions.budget)
                    if not req.batch.carries_rows:
                        continue  # a header alone: a pool of no rows still gets its (empty) top-K
                with self.metrics.batch_seconds.labels("ScorePool").time():
                    state = session.state  # batches numbered from 0, a header alone uncounted
                    session.commit(state, self._scored(session, state, state.next_seq, req))
                req.release()  # scored and merged: the client's ring may write over its bytes
            if session is None:
                raise BadInput("requests", "the stream sent no batch")
            return self._answer(session)
        finally:
            if session is not None:
                session.close(self.sessions.budget)
            self._end_stream()

    @maps_errors
    def Score(self, requests: Iterator[Parsed], context: grpc.ServicerContext) -> Iterator[pb.ScoreAck]:
        self._take_stream()
        try:
            yield from self._acks(requests, context)
        finally:
            self._end_stream()

    def _acks(self, requests: Iterator[Parsed], context: grpc.ServicerContext) -> Iterator[pb.ScoreAck]:
        owner = self._who(context)  # one call, one caller: its metadata is read once
        checkpoints = self.sessions.checkpoints
        touched: dict[int, tuple[Session, int]] = {}  # the sessions this stream wrote to, and its last seq in each
        for req in self._stream(requests, context):  # a gone caller's queued batches: uncommitted
            with self.metrics.batch_seconds.labels("Score").time():
                session = self.sessions.get(req.session_id, owner)
                if checkpoints is not None:
                    checkpoints.room(session)  # a client resends at most 2 × --checkpoint-batches after a crash
                state = session.state
                fresh = state.is_new(req.seq, session.id)
                digest = wire.digest(req)
                if fresh:  # scored outside the lock, against `state`; committed only if still next
                    new = self._scored(session, state, req.seq, req, digest)
                    fresh = session.commit(state, new)  # False: another writer committed this seq first
                    state = new if fresh else session.state
                    if fresh and checkpoints is not None:
                        checkpoints.committed(session)
                if not fresh:
                    state.check_resend(req.seq, digest, session.id)
                req.release()
            touched[id(session)] = (session, req.seq)
            yield msg.ack(session, state, req.seq, replayed=not fresh)
        for session, seq in touched.values() if checkpoints is not None else ():
            # the caller ended its stream: its tail is written now, and one more ack says so
            checkpoints.flush_now(session)
            yield msg.ack(session, session.state, seq, replayed=False)

    @maps_errors
    def CreateSession(self, req: pb.CreateSessionRequest, context: grpc.ServicerContext) -> pb.Session:
        spec = msg.spec_of(req.strategy)
        session = self.sessions.create(spec, self._first(spec, req.k), req.session_id,
                                       msg.feed_of(req.model, spec, self.models), owner=self._who(context))
        return msg.session_to_pb(session)

    @maps_errors
    def GetSession(self, req: pb.SessionRef, context: grpc.ServicerContext) -> pb.Session:
        return msg.session_to_pb(self.sessions.get(req.session_id, self._who(context)))

    @maps_errors
    def GetTopK(self, req: pb.SessionRef, context: grpc.ServicerContext) -> pb.TopK:
        return self._answer(self.sessions.get(req.session_id, self._who(context)))

    def _answer(self, session: Session) -> pb.TopK:
        """The session's top-K (a snapshot: never waits), its classes' shares into the metrics."""
        state = session.state
        try:
            classes = state.selected_classes()
            if classes is not None:
                self.metrics.selected_classes.observe(session.spec.strategy.name, classes)
        except Exception:  # noqa: BLE001 - a metric never fails the reply it describes
            log.exception("selected-class shares of session %s", session.id)
        return msg.top_to_pb(state)

    @maps_errors
    def DeleteSession(self, req: pb.SessionRef, context: grpc.ServicerContext) -> pb.Session:
        session = self.sessions.delete(req.session_id, self._who(context))
        return pb.Session(session_id=req.session_id) if session is None else msg.session_to_pb(session)  # None: a damaged file

    @maps_errors
    def ScoreBatch(self, req: Parsed, context: grpc.ServicerContext) -> pb.ScoreBatchReply:
        req = self._resolved(req, self._who(context))
        with self.metrics.batch_seconds.labels("ScoreBatch").time():
            spec = msg.spec_of(req.strategy)
            if spec.selection.set_level:
                raise BadInput("strategy.name", f"{spec.strategy.name} selects over a whole pool's candidates: "
                                                "use ScorePool or a session, not ScoreBatch")
            rows = max((t.shape[0] for t in req.batch.tensors.values() if t.shape), default=0)
            if 8 * rows + 1024 > self.config.max_message_bytes:  # refused before the work, not after it
                raise OverLimit(f"ScoreBatch: {rows} scores would not fit in a reply under the message limit of "
                                f"{self.config.max_message_bytes} bytes; send fewer rows, or use ScorePool")
            scored = self.pipeline.score(spec, req.batch, feed=msg.feed_of(req.model, spec, self.models))
            reply = pb.ScoreBatchReply(scores=msg.tensor_to_pb(self.backend.to_numpy(scored.scores)))
            req.release()
            return reply

    @maps_errors
    def RegisterSharedMemory(self, req: pb.RegisterSharedMemoryRequest, context) -> pb.RegisterSharedMemoryResponse:
        region, nonce = self.regions.register(self._who(context), req.name, req.key, req.byte_size)
        return pb.RegisterSharedMemoryResponse(region=msg.region_to_pb(region), nonce=nonce)

    @maps_errors
    def UnregisterSharedMemory(self, req: pb.UnregisterSharedMemoryRequest, context
                               ) -> pb.UnregisterSharedMemoryResponse:
        gone = self.regions.unregister(self._who(context), req.name)
        return pb.UnregisterSharedMemoryResponse(regions=[msg.region_to_pb(r) for r in gone])

    @maps_errors
    def SharedMemoryStatus(self, req: pb.SharedMemoryStatusRequest, context) -> pb.SharedMemoryStatusResponse:
        return pb.SharedMemoryStatusResponse(regions=[msg.region_to_pb(r) for r in self.regions.of(self._who(context))])

    @maps_errors
    def ServerInfo(self, req: pb.ServerInfoRequest, context: grpc.ServicerContext) -> pb.ServerInfoReply:
        return self._info()

    @maps_errors
    def ReloadModels(self, req: pb.ReloadModelsRequest, context: grpc.ServicerContext) -> pb.ServerInfoReply:
        self.models.reload()
        return self._info()

    def _info(self) -> pb.ServerInfoReply:
        checkpoints = self.sessions.checkpoints
        return pb.ServerInfoReply(
            models=[msg.model_info_to_pb(m.info()) for m in self.models.models.values()],
            model_errors=self.models.errors, version=version(),
            device=f"{self.backend.description}, {self.backend.name} backend", strategies=msg.strategies_to_pb(),
            limits=pb.Limits(max_message_bytes=self.config.max_message_bytes, max_k=self.config.max_k,
                             max_sessions=self.config.max_sessions, session_memory_bytes=self.sessions.budget.total,
                             session_memory_free_bytes=self.sessions.budget.free,
                             checkpoint_batches=self.config.checkpoint_batches if checkpoints else 0),
            state_errors={p.path: p.reason for p in checkpoints.files.problems.values()} if checkpoints else {},
            shared_memory=pb.SharedMemoryInfo(enabled=self.regions.enabled, max_bytes=self.regions.max_bytes,
                                              max_regions=self.regions.max_regions, idle_s=self.regions.idle_s))

    def _who(self, context: grpc.ServicerContext) -> str:
        """The caller's principal (the interceptor has refused calls without a valid token)."""
        return self.principals.of_call(context) or ""

    def _take_stream(self) -> None:
        """A stream slot, or RESOURCE_EXHAUSTED: streams never take the threads unary calls and health need."""
        if self.draining:
            raise Draining()
        if not self._streams.acquire(blocking=False):
            raise OverLimit(f"streams: all {self.max_streams} in use (--max-streams); close idle ones or retry later")
        with self._open_changed:
            self._open += 1

    def _end_stream(self) -> None:
        with self._open_changed:
            self._open -= 1
            self._open_changed.notify_all()
        self._streams.release()

    def drain(self, grace_s: float) -> bool:
        """Refuse new streams (UNAVAILABLE) and wait up to grace_s for those in flight to end;
        True if they all did."""
        self.draining = True
        with self._open_changed:
            return self._open_changed.wait_for(lambda: self._open == 0, timeout=grace_s)

    def _stream(self, requests: Iterator[Parsed], context: grpc.ServicerContext) -> Iterator[Parsed]:
        """The stream's requests, read ahead, closed when idle. The caller has taken a stream slot."""
        owner = self._who(context)
        ahead = read_ahead(requests, active=context.is_active, idle_s=self.config.stream_idle_s,
                           budget=self._read_ahead, size=_size, pumps=self._pumps, waited=self.metrics.queue_seconds.observe)
        return (self._resolved(req, owner) for req in ahead)

    def _resolved(self, req: Parsed, owner: str) -> Parsed:
        """The request with its shared-memory tensors as views of their regions (a bad ref: its error)."""
        if isinstance(req, Parsed) and req.refs:
            req.tensors, req.marks = resolved(req.tensors, req.refs, self.regions, owner)
            self.metrics.shm_tensor_bytes.inc(sum(size for _, _, size, _ in req.refs.values()))
        return req

    def _scored(self, session: Session, state: State, seq: int, req: Parsed, digest: int | None = None) -> State:
        """Batch `seq` scored and merged into `state`, or an error with the session untouched."""
        with lent(self._shm_threads if req.refs else 0):
            scored = self.pipeline.score(session.spec, req.batch, seq=seq, first_row=state.items, feed=session.feed)
        new = state.after(seq, scored, digest)
        reply = new.reply_bytes() if new.keys and new is not state else 0
        if reply > self.config.max_message_bytes:
            raise OverLimit(f"keys: the top-K's keys would make a reply of {reply} bytes, over the message "
                            f"limit of {self.config.max_message_bytes}; ask for a smaller k or use shorter keys")
        session.reserve(new, self.sessions.budget)  # a candidate set's rows, once the first batch shows their width
        return new

    def revive(self, header: Mapping[str, Any]) -> Session:
        """A session from its checkpoint header, with its first state (checkpoints.py fills in the
        rest): parsed and checked as its create was, so a changed server (a model gone, a lower
        --max-k) refuses it by name."""
        strategy, k, model = msg.create_of(header)
        spec = msg.spec_of(strategy)
        return Session(str(header["id"]), spec, self._first(spec, k), msg.feed_of(model, spec, self.models),
                       owner=str(header["owner"]))

    def rehearse(self, strategies: list[str], classes: tuple[int, ...]) -> int:
        """A small batch of each warm strategy and class count through the whole batch path
        (pipeline, merge, reply) before health says SERVING, on metrics of its own: what a
        first batch pays once (lazy imports, first-call caches) is paid here, not by a pool."""
        from prometheus_client import CollectorRegistry

        pipeline = Pipeline(self.backend, Metrics(CollectorRegistry()))
        for name in strategies:
            for c in classes:
                spec = msg.spec_of(pb.StrategySpec(name=name))  # two batches, the second merged into a full
                # top-K, each split over the kernel threads (started then) as a shared-memory one is
                x = np.random.default_rng(c).normal(size=(4096, c)).astype(np.float32)
                batch = Batch({"logits": RawTensor("FP32", x.shape, memoryview(x).cast("B"))})
                state = self._first(spec, min(10, self.config.max_k))
                with lent(self._shm_threads):
                    for seq in range(2):
                        state = state.after(seq, pipeline.score(spec, batch, seq=seq, first_row=state.items))
                msg.top_to_pb(state)
        return len(strategies) * len(classes)

    def _first(self, spec: Spec, k: int) -> State:
        return empty_state(spec, check_k(k, self.config.max_k), self.backend)


def _size(req: Parsed) -> int:
    """A received request's tensor bytes (0 for one that could not be read)."""
    return sum(len(t.data) for t in req.tensors.values()) if isinstance(req, Parsed) else 0


def version() -> str:
    try:
        return metadata.version("poolscore")
    except metadata.PackageNotFoundError:
        return "0+unknown"
