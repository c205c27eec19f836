"""A Spark DataFrame scored on poolscore: each partition streamed to the service from its
executor through `mapInArrow`, its top-k sent back, and the pool's exact top-K reduced on the
driver.

    from poolscore.client.spark import score_dataframe

    df = spark.read.parquet("s3a://bucket/pool/")   # columns: id, logits (array<float>)
    top = score_dataframe(df, "poolscore-headless.ml.svc:50051", "margin", k=1000)

A partition is one ScorePool call, whatever number of Arrow batches Spark hands it, so the
driver collects (partitions × k) rows, never the pool. Executors need the `poolscore` package
(the client and its NumPy, pyarrow and grpcio) and a route to the service.
"""
from __future__ import annotations

from functools import partial
from typing import Iterator

import pyarrow as pa

from poolscore.client.blocks import Job, reduce
from poolscore.client.specs import TopK

_ID_OUT = "id long, score double, items long"
_KEY_OUT = "key string, score double, items long"


def score_dataframe(df, target: str | list[str], strategy: str = "entropy", k: int = 100, *,
                    logits_column: str = "logits", id_column: str = "id", embedding_column: str = "embedding",
                    token: str | None = None, client: dict | None = None, **options) -> TopK:
    """The exact top-k of `df`, as one `Client.score_pool` over all its rows would give it.

    `df` holds an id column (integers or strings) and a logits column (an array, or an array of
    arrays for [T, C] or [M, C] rows); `options` are score_pool's (strategy options, `model`,
    `samples`). As many partitions are scored at once as the executors have task slots; to
    bound the load on the service, `df.coalesce(n)` first. `client`: further Client keyword
    arguments (TLS PEMs, timeouts).
    """
    from pyspark.sql.types import StringType

    job = Job(target, strategy, k, dict(logits_column=logits_column, id_column=id_column,
                                        embedding_column=embedding_column),
              client=dict(client or {}, token=token), options=options)
    job.check(df.columns)
    keyed = isinstance(df.schema[id_column].dataType, StringType)
    wanted = [c for c in (id_column, logits_column, embedding_column) if c in df.columns]
    tops = df.select(*wanted).mapInArrow(partial(_score_partition, job), _KEY_OUT if keyed else _ID_OUT)
    return reduce([tops.toArrow()], k)


def _score_partition(job: Job, records: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield from job.score(records).to_batches()
