"""Pools as batches: arrays, iterables of (ids, logits[, embedding]), or files read in chunks.

Files: .npy (logits; ids are row numbers), .npz (named arrays logits, ids or keys,
embedding), Parquet and Arrow IPC (a list / fixed-size-list column of logits, an int or
string id column, an optional embedding column) read record batch by record batch, never
the whole file at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np


@dataclass(frozen=True)
class Batch:
    logits: np.ndarray | None  # [n, C] or [n, T, C]; None for `random`, which needs ids alone
    ids: np.ndarray | None = None  # [n] int64; None: the server numbers rows over the stream
    embedding: np.ndarray | None = None  # [n, D]
    keys: list[str] | None = None  # string ids instead of ids

    @property
    def rows(self) -> int:
        for part in (self.logits, self.ids, self.embedding, self.keys):
            if part is not None:
                return len(part)
        return 0

    @property
    def tensor_bytes(self) -> int:
        """Tensor bytes per row."""
        parts = [self.logits, self.embedding, self.ids]
        return sum(p[:1].nbytes for p in parts if p is not None and len(p))

    @property
    def key_bytes(self) -> int:
        """Message bytes per row a key takes, at most: the longest key's encoding, tag and length."""
        if not self.keys:
            return 0
        widest = max(map(len, self.keys)) * (1 if "".join(self.keys).isascii() else 4)  # UTF-8: ≤ 4 bytes a char
        return widest + 4

    @property
    def row_bytes(self) -> int:
        """Message bytes per row, at most: its tensors' bytes, plus the longest key's encoding."""
        return max(1, self.tensor_bytes + self.key_bytes)

    def rows_slice(self, lo: int, hi: int) -> "Batch":
        cut = lambda a: None if a is None else a[lo:hi]  # noqa: E731 - views, no copy
        return Batch(cut(self.logits), cut(self.ids), cut(self.embedding), cut(self.keys))


def split(batch: Batch, max_bytes: int, message_bytes: int | None = None) -> Iterator[Batch]:
    """Views of `batch` of at most `max_bytes` of tensor data and keys each (at least one row).
    With `message_bytes`, the tensors go elsewhere (shared memory): `max_bytes` bounds them
    and `message_bytes` the keys, which stay in the message."""
    if message_bytes is None:
        step = max(1, max_bytes // batch.row_bytes)
    else:
        step = max(1, min(max_bytes // max(1, batch.tensor_bytes), message_bytes // max(1, batch.key_bytes)))
    for lo in range(0, max(batch.rows, 1), step):
        yield batch.rows_slice(lo, lo + step)


def batches_of(pool, max_bytes: int, message_bytes: int | None = None, *, ids=None, embedding=None, keys=None,
               **columns) -> Iterator[Batch]:
    """Any pool the client takes, as batches under `max_bytes` (see split for `message_bytes`)."""
    if _through_arrow(pool):
        from poolscore.client import arrow_pools

        source: Iterable[Batch] = arrow_pools.read(pool, *_columns(**columns), chunk_rows=65536)
    elif isinstance(pool, (str, Path)):
        source = read_file(Path(pool), **columns)
    elif isinstance(pool, np.ndarray):
        source = [Batch(pool, as_ids(ids), embedding, keys)]
    else:
        source = (_as_batch(item) for item in pool)
    for batch in source:
        yield from split(batch, max_bytes, message_bytes)


def as_ids(ids) -> np.ndarray | None:
    """Ids as an array; an empty list is int64 (NumPy would make it float64, which no server takes)."""
    if ids is None:
        return None
    a = np.asarray(ids)
    return a.astype(np.int64) if a.size == 0 else a


def _as_batch(item) -> Batch:
    if isinstance(item, Batch):
        return item
    if not isinstance(item, tuple) or len(item) not in (2, 3):
        raise TypeError("a pool iterable yields (ids, logits) or (ids, logits, embedding) tuples")
    ids, logits, *emb = item
    keyed = len(ids) and isinstance(ids[0], str)
    return Batch(None if logits is None else np.asarray(logits), None if keyed else as_ids(ids),
                 emb[0] if emb else None, list(ids) if keyed else None)


def read_file(path: Path, logits_column: str = "logits", id_column: str = "id",
              embedding_column: str = "embedding", chunk_rows: int = 65536) -> Iterator[Batch]:
    if not path.exists():
        raise FileNotFoundError(f"pool file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        yield Batch(np.load(path, mmap_mode="r"))  # split() slices the mapping lazily
    elif suffix == ".npz":
        yield _npz_batch(np.load(path), logits_column)
    elif suffix in (".parquet", ".pq", ".arrow", ".feather", ".ipc"):
        from poolscore.client import arrow_pools  # pyarrow only when a table is read
        yield from arrow_pools.read(path, logits_column, id_column, embedding_column, chunk_rows)
    else:
        raise ValueError(f"{path}: unknown pool format {suffix!r}; use .npy, .npz, .parquet or .arrow")


def _npz_batch(npz, logits_column: str) -> Batch:
    names = set(npz.files)
    if logits_column not in names:
        raise ValueError(f"npz pool has no {logits_column!r} array (it has {sorted(names)})")
    keys = [str(k) for k in npz["keys"]] if "keys" in names else None
    ids = npz["ids"] if "ids" in names else None
    return Batch(npz[logits_column], ids, npz["embedding"] if "embedding" in names else None, keys)


def check_file(pool, **columns) -> None:
    """Read a pool's first batch: a missing file, an unknown format, a missing column or npz
    array is named now, before a server is started or called (ValueError / FileNotFoundError).
    `-` (stdin) is not read ahead: it can be read only once."""
    if str(pool) == "-":
        return
    if _through_arrow(pool):
        from poolscore.client import arrow_pools

        for _ in arrow_pools.read(pool, *_columns(**columns), chunk_rows=1):
            return
        return
    for _ in read_file(Path(pool), chunk_rows=1, **columns):
        return


def _through_arrow(pool) -> bool:
    """Folders, globs, URIs, stdin and in-memory tables are read by pyarrow (imported only then)."""
    if isinstance(pool, (str, Path)) and not ("://" in str(pool) or str(pool) == "-" or any(c in str(pool) for c in "*?[")
                                               or Path(pool).is_dir()):
        return False
    if isinstance(pool, np.ndarray):
        return False
    from poolscore.client import arrow_pools

    return arrow_pools.is_dataset(pool)


def _columns(logits_column: str = "logits", id_column: str = "id", embedding_column: str = "embedding") -> tuple[str, str, str]:
    return logits_column, id_column, embedding_column


def count_rows(pool, logits_column: str = "logits") -> int | None:
    """Rows in a pool when known without reading it (progress bars), else None."""
    if isinstance(pool, np.ndarray):
        return len(pool)
    if hasattr(pool, "num_rows") or type(pool).__name__ == "DataFrame":  # a pyarrow Table, a pandas DataFrame
        return getattr(pool, "num_rows", None) or len(pool)
    if not isinstance(pool, (str, Path)) or not Path(pool).is_file():
        return None
    path = Path(pool)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path, mmap_mode="r").shape[0]
    if suffix == ".npz":
        return _npz_rows(path, logits_column)
    if suffix in (".parquet", ".pq", ".arrow", ".feather", ".ipc"):
        from poolscore.client import arrow_pools
        return arrow_pools.count_rows(path)
    return None


def _npz_rows(path: Path, name: str) -> int | None:
    """An .npz member's row count from its .npy header alone (np.load would read the array)."""
    import zipfile
    try:
        with zipfile.ZipFile(path) as z, z.open(f"{name}.npy") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape = read_header(f)[0]
    except (KeyError, ValueError, OSError, zipfile.BadZipFile):
        return None
    return shape[0] if shape else None
