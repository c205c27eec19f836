"""A top-K as a terminal table or a file (.csv, .jsonl, .parquet)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from poolscore.client.specs import TopK


def rows(top: TopK) -> list[tuple[int, str | int, float]]:
    names = top.keys if top.keys else top.ids.tolist()
    return [(rank, name, float(score)) for rank, (name, score) in enumerate(zip(names, top.scores), 1)]


def table(top: TopK) -> str:
    lines = [f"{'rank':>5}  {'id':<24} score", *(f"{r:>5}  {str(i):<24} {s:.6g}" for r, i, s in rows(top))]
    lines.append(f"(top {len(top)} of {top.items} items)")
    return "\n".join(lines)


FORMATS = (".csv", ".jsonl", ".ndjson", ".parquet", ".pq")


def check_out(path: Path) -> None:
    """--out, checked before any scoring: a known format, in a folder that exists."""
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"--out {path}: unknown format {path.suffix!r}; use .csv, .jsonl or .parquet")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"--out {path}: folder {path.parent} does not exist")


def write(top: TopK, path: Path) -> None:
    check_out(path)
    suffix = path.suffix.lower()
    data = rows(top)
    if suffix == ".csv":
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["rank", "id", "score"])
            w.writerows(data)
    elif suffix in (".jsonl", ".ndjson"):
        with path.open("w") as f:
            for r, i, s in data:
                f.write(json.dumps({"rank": r, "id": i, "score": s}) + "\n")
    elif suffix in (".parquet", ".pq"):
        import pyarrow as pa
        import pyarrow.parquet as pq
        id_type = pa.string() if top.keys else pa.int64()  # typed even when the top is empty
        pq.write_table(pa.table({"rank": pa.array([r for r, _, _ in data], pa.int64()),
                                 "id": pa.array([i for _, i, _ in data], id_type),
                                 "score": pa.array([s for _, _, s in data], pa.float64())}), path)
    else:
        raise ValueError(f"--out {path}: unknown format {suffix!r}; use .csv, .jsonl or .parquet")
