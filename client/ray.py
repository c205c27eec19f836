"""A Ray Dataset scored on poolscore: each block streamed to the service by a Ray task, its
top-k sent back, and the pool's exact top-K reduced on the driver.

    import ray.data
    from poolscore.client.ray import score_dataset

    ds = ray.data.read_parquet("s3://bucket/pool/")   # columns: id, logits (list<float>)
    top = score_dataset(ds, "poolscore-headless.ml.svc:50051", "margin", k=1000)

A block is one ScorePool call, so the service holds one small top-K per block in flight and the
driver (blocks × k) rows, never the pool. The target may name several replicas (a list, or a
`dns:///` name of the headless Service): each block's call is then spread over them too.
"""
from __future__ import annotations

import ray

from poolscore.client.blocks import Job, reduce
from poolscore.client.specs import TopK


def score_dataset(ds: "ray.data.Dataset", target: str | list[str], strategy: str = "entropy", k: int = 100, *,
                  logits_column: str = "logits", id_column: str = "id", embedding_column: str = "embedding",
                  concurrency: int | None = None, token: str | None = None, client: dict | None = None,
                  **options) -> TopK:
    """The exact top-k of `ds`, as one `Client.score_pool` over all its rows would give it.

    `ds` holds an id column (integers or strings) and a logits column (a list, or a list of
    lists for [T, C] or [M, C] rows); `options` are score_pool's (strategy options, `model`,
    `samples`). `concurrency`: at most this many blocks in flight (Ray's default: as many as
    the cluster's CPUs allow). `client`: further Client keyword arguments (TLS PEMs, timeouts).
    """
    job = Job(target, strategy, k, dict(logits_column=logits_column, id_column=id_column,
                                        embedding_column=embedding_column),
              client=dict(client or {}, token=token), options=options)
    job.check(ds.schema().names)
    # Ray tasks, not actors: a block's work is one call, and a task starts in milliseconds
    scored = ds.map_batches(_score_block, fn_args=(job,), batch_format="pyarrow", batch_size=None,
                            zero_copy_batch=True, concurrency=concurrency)
    return reduce(ray.get(scored.to_arrow_refs()), k)


def _score_block(block, job: Job):
    return job.score([block])
