"""Scale-out: one pool scored by 1, 2 and 3 local replicas (server processes), merged exactly.

Prints rows/s for each replica count (the first pool on fresh servers, and the steady best),
the speed-up over one replica, what the exact merge costs, and a sizing on paper: the replicas
and network a 1-billion-row pool at C=100 needs to finish in an hour, from the measured
per-replica rate. On a 2-core machine the curve flattens at two: the client and every server
share the cores (the core count is printed).

    python bench/scaleout.py           # 2M x 10 float32 logits, entropy, k = 1000
    python bench/scaleout.py --quick   # a tenth of the rows
"""
from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import time

import numpy as np

from poolscore.client import Client, TopK, merge

STRATEGY, K = "entropy", 1000


def replica(host: str, port: int) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "poolscore.client.cli", "serve", "--host", host, "--port", str(port),
           "--metrics-port", "-1"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        found = re.search(r"listening on [\d.]+:(\d+)", line)
        if found:
            target = f"{host}:{found.group(1)}"
            with Client(target) as c:
                c.wait_ready(timeout=120)
            return proc, target
    raise RuntimeError(f"the replica on {host} exited before listening")


def rate(targets: list[str], logits: np.ndarray, repeats: int) -> tuple[float, float, TopK]:
    """(first pool's rows/s, best rows/s of the rest, the top-K) through one Client."""
    times, top = [], None
    with Client(targets) as client:
        for _ in range(repeats + 1):
            t = time.perf_counter()
            top = client.score_pool(logits, STRATEGY, k=K)
            times.append(time.perf_counter() - t)
    return len(logits) / times[0], len(logits) / min(times[1:]), top


def merge_cost(parts: int, repeats: int = 50) -> float:
    rng = np.random.default_rng(0)
    tops = [TopK(rng.integers(0, 10**9, K), np.sort(rng.random(K))[::-1], [],
                 10**6) for _ in range(parts)]
    t = time.perf_counter()
    for _ in range(repeats):
        merge(tops, K)
    return (time.perf_counter() - t) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    n, c = (200_000 if args.quick else 2_000_000), 10
    logits = np.random.default_rng(1).normal(size=(n, c)).astype(np.float32)
    first, target = replica("127.0.0.1", 0)
    port = int(target.rsplit(":", 1)[1])
    procs, targets = [first], [target]
    try:
        for host in ("127.0.0.2", "127.0.0.3"):
            proc, t = replica(host, port)
            procs.append(proc)
            targets.append(t)
        print(f"{n:,} x {c} float32 logits, {STRATEGY}, k = {K}; {os.cpu_count()} cores shared by the client and "
              f"every replica")
        print(f"{'replicas':>8} {'first rows/s':>14} {'steady rows/s':>14} {'vs 1 replica':>13} {'same ids':>9} {'max |Δscore|':>13}")
        base, one_top = None, None
        for count in (1, 2, 3):
            cold, steady, top = rate(targets[:count], logits, args.repeats)
            base, one_top = base or steady, one_top or top
            print(f"{count:>8} {cold:>14,.0f} {steady:>14,.0f} {steady / base:>12.2f}x {str(np.array_equal(top.ids, one_top.ids)):>9} "
              f"{np.abs(top.scores - one_top.scores).max():>13.1e}")
        for parts in (2, 3, 16):
            print(f"merge of {parts} top-{K}s: {merge_cost(parts) * 1e3:.2f} ms")
        sizing(base)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)


def sizing(per_replica_c10: float) -> None:
    """On paper: a 1e9-row pool at C=100 in an hour, from one replica's measured rate at C=10
    (scoring cost scales with the bytes, C=100 being ten times the bytes per row)."""
    rows, classes, seconds = 1e9, 100, 3600
    per_replica = per_replica_c10 * 10 / classes
    need = math.ceil(rows / seconds / per_replica)
    gbits = rows * classes * 4 * 8 / seconds / 1e9
    print(f"on paper: 1e9 rows x C=100 float32 in 1 h = {rows / seconds:,.0f} rows/s, {gbits:.1f} Gbit/s into the "
          f"replicas ({gbits / 2:.1f} with float16 on the wire); at {per_replica:,.0f} rows/s per replica (this "
          f"machine's rate scaled by bytes) that is {need} replica(s) of this size, and a network that carries it")


if __name__ == "__main__":
    main()
