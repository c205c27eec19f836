"""Transports, in one run, for C = 10, 100, 1000: the same pool scored end to end over TCP
loopback, a Unix socket, shared memory (copied into the client's ring, and from a shared array
the producer wrote: no copy) and float16 on the wire, beside a bare gRPC stream of
the same bytes to a server that does nothing (the wire's limit), careful NumPy in-process and
baal's public API. Servers run in their own processes, as deployed.

    python bench/transport.py            # ~120 MB of float32 logits per C, k = 1000
    python bench/transport.py --quick    # a quarter of that
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e import measured, messages, peer_top, start, stop  # noqa: E402
from peers import PeerInput, peers_for  # noqa: E402
from poolscore.client import Client  # noqa: E402

STRATEGY, K = "entropy", 1000


def numpy_entropy_top(logits: np.ndarray) -> np.ndarray:
    """What a careful user writes in-process: a stable log-softmax in float32, entropy, argpartition."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    h = np.log(s[:, 0]) - (e * z).sum(axis=1) / s[:, 0]
    top = np.argpartition(-h, K)[:K]
    return top[np.lexsort((top, -h[top]))]


def run(c: int, mb: float, target: str, uds: str, sink: tuple[str, int], pid: int, repeats: int) -> None:
    n = int(mb * 1e6 / (4 * c))
    logits = np.random.default_rng(c).normal(size=(n, c)).astype(np.float32)
    gb = logits.nbytes / 1e9
    ways = {
        "TCP loopback": dict(target=target, shared_memory=False),
        "Unix socket": dict(target=uds, shared_memory=False),
        "shared memory": dict(target=target, shared_memory=True),
        "shared array (no copy)": dict(target=target, shared_memory=True),
        "TCP, float16 on the wire": dict(target=target, shared_memory=False, wire_dtype="float16"),
    }
    best: dict[str, float] = {}
    first: dict[str, float] = {}
    msgs = messages(logits, 4 << 20)
    # one client per way, as a pipeline holds one: its first call (a new channel, a new ring) is
    # quoted beside the steady state
    clients = {name: Client(how["target"], max_message_bytes=256 << 20,
                            **{k: v for k, v in how.items() if k != "target"}) for name, how in ways.items()}
    # the pool as a producer that writes into shared memory holds it: client.shared_array
    inputs = {name: logits for name in clients}
    inputs["shared array (no copy)"] = clients["shared array (no copy)"].shared_array(logits.shape)
    inputs["shared array (no copy)"][:] = logits
    with grpc.insecure_channel(sink[0], options=[("grpc.max_send_message_length", 1 << 30)]) as ch:
        drain = ch.stream_unary("/bench.Sink/Drain")
        for _ in range(repeats + 1):  # interleaved: a machine that drifts slows every way alike
            for name, client in clients.items():
                wall, *_ = measured(lambda: client.score_pool(inputs[name], STRATEGY, k=K), pid)
                if name not in first:
                    first[name] = wall
                else:
                    best[name] = min(best.get(name, wall), wall)
            t = time.perf_counter()
            drain(iter(msgs))
            best["bare"] = min(best.get("bare", 1e9), time.perf_counter() - t)
    for client in clients.values():
        client.close()
    peers = {"numpy": numpy_entropy_top}
    baal = peers_for(STRATEGY).get("baal")
    if baal is not None:
        peers["baal"] = lambda x: peer_top(baal, PeerInput(x, np.arange(n)))
    for _ in range(repeats):
        for name, peer in peers.items():
            t = time.perf_counter()
            peer(logits)
            best[name] = min(best.get(name, 1e9), time.perf_counter() - t)
    print(f"\nC = {c}: {n:,} rows, {gb * 1e3:.0f} MB float32, {STRATEGY}, k = {K}")
    bare = best["bare"]
    for name, t in best.items():
        label = {"bare": "bare gRPC stream, no work (the wire)", "numpy": "NumPy in-process (careful)",
                 "baal": "baal public API in-process"}.get(name, f"poolscore, {name}")
        extra = f"   first call {gb / first[name]:5.2f} GB/s" if name in first else ""
        print(f"  {label:<38} {n / t / 1e6:7.2f} M rows/s {gb / t:6.2f} GB/s  {bare / t:5.2f}x the wire{extra}")
    shm, array, tcp = best["shared memory"], best["shared array (no copy)"], best["TCP loopback"]
    print(f"  -> shared memory / bare gRPC: ring {bare / shm:.2f}x, shared array {bare / array:.2f}x (target >= 3 at "
          f"C >= 100); TCP / bare: {bare / tcp:.2f}x (target >= 0.9); shared array / NumPy in-process: "
          f"{best['numpy'] / array:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a quarter of the bytes")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--server-args", default="", help="extra `poolscore serve` flags")
    args = ap.parse_args()
    mb = 30 if args.quick else 120
    uds = os.path.join(tempfile.mkdtemp(), "poolscore.sock")
    serve = [sys.executable, "-m", "poolscore.server.cli", "serve", "--port", "0", "--metrics-port", "-1",
             "--compile", "sync", "--warm", STRATEGY, "--max-message-bytes", str(256 << 20), "--log-level", "WARNING",
             "--uds", uds, *args.server_args.split()]
    ours, target = start(serve, r"listening on [\d.]+:(\d+)")
    sink, sink_target = start([sys.executable, str(Path(__file__).with_name("sink_server.py"))], r"listening on (\d+)")
    try:
        with Client(target) as c:
            c.wait_ready()
            print(f"machine: {os.cpu_count()} cores; server: {c.info().device}; one run, "
                  f"best of {args.repeats} after each client's first call")
        for c in (10, 100, 1000):
            run(c, mb, target, f"unix:{uds}", (sink_target, sink.pid), ours.pid, args.repeats)
    finally:
        stop(ours, sink)


if __name__ == "__main__":
    main()
