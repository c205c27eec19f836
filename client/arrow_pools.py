"""Parquet and Arrow IPC pools, read record batch by record batch (zero-copy list values)."""
from __future__ import annotations

import fnmatch
import glob
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.ipc
import pyarrow.parquet as pq

from poolscore.client.pools import Batch


def read(path, logits_column: str, id_column: str, embedding_column: str, chunk_rows: int) -> Iterator[Batch]:
    """Batches of a Parquet or Arrow IPC file, a dataset (a folder, a glob, a filesystem URI),
    `-` (an Arrow IPC stream on stdin), or an in-memory pyarrow Table or pandas DataFrame."""
    for record in _records(path, chunk_rows):
        names = record.schema.names
        if logits_column not in names:
            raise ValueError(f"{_shown(path)}: no column {logits_column!r} (columns: {names})")
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


def is_dataset(pool) -> bool:
    """A pool read through pyarrow rather than as one local file: `-`, a URI, a folder, a glob,
    a pyarrow Table or RecordBatch, a pandas DataFrame."""
    if isinstance(pool, (pa.Table, pa.RecordBatch)) or type(pool).__name__ == "DataFrame":
        return True
    if not isinstance(pool, (str, Path)):
        return False
    text = str(pool)
    return text == "-" or "://" in text or any(c in text for c in "*?[") or Path(text).is_dir()


def _records(pool, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    if isinstance(pool, pa.RecordBatch):
        yield pool
    elif isinstance(pool, pa.Table):
        yield from pool.to_batches(max_chunksize=chunk_rows)
    elif type(pool).__name__ == "DataFrame":  # pandas: converted once, its list columns as list arrays
        yield from pa.Table.from_pandas(pool, preserve_index=False).to_batches(max_chunksize=chunk_rows)
    elif str(pool) == "-":
        yield from pa.ipc.open_stream(sys.stdin.buffer)
    elif isinstance(pool, Path) and pool.is_file():
        yield from _record_batches(pool, chunk_rows)
    else:
        yield from _dataset(str(pool)).to_batches(batch_size=chunk_rows)


def _dataset(text: str) -> pads.Dataset:
    """A folder, a glob or a URI (file://, s3://, gs://, hdfs://, or any fsspec protocol such as
    memory://) as a pyarrow dataset of Parquet (or, by suffix, Arrow IPC) files."""
    fs, where = None, text
    if "://" in text:
        try:
            fs, where = pafs.FileSystem.from_uri(text)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # not a scheme pyarrow knows: fsspec's, if installed
            try:
                import fsspec
            except ImportError:
                raise ValueError(f"{text}: pyarrow does not know this filesystem, and fsspec is not installed") from None
            spec_fs, where = fsspec.core.url_to_fs(text)
            fs = pafs.PyFileSystem(pafs.FSSpecHandler(spec_fs))
    if any(c in where for c in "*?["):  # a glob: the files it matches, in order
        files = sorted(_glob(fs, where))
        if not files:
            raise FileNotFoundError(f"pool {text}: no file matches")
        where = files
    fmt = "ipc" if str(where if isinstance(where, str) else where[0]).lower().endswith((".arrow", ".feather", ".ipc")) \
        else "parquet"
    try:
        return pads.dataset(where, format=fmt, filesystem=fs)
    except FileNotFoundError:
        raise FileNotFoundError(f"pool {text} does not exist") from None
    except pa.ArrowInvalid as err:
        raise ValueError(f"pool {text}: {err}") from None


def _glob(fs, pattern: str) -> list[str]:
    if fs is None:
        return glob.glob(pattern)
    base = pattern[:min(pattern.find(c) for c in "*?[" if c in pattern)].rsplit("/", 1)[0] or "/"
    found = fs.get_file_info(pafs.FileSelector(base, recursive=True))
    return [f.path for f in found if f.type == pafs.FileType.File and fnmatch.fnmatch(f.path, pattern)]


def _shown(pool) -> str:
    return str(pool) if isinstance(pool, (str, Path)) else type(pool).__name__


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
