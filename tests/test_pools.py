"""Pool files: row counts for the progress bar, dictionary-encoded ids, typed empty outputs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq

from poolscore.client import Client, TopK
from poolscore.client.pools import count_rows
from poolscore.client import results


def _table(rows: int) -> pa.Table:
    logits = np.random.default_rng(0).normal(size=(rows, 3)).astype(np.float32)
    return pa.table({"logits": pa.array(list(logits), pa.list_(pa.float32())),
                     "id": pa.array([f"img-{i % 7}-{i}" for i in range(rows)]).dictionary_encode()})


def test_row_counts_come_from_headers_for_every_format(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((11, 3), np.float32))
    with open(tmp_path / "b.NPZ", "wb") as f:  # any case of the suffix; compressed members too
        np.savez_compressed(f, logits=np.zeros((12, 3), np.float32), ids=np.arange(12))
    pq.write_table(_table(13), tmp_path / "c.parquet")
    feather.write_feather(_table(14), tmp_path / "d.arrow")
    with pa.OSFile(str(tmp_path / "e.arrow"), "wb") as sink, pa.ipc.new_stream(sink, _table(1).schema) as w:
        w.write_table(_table(15))
    counts = [count_rows(str(tmp_path / n)) for n in ("a.npy", "b.NPZ", "c.parquet", "d.arrow", "e.arrow")]
    assert counts == [11, 12, 13, 14, None]  # the IPC stream format says its length only when read
    assert count_rows(str(tmp_path / "b.NPZ"), "scores") is None and count_rows(str(tmp_path / "missing.npy")) is None


def test_a_dictionary_encoded_id_column_gives_string_keys(tmp_path: Path, client: Client) -> None:
    table = _table(500)
    pq.write_table(table, tmp_path / "dict.parquet")
    top = client.score_pool(str(tmp_path / "dict.parquet"), "entropy", k=5)
    keys = table.column("id").to_pylist()
    assert len(top.keys) == 5 and set(top.keys) <= set(keys) and top.items == 500


def test_an_empty_top_is_written_with_typed_columns(tmp_path: Path) -> None:
    results.write(TopK(np.empty(0, np.int64), np.empty(0)), tmp_path / "top.parquet")
    schema = pq.read_schema(tmp_path / "top.parquet")
    assert [schema.field(n).type for n in ("rank", "id", "score")] == [pa.int64(), pa.int64(), pa.float64()]
    keyed = TopK(np.empty(0, np.int64), np.array([0.5]), ["a"])
    results.write(keyed, tmp_path / "keyed.parquet")
    assert pq.read_schema(tmp_path / "keyed.parquet").field("id").type == pa.string()
