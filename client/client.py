"""Client: score pools on a poolscore server from Python, with NumPy in and out."""
from __future__ import annotations

import secrets
from typing import Callable, Iterable, Iterator

import grpc
import numpy as np
from grpc_health.v1 import health_pb2_grpc

from poolscore.client import candidate_sets, replicas, sessions, shared_memory, sharding, tensors, wire
from poolscore.client.auth import with_token
from poolscore.client.channels import channel_args, poll_health, room
from poolscore.client.errors import BadBatch, Requests, Unavailable, mapped
from poolscore.client.outbox import Outbox
from poolscore.client.retry import Backoff, retrying
from poolscore.client.pools import Batch, as_ids, batches_of
from poolscore.client.sessions import Session
from poolscore.client.shared_arrays import SharedArrays
from poolscore.client.shared_memory import Rings
from poolscore.client.specs import TopK, model_spec, strategy_spec
from poolscore.v1 import scoring_pb2 as pb
from poolscore.v1 import scoring_pb2_grpc as pb_grpc

class Client:
    """A connection to one poolscore server; use as a context manager, or call close()."""

    def __init__(self, target: str | list[str], *, timeout: float | None = None, token: str | None = None,
                 max_message_bytes: int = 64 * 1024 * 1024, batch_bytes: int = 4 * 1024 * 1024,
                 root_certificates: bytes | None = None, private_key: bytes | None = None,
                 certificate_chain: bytes | None = None, tls: bool = False, retry_s: float = 60.0,
                 wire_dtype: str | None = None, server_name: str | None = None, failover_s: float = 5.0,
                 shared_memory: bool | None = None) -> None:
        """`token`: the server's --token, sent as a bearer token with every call. TLS: a
        `grpcs://host:port` target, `tls=True`, or any of the PEM arguments (the CA that signed
        the server's certificate; a client certificate and its key for mTLS). `retry_s`: how
        long an outage (UNAVAILABLE) is retried with backoff before it is raised (0: never).
        `wire_dtype` ("float16", "bfloat16"): logits and embeddings travel narrowed to that,
        converted a batch at a time: half the bytes on the wire (see the README for what it
        does to the ranking). `server_name`: the name the server's certificate must carry, where
        the target is an address. `shared_memory`: score_pool's batches go through POSIX shared
        memory to a server on this host (None: when the target is local and the server takes it).

        Several replicas (a list of targets, "a:1,b:2", or a `dns:///` name resolving to several
        addresses): score_pool spreads the pool over all of them and merges exactly; a replica
        unreachable for `failover_s` has its share redone by the others. A session lives on the
        replica its id picks; other calls go to the first replica."""
        settings = {name: value for name, value in locals().items() if name not in ("self", "target")}
        found, resolved_name = replicas.targets_of(target)
        self.replicas = [Client(t, **{**settings, "retry_s": min(retry_s, failover_s),
                                      "server_name": server_name or resolved_name}) for t in (found if len(found) > 1 else [])]
        target, server_name = found[0], server_name or resolved_name
        self.timeout = timeout
        tensors.narrowed(np.zeros(1, np.float32), wire_dtype)  # a bad wire_dtype is refused here, not mid-pool
        self.wire_dtype, self.shared_memory = wire_dtype, shared_memory
        self.backoff = Backoff(total_s=retry_s)
        self.reached = False  # a call has been answered: an UNAVAILABLE since is an outage, retried
        self._asked_bytes = min(batch_bytes, room(max_message_bytes))
        self._server_bytes: int | None = None  # the server's message limit, asked once
        self.target, creds, options = channel_args(target, max_message_bytes, tls, root_certificates, private_key,
                                                   certificate_chain, server_name)
        self._raw_channel = (grpc.secure_channel(self.target, creds, options=options) if creds
                             else grpc.insecure_channel(self.target, options=options))
        self._channel = with_token(self._raw_channel, token)
        self._stub = pb_grpc.PoolScorerStub(self._channel)
        # the tensor-carrying calls take bytes that wire.py built (no serializer: no copy)
        method = f"/{pb.DESCRIPTOR.services_by_name['PoolScorer'].full_name}/"
        self._score_pool = self._channel.stream_unary(method + "ScorePool", None, pb.TopK.FromString)
        self._score = self._channel.stream_stream(method + "Score", None, pb.ScoreAck.FromString)
        self._score_batch = self._channel.unary_unary(method + "ScoreBatch", None, pb.ScoreBatchReply.FromString)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._committed: dict[str, tuple[int, int]] = {}  # session → (next_seq, items) of its last ack here
        self._hosted: dict[str, bool] = {}  # session → its batches carry raw inputs
        self._rings = Rings()  # score_pool's shared-memory rings between calls
        self._shared = SharedArrays()  # shared_array()'s: their batches are sent where they lie

    @property
    def batch_bytes(self) -> int:
        """Tensor bytes per message: as asked, but under the server's message limit (ServerInfo's)."""
        if self._server_bytes is None:
            self.info()
        return min(self._asked_bytes, self._server_bytes)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for replica in self.replicas:
            replica.close()
        try:
            self._rings.close()
            self._shared.close(self)
        finally:
            self._raw_channel.close()

    def shared_array(self, shape, dtype=np.float32) -> np.ndarray:
        """A zeroed array in shared memory, which `score_pool` sends to a local server with no
        copy (client/shared_arrays.py); not to be written while a call reads it. Linux only."""
        return self._shared.new(shape, dtype)

    def free(self, array: np.ndarray) -> None:
        """Unregister a shared array and unlink its name (close() frees them all)."""
        self._shared.free(self, array)

    # --- readiness and information --------------------------------------------------------

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll health until SERVING (Unavailable after timeout), every replica's too; then make a
        local server's shared-memory ring, so that the first pool does not pay for it."""
        for replica in self.replicas:
            replica.wait_ready(timeout)
        poll_health(self._health, self.target, timeout)
        self.reached = True
        shared_memory.prepare(self, self.shared_memory)

    def info(self) -> pb.ServerInfoReply:
        reply = self._call(self._stub.ServerInfo, pb.ServerInfoRequest())
        self._server_bytes = room(reply.limits.max_message_bytes or 2**31 - 1)  # one call serves batch_bytes too
        return reply

    def reload_models(self) -> pb.ServerInfoReply:
        """Have the server re-read its model repository; the reply lists models and load errors."""
        return self._call(self._stub.ReloadModels, pb.ReloadModelsRequest())

    # --- stateless scoring ----------------------------------------------------------------

    def score_batch(self, array: np.ndarray | None, strategy: str = "entropy", *, embedding: np.ndarray | None = None,
                    ids: np.ndarray | None = None, model: str | None = None, samples: int = 0, model_seed: int = 0,
                    **options) -> np.ndarray:
        """One score per row of `array`: logits, or raw inputs for the hosted `model`.

        Scores are float32 (float64 for float64 logits or `random`). `samples` > 0 runs that
        many MC-dropout passes of the model."""
        spec = strategy_spec(strategy, options)
        hosted = model_spec(model, samples, model_seed)
        numbers = wire.SCORE_BATCH_REQUEST_INPUTS if hosted else wire.SCORE_BATCH_REQUEST
        parts = []
        whole = Batch(None if array is None else np.asarray(array), as_ids(ids), embedding)
        first = 0
        for part in batches_of([whole], self.batch_bytes):
            req = wire.encode(pb.ScoreBatchRequest(strategy=spec, model=hosted), part, numbers, self.wire_dtype)
            try:
                parts.append(tensors.decode(self._call(self._score_batch, req).scores))
            except BadBatch as err:  # the server counts rows in its request: say where that starts
                if not first:
                    raise
                raise BadBatch(err.code, f"{err} (this request held rows {first}..{first + part.rows - 1} "
                                         f"of the array)") from None
            first += part.rows
        return np.concatenate(parts) if parts else np.empty(0, np.float32)

    # --- a whole pool in one call -----------------------------------------------------------

    def score_pool(self, pool, strategy: str = "entropy", k: int = 100, *, ids=None, embedding=None, keys=None,
                   model: str | None = None, samples: int = 0, model_seed: int = 0,
                   progress: Callable[[int], None] | None = None, columns: dict | None = None,
                   labeled: np.ndarray | None = None, **options) -> TopK:
        """The top-k of a pool: an array, an iterable of (ids, logits[, embedding]), a pool file, a
        folder or glob of Parquet files, a filesystem URI (file://, s3://, an fsspec protocol), or
        a pyarrow Table or pandas DataFrame with `logits` (and `id`, `embedding`) columns.

        With `model`, the arrays are raw inputs for that hosted model (`samples` > 0: MC dropout
        passes). Batches are streamed without waiting between them; `progress(rows)` is called as
        each is handed over. `labeled`: coreset's first centers, embeddings [L, D] labeled already.
        """
        if self.replicas:
            shared = dict(progress=progress, session_options=dict(model=model, samples=samples, model_seed=model_seed,
                          **options), pool_options=dict(ids=ids, embedding=embedding, keys=keys, **(columns or {})))
            if candidate_sets.two_stage(strategy, options):
                return candidate_sets.score_two_pass(self.replicas, pool, strategy, k, labeled=labeled, **shared)
            return sharding.score_replicated(self.replicas, pool, strategy, k, **shared)
        spec = strategy_spec(strategy, options)
        hosted = model_spec(model, samples, model_seed)
        numbers = wire.SCORE_REQUEST_INPUTS if hosted else wire.SCORE_REQUEST
        with shared_memory.ring_for(self, self.shared_memory) as ring:  # None: the bytes go in the messages
            # a shared array alone takes no room in the ring: batches of half of it (copied there, should
            # the server refuse the array), 1.2x end to end against the ring's quarters
            tensors_in = (ring.capacity // 2 if self._shared.alone(pool, ids, embedding) else ring.batch_bytes) if ring else None
            limits = (tensors_in, self.batch_bytes) if ring else (self.batch_bytes, None)  # keys: in messages
            source = batches_of(pool, *limits, ids=ids, embedding=embedding, keys=keys, **(columns or {}))

            def requests() -> Iterator[bytes]:
                yield pb.ScoreRequest(strategy=spec, k=k, model=hosted).SerializeToString()  # 0 rows still answer
                yield from wire.labeled_requests(labeled, self.batch_bytes)
                for batch in source:
                    yield (ring or wire).encode(pb.ScoreRequest(), batch, numbers, self.wire_dtype)
                    if progress is not None:
                        progress(batch.rows)

            stream = Requests(requests())
            with mapped(stream):
                return TopK.from_pb(self._score_pool(stream, timeout=self.timeout))

    # --- sessions -------------------------------------------------------------------------------

    @replicas.pinned
    def create_session(self, strategy: str = "entropy", k: int = 100, *, session_id: str = "",
                       model: str | None = None, samples: int = 0, model_seed: int = 0, **options) -> str:
        """A scoring session; with `model`, its batches carry raw inputs for that hosted model."""
        # an id chosen here (128 random bits, as the server's) makes a retried create idempotent
        req = pb.CreateSessionRequest(strategy=strategy_spec(strategy, options), k=k,
                                      session_id=session_id or secrets.token_hex(16),
                                      model=model_spec(model, samples, model_seed))
        return self._call(self._stub.CreateSession, req).session_id

    def session(self, strategy: str = "entropy", k: int = 100, *, session_id: str = "",
                model: str | None = None, samples: int = 0, model_seed: int = 0, **options) -> Session:
        """A Session handle (created, or opened again when `session_id` exists already)."""
        return Session(self, self.create_session(strategy, k, session_id=session_id, model=model,
                                                 samples=samples, model_seed=model_seed, **options))

    @replicas.pinned
    def get_session(self, session_id: str) -> pb.Session:
        return self._call(self._stub.GetSession, pb.SessionRef(session_id=session_id))

    @replicas.pinned
    def top_k(self, session_id: str) -> TopK:
        return TopK.from_pb(self._call(self._stub.GetTopK, pb.SessionRef(session_id=session_id)))

    @replicas.pinned
    def delete_session(self, session_id: str) -> None:
        self._committed.pop(session_id, None)
        self._call(self._stub.DeleteSession, pb.SessionRef(session_id=session_id))

    def _get_session(self, session_id: str) -> pb.Session:
        """GetSession tried once (a caller with its own backoff retries it)."""
        with mapped():
            return self._stub.GetSession(pb.SessionRef(session_id=session_id), timeout=self.timeout)

    def _call(self, method, request):
        """A unary call, retried while UNAVAILABLE for up to retry_s (every unary RPC here is idempotent)."""
        def once():
            with mapped():
                reply = method(request, timeout=self.timeout)
            self.reached = True
            return reply
        return retrying(once, self.backoff, lambda: self.reached)

    @replicas.pinned
    def score(self, session_id: str, logits: np.ndarray | None = None, *, ids: np.ndarray | None = None,
              embedding: np.ndarray | None = None, keys: list[str] | None = None) -> pb.ScoreAck:
        """Add one batch to a session (split under the message limit); returns the last ack."""
        return self.stream(session_id, [Batch(logits, as_ids(ids), embedding, keys)])

    @replicas.pinned
    def add_labeled(self, session_id: str, labeled: np.ndarray) -> pb.ScoreAck:
        """Send a coreset session the embeddings [L, D] of items labeled already (its first
        centers), as batches of no rows at its next seqs; returns the last ack."""
        return sessions.send_labeled(self, session_id, labeled)

    @replicas.pinned
    def stream(self, session_id: str, batches: Iterable[Batch | tuple], *, resume: bool = False,
               progress: Callable[[int], None] | None = None) -> pb.ScoreAck:
        """Stream batches into a session over one Score call, pipelined; returns the last ack.

        With resume=True, `batches` is the session's whole sequence from its start (say,
        the pool re-read after a crash): batches the server already committed are skipped
        without being sent, and streaming goes on from the session's next_seq.

        A call broken by UNAVAILABLE (a restart, a drain, a cut connection) is made again
        with backoff, for up to `retry_s`, from the server's next_seq: this client keeps the
        batches the server has not yet made safe (durable with --state-dir, else committed).
        """
        start, items = sessions.resume_point(self, session_id, ask=resume)
        numbers = wire.SCORE_REQUEST_INPUTS if self._hosted[session_id] else wire.SCORE_REQUEST
        encode = lambda seq, batch: wire.encode(pb.ScoreRequest(session_id=session_id, seq=seq), batch, numbers,  # noqa: E731
                                                 self.wire_dtype)
        durable = self.info().limits.checkpoint_batches > 0
        keep_from = self._get_session(session_id).durable_seq if resume and durable else None
        outbox = Outbox(batches_of(batches, self.batch_bytes), start, encode, progress, from_start=resume,
                        keep_from=keep_from)
        ack = pb.ScoreAck(session_id=session_id, seq=start - 1, items=items)
        outage, again = self.backoff.outage(), False
        while True:
            try:
                if again:  # after a break: where the server stands now, and do we still hold it
                    start = self._get_session(session_id).next_seq
                    outbox.check_resumable(session_id, start)
                for ack in sessions.acks(self, session_id, outbox.requests(start), tolerate_replays=resume or again):
                    outbox.release(ack.durable_seq if durable else ack.seq + 1)
                    outage.recovered()
                return ack
            except Unavailable as err:
                outage.wait(err, self.reached)  # re-raises once the outage outlasts retry_s
                again = True
