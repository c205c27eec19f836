"""Load: many sessions at once against one `poolscore serve` process, half of them idle streams.

    python bench/load.py [--sessions 64] [--batches 40] [--rows 2000] [--classes 10]

Half the sessions stream batches (each waits for its ack before the next, so ack latency is
what a pipeline sees); the other half hold a Score stream open and send nothing. A prober (its own process,
as a kubelet is) checks health every 20 ms throughout. It prints the health p50/p99/max, the ack p50/p99, the server's
RSS before and after, and checks every active session's top-K against NumPy.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from poolscore.client import Client
from poolscore.v1 import scoring_pb2 as pb

K = 100


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


def serve() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "poolscore.client.cli", "serve", "--port", "0", "--metrics-port",
                             "-1", "--compile", "off"], stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "listening on" in line:
            port = re.search(r":(\d+)", line.split("listening on")[1]).group(1)
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # drain the log
            return proc, f"127.0.0.1:{port}"
    raise RuntimeError("the server did not start")


def entropy_top(z: np.ndarray, ids: np.ndarray) -> list[int]:
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    s = -(p * np.log(p)).sum(1)
    return ids[np.lexsort((ids, -s))[:K]].tolist()


def active(target: str, seed: int, batches: int, rows: int, classes: int, acks: list, failures: list) -> None:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(batches * rows, classes)).astype(np.float32)
    ids = np.arange(len(z), dtype=np.int64)
    with Client(target, timeout=120) as c:
        sid = c.create_session("entropy", k=K)
        for b in range(batches):
            start = time.perf_counter()
            c.score(sid, z[b * rows:(b + 1) * rows], ids=ids[b * rows:(b + 1) * rows])
            acks.append(time.perf_counter() - start)
        got = c.top_k(sid).ids.tolist()
        c.delete_session(sid)
    # float32 kernels beside a float64 reference: equal as sets of the K best, in practice in order too
    if set(got) != set(entropy_top(z.astype(np.float64), ids)):
        failures.append(seed)


def idle(target: str, release: threading.Event, opened: threading.Barrier) -> None:
    with Client(target) as c, grpc.insecure_channel(target) as channel:
        sid = c.create_session("entropy", k=K)
        score = channel.stream_stream("/poolscore.v1.PoolScorer/Score", response_deserializer=pb.ScoreAck.FromString)
        z = np.zeros((1, 2), np.float32)

        def requests():
            yield pb.ScoreRequest(session_id=sid, seq=0, logits=pb.Tensor(dtype=pb.FP32, shape=[1, 2],
                                                                          data=z.tobytes())).SerializeToString()
            release.wait()

        call = score(requests())
        next(call)
        opened.wait()
        release.wait()
        call.cancel()
        c.delete_session(sid)


def probe(target: str, done, results, started) -> None:
    """Health checks every 20 ms until `done`; their latencies go back through `results`."""
    took = []
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while not done.is_set():
            start = time.perf_counter()
            health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            took.append(time.perf_counter() - start)
            started.set()
            time.sleep(0.02)  # the probe's period, not a wait for readiness
    results.put(took)


def run(sessions: int, batches: int, rows: int, classes: int) -> dict:
    """Serve, load, measure: the figures main() prints (tests/test_load.py runs a small one)."""
    proc, target = serve()
    try:
        with Client(target) as c:
            c.wait_ready(timeout=60)
        before = rss_mib(proc.pid)
        n_idle = sessions // 2
        release, opened = threading.Event(), threading.Barrier(n_idle + 1)
        idlers = [threading.Thread(target=idle, args=(target, release, opened)) for _ in range(n_idle)]
        for t in idlers:
            t.start()
        opened.wait()  # every idle stream is open and holds its slot
        # the prober is a process of its own, as a kubelet is: this one's 32 client threads hold its GIL
        spawn = multiprocessing.get_context("spawn")  # not fork: gRPC's threads do not survive one
        done, results, started = spawn.Event(), spawn.Queue(), spawn.Event()
        prober = spawn.Process(target=probe, args=(target, done, results, started))
        prober.start()
        started.wait(timeout=60)  # its first answer: the load starts under its watch
        acks, failures = [], []
        workers = [threading.Thread(target=active, args=(target, s, batches, rows, classes, acks, failures))
                   for s in range(sessions - n_idle)]
        start = time.perf_counter()
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        took = time.perf_counter() - start
        done.set()
        probes = results.get(timeout=60)
        prober.join()
        release.set()
        for t in idlers:
            t.join()
        return dict(took=took, idle=n_idle, active=sessions - n_idle, probes=probes, acks=acks, failures=failures,
                    rss=(before, rss_mib(proc.pid)))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=64)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--classes", type=int, default=10)
    args = ap.parse_args()
    r = run(args.sessions, args.batches, args.rows, args.classes)
    probes, acks = r["probes"], r["acks"]
    ms = lambda a, q: 1000 * float(np.quantile(a, q))  # noqa: E731
    print(f"{args.sessions} sessions ({r['active']} streaming {args.batches} x {args.rows} x {args.classes}, "
          f"{r['idle']} idle streams) in {r['took']:.1f} s on {os.cpu_count()} cores")
    print(f"  health: {len(probes)} probes, p50 {ms(probes, .5):.1f} ms, p99 {ms(probes, .99):.1f} ms, "
          f"max {1000 * max(probes):.1f} ms (limit 100 ms: {'ok' if max(probes) < 0.1 else 'OVER'})")
    print(f"  batch ack: p50 {ms(acks, .5):.1f} ms, p99 {ms(acks, .99):.1f} ms over {len(acks)} batches")
    print(f"  server RSS: {r['rss'][0]:.0f} MiB before, {r['rss'][1]:.0f} MiB after")
    print(f"  top-K exact: {r['active'] - len(r['failures'])} of {r['active']}")


if __name__ == "__main__":
    main()
