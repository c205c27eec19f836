"""Ray Data and Spark, for real in local mode: a distributed pool scored block by block on a real
server gives the top-K one `Client.score_pool` over the same rows gives, ids, keys and scores."""
from __future__ import annotations

import os
import sys

import numpy as np
import pyarrow as pa
import pytest

from poolscore.client import Client

N, C, T, K = 3000, 6, 4, 40


def pool_table(rng: np.random.Generator, *, keyed: bool = False, samples: bool = False) -> pa.Table:
    """A shuffled-id pool with float32 logits ([N, C], or [N, T, C] with `samples`)."""
    logits = rng.normal(0, 2, (N, T, C) if samples else (N, C)).astype(np.float32)
    ids = rng.permutation(10 * N)[:N].astype(np.int64)
    flat = pa.array(logits.reshape(-1))
    column = pa.FixedSizeListArray.from_arrays(flat, C)
    if samples:
        column = pa.FixedSizeListArray.from_arrays(column, T)
    id_column = pa.array([f"item-{i}" for i in ids]) if keyed else pa.array(ids)
    return pa.table({"id": id_column, "logits": column, "weight": np.ones(N)})


def direct(app, table: pa.Table, strategy: str, **options):
    with Client(app.target, timeout=60) as c:
        return c.score_pool(table, strategy, K, **options)


# --- Ray ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_local():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024 * 1024, log_to_driver=False,
             configure_logging=False, runtime_env={"env_vars": {"POOLSCORE_DEVICE": "cpu"}})
    yield ray
    ray.shutdown()


@pytest.mark.parametrize("strategy, keyed, samples", [("entropy", False, False), ("margin", True, False),
                                                      ("bald", False, True)])
def test_ray_dataset_gives_the_plain_clients_top_k(app, ray_local, rng, strategy, keyed, samples):
    import ray.data

    from poolscore.client.ray import score_dataset

    table = pool_table(rng, keyed=keyed, samples=samples)
    ds = ray.data.from_arrow(table).repartition(7)
    top = score_dataset(ds, app.target, strategy, K)
    want = direct(app, table, strategy)
    assert top == want and top.items == N
    assert (len(top.keys) if keyed else len(top.ids)) == K


def test_ray_options_and_column_names_reach_the_service(app, ray_local, rng):
    import ray.data

    from poolscore.client.ray import score_dataset

    table = pool_table(rng).rename_columns(["item", "scores", "weight"])
    ds = ray.data.from_arrow(table).repartition(3)
    top = score_dataset(ds, app.target, "entropy", K, logits_column="scores", id_column="item", temperature=3.0,
                        concurrency=2)
    assert top == direct(app, table, "entropy", columns=dict(logits_column="scores", id_column="item"),
                         temperature=3.0)
    assert top != direct(app, table, "entropy", columns=dict(logits_column="scores", id_column="item"))


def test_ray_refuses_before_any_work(ray_local, rng):
    import ray.data

    from poolscore.client.ray import score_dataset

    ds = ray.data.from_arrow(pool_table(rng).drop_columns(["id"]))
    with pytest.raises(ValueError, match="no column 'id'"):
        score_dataset(ds, "127.0.0.1:1", "entropy", K)  # no server there: refused before a call
    with pytest.raises(ValueError, match="coreset selects over the whole pool"):
        score_dataset(ray.data.from_arrow(pool_table(rng)), "127.0.0.1:1", "coreset", K)


def test_ray_bad_block_fails_with_the_servers_reason(app, ray_local, rng):
    import ray.data

    from poolscore.client.ray import score_dataset

    table = pool_table(rng)
    ds = ray.data.from_arrow(table).repartition(2)
    with pytest.raises(Exception, match="unknown strategy option|temperature"):
        score_dataset(ds, app.target, "entropy", K, temperature=-1.0)


# --- Spark ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def spark():
    os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("poolscore-tests")
               .config("spark.ui.enabled", "false").config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.driver.host", "127.0.0.1").config("spark.sql.shuffle.partitions", "4")
               .config("spark.sql.execution.arrow.maxRecordsPerBatch", "500")  # several batches a partition
               .config("spark.executorEnv.POOLSCORE_DEVICE", "cpu").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.mark.parametrize("strategy, keyed, samples", [("entropy", False, False), ("ratio", True, False),
                                                      ("bald", False, True)])
def test_spark_dataframe_gives_the_plain_clients_top_k(app, spark, rng, strategy, keyed, samples):
    from poolscore.client.spark import score_dataframe

    table = pool_table(rng, keyed=keyed, samples=samples)
    df = spark.createDataFrame(table).repartition(5)
    top = score_dataframe(df, app.target, strategy, K)
    assert top == direct(app, table, strategy) and top.items == N


def test_spark_refuses_before_any_work(spark, rng):
    from poolscore.client.spark import score_dataframe

    df = spark.createDataFrame(pool_table(rng))
    with pytest.raises(ValueError, match="no column 'logit'"):
        score_dataframe(df, "127.0.0.1:1", "entropy", K, logits_column="logit")
    with pytest.raises(ValueError, match="badge selects over the whole pool"):
        score_dataframe(df, "127.0.0.1:1", "badge", K)
