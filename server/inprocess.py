"""`poolscore score` without --target: the server's pipeline in this process, with no server.

The same Pipeline and session State a server uses (so the same picks, ties, options and error
messages), fed the client's batches as raw tensors, on the ONNX backend: it imports in a
quarter of a second where torch takes two, and a pool file is scored before a server would
have started. Errors leave as the client's typed exceptions, as if a server had sent them."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import numpy as np
from poolscore.client.errors import PoolscoreError as ClientError, from_code
from poolscore.client.pools import Batch as ClientBatch, batches_of
from poolscore.client.specs import TopK, strategy_spec
from poolscore.server import backends
from poolscore.server.errors import PoolscoreError, status_name
from poolscore.server.ingest.dtypes import wire_of
from poolscore.server.ingest.tensors import Batch, RawTensor
from poolscore.server.pipeline import Pipeline
from poolscore.server.runtime.threads import usable_cores
from poolscore.server.sessions.session import empty_state
from poolscore.server.strategies import check_k
from poolscore.server.transport import messages as msg

BATCH_BYTES = 16 * 2**20  # in process there is no message limit: batches big enough to amortise each step
MAX_K = 10**9


def score(pool, strategy: str, k: int, *, options: dict, columns: dict | None = None,
          labeled: np.ndarray | None = None, progress: Callable[[int], None] | None = None,
          backend: str = "onnx") -> TopK:
    """The top-k of `pool` (anything Client.score_pool takes), scored here."""
    with _as_client_errors():
        # every core: in process no gRPC threads need the other half (a server's --threads default)
        scoring = backends.load(backend, "cpu", compile="off", threads=usable_cores())
        try:
            pipeline = Pipeline(scoring, _Unmeasured())
            spec = msg.spec_of(strategy_spec(strategy, options))  # parsed exactly as a server parses it
            state = empty_state(spec, check_k(k, MAX_K), scoring)
            seq = 0
            if labeled is not None:  # coreset's first centers: a batch of no rows
                labeled = np.ascontiguousarray(labeled)
                state = state.after(seq, pipeline.score(spec, Batch({"labeled": _raw(labeled)}), seq=seq))
                seq += 1
            for batch in batches_of(pool, BATCH_BYTES, **(columns or {})):
                state = state.after(seq, pipeline.score(spec, _batch(batch), seq=seq, first_row=state.items))
                seq += 1
                if progress is not None:
                    progress(batch.rows)
            return TopK.from_pb(msg.top_to_pb(state))
        finally:
            scoring.close()


class _Unmeasured:
    """The pipeline's metrics, unkept: no Prometheus in a one-shot process (nor its import)."""

    class _Timer:
        def labels(self, *_):
            return self

        def time(self):
            return contextlib.nullcontext()

    kernel_seconds = _Timer()

    class _Histogram:
        def observe(self, *_) -> None:
            pass

    score_sample = _Histogram()

    def scored(self, *_) -> None:
        pass

    def inferred(self, *_) -> None:
        pass


def _batch(b: ClientBatch) -> Batch:
    tensors = {name: _raw(np.ascontiguousarray(a)) for name, a in
               (("logits", b.logits), ("ids", b.ids), ("embedding", b.embedding)) if a is not None}
    return Batch(tensors, list(b.keys or ()))


def _raw(a: np.ndarray) -> RawTensor:
    return RawTensor(wire_of(a), tuple(int(n) for n in a.shape), memoryview(a).cast("B") if a.size else memoryview(b""))


@contextlib.contextmanager
def _as_client_errors() -> Iterator[None]:
    try:
        yield
    except PoolscoreError as err:
        raise from_code(status_name(err), str(err)) from None
    except ClientError:
        raise
