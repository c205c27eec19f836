"""Parquet and Arrow IPC pools, read record batch by record batch (zero-copy list values)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq

from poolscore.client.pools import Batch


def read(path: Path, logits_column: str, id_column: str, embedding_column: str, chunk_rows: int) -> Iterator[Batch]:
    for record in _record_batches(path, chunk_rows):
        names = record.schema.names
        if logits_column not in names:
            raise ValueError(f"{path}: no column {logits_column!r} (columns: {names})")
        logits = tensor_column(record.column(logits_column), logits_column)
        ids = keys = None
        if id_column in names:
            col = record.column(id_column)
            if pa.types.is_dictionary(col.type):  # a dictionary-encoded (categorical) id column
                col = col.dictionary_decode()
            if _is_text(col.type):
                keys = col.to_pylist()
            else:
                ids = col.to_numpy().astype(np.int64, copy=False)
        emb = tensor_column(record.column(embedding_column), embedding_column) if embedding_column in names else None
        yield Batch(logits, ids, emb, keys)


def _record_batches(path: Path, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    if path.suffix.lower() in (".parquet", ".pq"):
        yield from pq.ParquetFile(path).iter_batches(batch_size=chunk_rows)
        return
    with pa.memory_map(str(path)) as source:
        try:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)
        except pa.ArrowInvalid:  # not the file format: the streaming format
            source.seek(0)
            yield from pa.ipc.open_stream(source)


def tensor_column(col: pa.Array, name: str) -> np.ndarray:
    """A (nested) list column of numbers → an [n, ..., C] array; every row the same length."""
    shape = [len(col)]
    while pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type):
        if col.null_count:
            raise ValueError(f"column {name!r}: null rows")
        lengths = np.unique(col.value_lengths().to_numpy()) if len(col) else np.array([0])
        if len(lengths) != 1:
            raise ValueError(f"column {name!r}: rows of different lengths {lengths[:5].tolist()}")
        shape.append(int(lengths[0]))
        col = col.flatten()
    return col.to_numpy(zero_copy_only=False).reshape(shape)


def _is_text(t: pa.DataType) -> bool:
    view = getattr(pa.types, "is_string_view", lambda _: False)  # pyarrow ≥ 16
    return pa.types.is_string(t) or pa.types.is_large_string(t) or view(t)


def count_rows(path: Path) -> int | None:
    """Rows of a Parquet or Arrow IPC file from its metadata (None for the IPC stream format)."""
    if path.suffix.lower() in (".parquet", ".pq"):
        return pq.ParquetFile(path).metadata.num_rows
    with pa.memory_map(str(path)) as source:
        try:
            reader = pa.ipc.open_file(source)
        except pa.ArrowInvalid:
            return None
        return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))  # mapped, not read
