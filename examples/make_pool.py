"""Writes a synthetic pool of classifier logits: python examples/make_pool.py OUT [--rows N --classes C].

The format follows OUT's suffix: .npy (logits only), .npz (logits + ids), .parquet or
.arrow (an `id` column and a fixed-size-list `logits` column). The committed
examples/sample_pool.npz is `python examples/make_pool.py examples/sample_pool.npz`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def make(rows: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sharpness = rng.uniform(0.5, 4.0, size=(rows, 1))  # a mix of confident and unsure rows
    return np.arange(100_000, 100_000 + rows, dtype=np.int64), (rng.normal(size=(rows, classes)) * sharpness).astype(np.float32)


def write(path: Path, ids: np.ndarray, logits: np.ndarray) -> None:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        np.save(path, logits)
    elif suffix == ".npz":
        np.savez_compressed(path, logits=logits, ids=ids)
    else:
        import pyarrow as pa
        import pyarrow.ipc
        import pyarrow.parquet as pq
        column = pa.FixedSizeListArray.from_arrays(pa.array(logits.reshape(-1)), logits.shape[1])
        table = pa.table({"id": ids, "logits": column})
        if suffix in (".parquet", ".pq"):
            pq.write_table(table, path, row_group_size=8192)
        else:
            with pa.ipc.new_file(str(path), table.schema) as w:
                w.write_table(table, max_chunksize=8192)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--rows", type=int, default=5000)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    write(a.out, *make(a.rows, a.classes, a.seed))
    print(f"wrote {a.rows} x {a.classes} logits to {a.out}")
