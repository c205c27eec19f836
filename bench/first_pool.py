"""The first pool on a fresh server beside the steady state, as a user meets it: `poolscore
serve` with its defaults started fresh for each C, its first ScorePool timed, then the best
of the next few; with an empty inductor cache (a new machine or container) and with the
cache the first run left (a restarted server), and on the ONNX backend (no compilation).

    python bench/first_pool.py           # C = 10, 100, 1000; ~40-80 MB pools
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e import start, stop  # noqa: E402
from poolscore.client import Client  # noqa: E402

ROWS = {10: 1_000_000, 100: 200_000, 1000: 20_000}


def one_server(c: int, env: dict, extra: list[str], steady_runs: int, steady_s: float) -> tuple[float, float, float]:
    """Seconds to ready (health SERVING), the first pool's rows/s, and the steady rows/s: the
    best of the last `steady_runs` pools scored over `steady_s` seconds, so every background
    compilation the first pool started has finished."""
    logits = np.random.default_rng(c).normal(size=(ROWS[c], c)).astype(np.float32)
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "poolscore.server.cli", "serve", "--port", "0", "--metrics-port", "-1",
           "--log-level", "WARNING", *extra]
    old = dict(os.environ)
    os.environ.update(env)
    try:
        proc, target = start(cmd, r"listening on [\d.]+:(\d+)")
    finally:
        os.environ.clear()
        os.environ.update(old)
    try:
        with Client(target) as client:
            client.wait_ready(timeout=300)
            ready = time.perf_counter() - t0
            t = time.perf_counter()
            client.score_pool(logits, "entropy", k=1000)
            first = ROWS[c] / (time.perf_counter() - t)
            rates, since = [], time.perf_counter()
            while len(rates) < steady_runs or time.perf_counter() - since < steady_s:  # every compilation done
                t = time.perf_counter()
                client.score_pool(logits, "entropy", k=1000)
                rates.append(ROWS[c] / (time.perf_counter() - t))
            best = max(rates[-steady_runs:])
        return ready, first, best
    finally:
        stop(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steady-runs", type=int, default=4)
    ap.add_argument("--steady-s", type=float, default=15.0)
    ap.add_argument("--classes", default="10,100,1000")
    ap.add_argument("--scale", type=float, default=1.0, help="times the rows (a pool's fixed costs shrink beside it)")
    args = ap.parse_args()
    for c in ROWS:
        ROWS[c] = int(ROWS[c] * args.scale)
    print(f"machine: {os.cpu_count()} cores; `poolscore serve` defaults; entropy, k = 1000; one run")
    for c in map(int, args.classes.split(",")):
        cache = tempfile.mkdtemp(prefix="inductor-")  # empty: the first server compiles from scratch
        ways = [("torch, empty inductor cache", {"TORCHINDUCTOR_CACHE_DIR": cache}, []),
                ("torch, the cache left by the first", {"TORCHINDUCTOR_CACHE_DIR": cache}, []),
                ("onnx backend", {}, ["--backend", "onnx"])]
        print(f"\nC = {c}: {ROWS[c]:,} rows ({ROWS[c] * c * 4 / 1e6:.0f} MB float32)")
        for name, env, extra in ways:
            ready, first, best = one_server(c, env, extra, args.steady_runs, args.steady_s)
            print(f"  {name:<36} ready in {ready:5.1f} s   first pool {first / 1e6:6.2f} M rows/s   "
                  f"steady {best / 1e6:6.2f} M rows/s   first / steady {first / best:4.2f}x (target >= 0.7)")


if __name__ == "__main__":
    main()
