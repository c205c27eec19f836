"""Writes a synthetic pool of classifier logits: python examples/make_pool.py OUT [--rows N --classes C --samples T].

The format follows OUT's suffix: .npy (logits only), .npz (logits + ids), .parquet or
.arrow (an `id` column and a fixed-size-list `logits` column). With --samples T the logits
are [N, T, C], T MC-dropout or ensemble passes, for bald, predictive_entropy,
variation_ratios and the committee strategies (a list of lists in Parquet and Arrow). The
committed examples/sample_pool.npz is `python examples/make_pool.py examples/sample_pool.npz`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def make(rows: int, classes: int, seed: int, samples: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sharpness = rng.uniform(0.5, 4.0, size=(rows, 1))  # a mix of confident and unsure rows
    ids = np.arange(100_000, 100_000 + rows, dtype=np.int64)
    if not samples:
        return ids, (rng.normal(size=(rows, classes)) * sharpness).astype(np.float32)
    centre = rng.normal(size=(rows, 1, classes)) * sharpness[:, :, None]  # passes that agree more or less per row
    spread = rng.uniform(0.1, 2.0, size=(rows, 1, 1))
    return ids, (centre + spread * rng.normal(size=(rows, samples, classes))).astype(np.float32)


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
        column = pa.array(logits.reshape(-1))
        for width in reversed(logits.shape[1:]):  # [N, C] or [N, T, C]: nested fixed-size lists
            column = pa.FixedSizeListArray.from_arrays(column, width)
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
    p.add_argument("--samples", type=int, default=0, help="T > 0: logits [N, T, C]")
    a = p.parse_args()
    write(a.out, *make(a.rows, a.classes, a.seed, a.samples))
    shape = f"{a.rows} x {a.samples} x {a.classes}" if a.samples else f"{a.rows} x {a.classes}"
    print(f"wrote {shape} logits to {a.out}")
