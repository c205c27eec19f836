"""What durable sessions cost: a pool streamed into a session on a server with --state-dir,
beside the same pool into a server without one, in the same run (the limit: ≤ 10% slower at
4 MiB batches). Then the store itself: one checkpoint as write-fsync-rename files against
SQLite in WAL mode, for a top-K's state and a candidate set's.

    python bench/durable.py            # 2M x 10 float32 logits, k = 1000; a coreset session too
    python bench/durable.py --quick    # a quarter of the rows
"""
from __future__ import annotations

import argparse
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from poolscore.client import Batch, Client

LIMIT = 0.10  # the bound on the throughput checkpointing may cost


def server(state_dir: str | None) -> tuple[subprocess.Popen, str, int | None]:
    """`poolscore serve` in its own process: (process, target, metrics port)."""
    cmd = [sys.executable, "-m", "poolscore.client.cli", "serve", "--port", "0", "--metrics-port", "0",
           "--compile", "sync"]  # compiled before it listens: the two servers never compile while measured
    proc = subprocess.Popen(cmd + (["--state-dir", state_dir] if state_dir else []), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        found = re.search(r"listening on [\d.]+:(\d+)(?:, metrics on http://[\d.]+:(\d+))?", line)
        if found:
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # its log, drained
            return proc, f"127.0.0.1:{found.group(1)}", int(found.group(2)) if found.group(2) else None
    raise RuntimeError("poolscore serve exited before listening")


def stream_once(target: str, strategy: str, batches: list[Batch], k: int, **options) -> float:
    with Client(target) as c:
        sid = c.create_session(strategy, k=k, **options)
        start = time.perf_counter()
        c.stream(sid, batches)
        c.top_k(sid)
        seconds = time.perf_counter() - start
        c.delete_session(sid)
    return seconds


def checkpoint_figures(port: int | None) -> str:
    if port is None:
        return "no metrics"
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    value = lambda name: float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))  # noqa: E731
    count = value("poolscore_checkpoint_duration_seconds_count")
    if not count:
        return "no checkpoints"
    return (f"{int(count)} checkpoints, mean {1e3 * value('poolscore_checkpoint_duration_seconds_sum') / count:.2f} ms, "
            f"{value('poolscore_checkpoint_bytes_total') / count / 2**10:,.0f} KiB each")


def end_to_end(rows: int, repeats: int) -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(rows, 10)).astype(np.float32)
    per = 4 * 2**20 // (10 * 4)  # 4 MiB of logits per batch
    batches = [Batch(z[i:i + per], np.arange(i, min(rows, i + per))) for i in range(0, rows, per)]
    emb_rows = rows // 10
    emb = rng.normal(size=(emb_rows, 128)).astype(np.float32)
    per_e = 4 * 2**20 // (128 * 4 + 40)
    set_batches = [Batch(z[i:min(emb_rows, i + per_e)], np.arange(i, min(emb_rows, i + per_e)), emb[i:i + per_e])
                   for i in range(0, emb_rows, per_e)]
    cases = [("entropy k=1000", "entropy", batches, 1000, {}, rows),
             ("coreset M=10000 D=128", "coreset", set_batches, 1000, {"candidates": 10000}, emb_rows)]
    with tempfile.TemporaryDirectory() as state:
        plain, durable = server(None), server(state)
        try:
            for name, strategy, bs, k, options, n in cases:
                times = {"plain": [], "durable": []}
                for _ in range(repeats):  # alternated, so drift on the machine hits both alike
                    for which, (_, target, _) in (("plain", plain), ("durable", durable)):
                        times[which].append(stream_once(target, strategy, bs, k, **options))
                first = {w: t[0] for w, t in times.items()}
                best = {w: min(t) for w, t in times.items()}
                ratio = best["plain"] / best["durable"]
                print(f"{name}: {n:,} rows in {len(bs)} batches of 4 MiB")
                print(f"  without a state dir: first {n / first['plain'] / 1e6:.2f} M rows/s, steady {n / best['plain'] / 1e6:.2f}")
                print(f"  with --state-dir:    first {n / first['durable'] / 1e6:.2f} M rows/s, steady {n / best['durable'] / 1e6:.2f}")
                verdict = "within" if 1 - ratio <= LIMIT else "OVER"
                print(f"  durable / plain: {ratio:.2f}x (cost {100 * (1 - ratio):.1f}%, {verdict} the {LIMIT:.0%} limit)")
            print(f"  server with --state-dir: {checkpoint_figures(durable[2])}")
        finally:
            for proc, _, _ in (plain, durable):
                proc.terminate()
                proc.wait(timeout=60)


def store_choice(repeats: int) -> None:
    """One checkpoint, the two ways the issue names: a top-K's state (~40 KiB) and a candidate set's (~20 MiB)."""
    print("one checkpoint, fsynced (best of", repeats, "):")
    for label, size in (("top-K state, 40 KiB", 40 * 2**10), ("candidate set, 20 MiB", 20 * 2**20)):
        blob = os.urandom(size)
        with tempfile.TemporaryDirectory() as root:
            path = Path(root) / "s.session"

            def files():
                partial = path.with_name(path.name + ".partial")
                with open(partial, "wb") as out:
                    out.write(blob)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(partial, path)
                fd = os.open(root, os.O_RDONLY)
                os.fsync(fd)
                os.close(fd)

            db = sqlite3.connect(Path(root) / "state.db", isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("CREATE TABLE s (id TEXT PRIMARY KEY, state BLOB)")

            def sqlite():
                db.execute("INSERT OR REPLACE INTO s VALUES ('s', ?)", (blob,))

            t_files = _best(files, repeats)
            t_sql = _best(sqlite, repeats)
            db.close()
        print(f"  {label}: files {1e3 * t_files:.2f} ms, SQLite WAL {1e3 * t_sql:.2f} ms "
              f"(files / SQLite {t_files / t_sql:.2f}x)")


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rows = 500_000 if args.quick else 2_000_000
    store_choice(3 if args.quick else 10)
    end_to_end(rows, 3 if args.quick else 5)


if __name__ == "__main__":
    main()
