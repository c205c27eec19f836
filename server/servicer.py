"""The PoolScorer RPCs, a few lines each: decode → validate → score → top-K → reply."""
from __future__ import annotations

from importlib import metadata
from typing import Iterator

from poolscore.server import batches
from poolscore.server.config import ServeConfig
from poolscore.server.errors import BadInput
from poolscore.server.metrics import Metrics
from poolscore.server.readahead import read_ahead
from poolscore.server.scoring import STRATEGIES
from poolscore.server.sessions import Session, SessionStore
from poolscore.server.spec import Feed, Spec, check_k, feed_for, parse
from poolscore.server.statuses import maps_errors
from poolscore.server.wire import Parsed
from poolscore.v1 import scoring_pb2 as pb
from poolscore.v1 import scoring_pb2_grpc as pb_grpc


class PoolScorer(pb_grpc.PoolScorerServicer):
    def __init__(self, config: ServeConfig, backend, sessions: SessionStore, metrics: Metrics, models) -> None:
        self.config, self.backend, self.sessions, self.metrics = config, backend, sessions, metrics
        self.models = models
        self.device = backend.device_type
        metrics.sessions.set_function(lambda: len(sessions))  # live at each scrape, expiry included

    @maps_errors
    def ScorePool(self, requests: Iterator[pb.ScoreRequest], context) -> pb.TopK:
        session: Session | None = None
        for req in read_ahead(requests, active=context.is_active):  # a gone caller's queued batches: unscored
            if session is None:  # the first message opens the pool: strategy, k, model
                spec = parse(req.strategy)
                session = Session("pool", spec, self._empty_top(req.k), feed=feed_for(req.model, spec, self.models))
                if not batches.carries_rows(req):
                    continue  # a header alone: a pool of no rows still gets its (empty) top-K
            with self.metrics.batch_seconds.labels("ScorePool").time():
                self._apply(session, session.next_seq, req)  # batches numbered from 0, a header alone uncounted
        if session is None:
            raise BadInput("requests", "the stream sent no batch")
        return _top_reply(session)

    @maps_errors
    def Score(self, requests: Iterator[pb.ScoreRequest], context) -> Iterator[pb.ScoreAck]:
        for req in read_ahead(requests, active=context.is_active):  # a gone caller's queued batches: uncommitted
            with self.metrics.batch_seconds.labels("Score").time():
                session = self.sessions.get(req.session_id)
                with session.lock:
                    fresh = session.check_seq(req.seq)
                    if fresh:  # a resent committed batch is only acked
                        self._apply(session, req.seq, req)
                    ack = pb.ScoreAck(session_id=session.id, seq=session.next_seq - 1, items=session.items,
                                      acked_seq=req.seq, replayed=not fresh)
            yield ack

    @maps_errors
    def CreateSession(self, req: pb.CreateSessionRequest, context) -> pb.Session:
        spec = parse(req.strategy)
        session = self.sessions.create(spec, self._empty_top(req.k), req.session_id,
                                       feed_for(req.model, spec, self.models))
        return _session_reply(session)

    @maps_errors
    def GetSession(self, req: pb.SessionRef, context) -> pb.Session:
        return _session_reply(self.sessions.get(req.session_id))

    @maps_errors
    def GetTopK(self, req: pb.SessionRef, context) -> pb.TopK:
        session = self.sessions.get(req.session_id)
        with session.lock:
            return _top_reply(session)

    @maps_errors
    def DeleteSession(self, req: pb.SessionRef, context) -> pb.Session:
        return _session_reply(self.sessions.delete(req.session_id))

    @maps_errors
    def ScoreBatch(self, req: pb.ScoreBatchRequest, context) -> pb.ScoreBatchReply:
        with self.metrics.batch_seconds.labels("ScoreBatch").time():
            spec = parse(req.strategy)
            scored = self._score(spec, 0, req, 0, feed_for(req.model, spec, self.models))
            return pb.ScoreBatchReply(scores=self.backend.encode(scored.scores))

    @maps_errors
    def ServerInfo(self, req: pb.ServerInfoRequest, context) -> pb.ServerInfoReply:
        return self._info()

    @maps_errors
    def ReloadModels(self, req: pb.ReloadModelsRequest, context) -> pb.ServerInfoReply:
        self.models.reload()
        return self._info()

    def _info(self) -> pb.ServerInfoReply:
        return pb.ServerInfoReply(
            models=[m.info() for m in self.models.models.values()], model_errors=self.models.errors,
            version=version(), device=f"{self.backend.description}, {self.backend.name} backend",
            strategies=[pb.StrategyInfo(name=s.name, input_shape=s.shape, summary=s.summary,
                                        needs_embedding=s.needs_embedding, entropic=s.entropic)
                        for s in STRATEGIES.values()],
            limits=pb.Limits(max_message_bytes=self.config.max_message_bytes, max_k=self.config.max_k,
                             max_sessions=self.config.max_sessions))

    # --- the shared path of ScorePool and Score ---------------------------------------------

    def _apply(self, session: Session, seq: int, req: pb.ScoreRequest) -> None:
        """Score one batch and commit it to the session, or raise with the session untouched."""
        scored = self._score(session.spec, seq, req, session.items, session.feed)
        if scored.rows:  # a batch of no rows carries neither keys nor ids: it fits either kind of session
            session.check_keys(scored.keys is not None, seq)
        session.commit(seq, session.top.merged(scored.scores, scored.ids), scored.rows, scored.keys)

    def _score(self, spec: Spec, seq: int, req: Parsed, first_row: int, feed: Feed | None) -> batches.Scored:
        try:
            with self.metrics.kernel_seconds.labels(spec.strategy.name).time():
                scored = batches.score(self.backend, spec, req, first_row, feed)
        except BadInput as err:
            raise err.in_batch(seq, first_row) from None
        self.metrics.scored(spec.strategy.name, self.device, scored.rows, scored.nbytes)
        return scored

    def _empty_top(self, k: int):
        return self.backend.empty_top(check_k(k, self.config.max_k))


def _session_reply(s: Session) -> pb.Session:
    return pb.Session(session_id=s.id, strategy=s.spec.wire, k=s.top.k, next_seq=s.next_seq, items=s.items,
                      model=s.feed.wire if s.feed else None)


def _top_reply(s: Session) -> pb.TopK:
    ids = s.top.ids.tolist()
    keys = [s.keys[i] for i in ids] if s.keyed else []
    return pb.TopK(ids=[] if s.keyed else ids, scores=s.top.scores.tolist(), keys=keys, items=s.items)


def version() -> str:
    try:
        return metadata.version("poolscore")
    except metadata.PackageNotFoundError:
        return "0+unknown"
