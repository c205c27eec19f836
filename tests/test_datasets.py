"""The inputs pipelines hold: Parquet dataset folders, globs, filesystem URIs (file:// and an
fsspec in-memory filesystem), `-` for an Arrow stream on stdin, pyarrow Tables and pandas
DataFrames, and [N, T, C] pools from make_pool.py. Each gives the top-K of the same pool."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import reference as ref
from poolscore.client import Client
from poolscore.client.pools import count_rows

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
import make_pool  # noqa: E402


def want(ids: np.ndarray, z: np.ndarray, k: int) -> list[int]:
    s = ref.entropy(ref.probs(z))
    return ids[np.lexsort((ids, -s))[:k]].tolist()


@pytest.fixture
def parts(tmp_path: Path):
    ids, z = make_pool.make(3000, 6, seed=4)
    folder = tmp_path / "pool"
    folder.mkdir()
    for i, lo in enumerate(range(0, 3000, 1000)):  # a dataset as pipelines write it: part files in a folder
        make_pool.write(folder / f"part-{i}.parquet", ids[lo:lo + 1000], z[lo:lo + 1000])
    return folder, ids, z


def test_a_folder_a_glob_and_a_file_uri_read_as_one_pool(parts, client: Client) -> None:
    folder, ids, z = parts
    expected = want(ids, z, 15)
    for pool in (str(folder), f"{folder}/part-*.parquet", f"file://{folder}", f"file://{folder}/part-[01].parquet"):
        top = client.score_pool(pool, "entropy", k=15)
        if "[01]" in pool:
            assert top.items == 2000 and top.ids.tolist() == want(ids[:2000], z[:2000], 15)
        else:
            assert top.items == 3000 and top.ids.tolist() == expected, pool


def test_an_fsspec_filesystem_uri(parts, client: Client) -> None:
    import fsspec

    folder, ids, z = parts
    memory = fsspec.filesystem("memory")
    for part in sorted(folder.iterdir()):
        memory.pipe(f"/pools/p/{part.name}", part.read_bytes())
    top = client.score_pool("memory://pools/p", "entropy", k=15)
    assert top.items == 3000 and top.ids.tolist() == want(ids, z, 15)


def test_tables_and_dataframes_in_memory(client: Client) -> None:
    ids, z = make_pool.make(2500, 5, seed=7)
    table = pa.table({"id": ids, "logits": pa.FixedSizeListArray.from_arrays(pa.array(z.reshape(-1)), 5)})
    assert count_rows(table) == 2500
    assert client.score_pool(table, "entropy", k=10).ids.tolist() == want(ids, z, 10)
    frame = pd.DataFrame({"id": ids, "logits": list(z)})  # a column of arrays, as pandas holds embeddings
    assert count_rows(frame) == 2500
    assert client.score_pool(frame, "entropy", k=10).ids.tolist() == want(ids, z, 10)


def test_the_cli_reads_an_arrow_stream_on_stdin_and_a_glob(parts, served_target: str, tmp_path: Path) -> None:
    folder, ids, z = parts
    table = pq.read_table(folder)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    cli = [sys.executable, "-m", "poolscore.client.cli", "score", "-", "--target", served_target, "-k", "5",
           "--out", str(tmp_path / "top.csv")]
    done = subprocess.run(cli, input=sink.getvalue().to_pybytes(), capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    got = [int(line.split(",")[1]) for line in (tmp_path / "top.csv").read_text().splitlines()[1:]]
    assert got == want(ids, z, 5)
    missing = subprocess.run([*cli[:4], f"{folder}/nothing-*.parquet", "--target", served_target],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no file matches" in missing.stderr and "Traceback" not in missing.stderr


def test_make_pool_writes_sample_axis_pools_the_sample_strategies_read(tmp_path: Path, client: Client) -> None:
    ids, z = make_pool.make(1500, 4, seed=2, samples=6)
    assert z.shape == (1500, 6, 4)
    make_pool.write(tmp_path / "mc.parquet", ids, z)
    top = client.score_pool(str(tmp_path / "mc.parquet"), "bald", k=8)
    p = ref.probs(z)
    mean = p.mean(1)
    bald = -(mean * np.log(mean)).sum(-1) + (p * np.log(p)).sum(-1).mean(1)
    assert top.ids.tolist() == ids[np.lexsort((ids, -bald))[:8]].tolist()


@pytest.fixture
def served_target(app) -> str:
    return app.target
