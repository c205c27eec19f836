"""End to end: a pool streamed through a real poolscore server on loopback.

Beside it, in the same run: (a) the peers, baal and modAL, scoring the same pool
in-process and taking the top-K with NumPy, and (b) a bare grpcio stream of the same
message bytes to a server that does nothing (the transport's limit). Servers run in
their own processes, as deployed (each its own GIL).

    python bench/e2e.py            # 2M x 10 and 200k x 1000 float32 logits, k = 1000
    python bench/e2e.py --quick    # a tenth of the rows
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import PeerInput, peers_for  # noqa: E402
from poolscore.client import Client  # noqa: E402
from poolscore.client import wire  # noqa: E402
from poolscore.client.client import strategy_spec  # noqa: E402
from poolscore.client.pools import Batch, split  # noqa: E402
from poolscore.v1 import scoring_pb2 as pb  # noqa: E402

STRATEGY, K = "entropy", 1000


def start(cmd: list[str], pattern: str) -> tuple[subprocess.Popen, str]:
    """A server subprocess and its target, read from the line it prints when bound."""
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        found = re.search(pattern, line)
        if found:
            return proc, f"127.0.0.1:{found.group(1)}"
    raise RuntimeError(f"{cmd[:4]} exited before listening")


def stop(*procs: subprocess.Popen) -> None:
    """The servers `start` made, ended and waited for."""
    for proc in procs:
        proc.stdin.close()
        proc.terminate()
        proc.wait(timeout=60)


def timed(fn, repeats: int = 3) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def messages(logits: np.ndarray, batch_bytes: int) -> list[bytes]:
    """The serialized ScoreRequests the client sends for this pool: the bytes on the wire."""
    out = [pb.ScoreRequest(strategy=strategy_spec(STRATEGY, {}), k=K).SerializeToString()]
    for part in split(Batch(logits), batch_bytes):
        out.append(wire.encode(pb.ScoreRequest(), part, wire.SCORE_REQUEST))
    return out


def peer_top(peer, d: PeerInput) -> np.ndarray:
    scores = peer(d)
    top = np.argpartition(-scores, K)[:K]
    return top[np.lexsort((top, -scores[top]))]


def cpu_s(pid: int) -> float:
    """CPU seconds a process has used (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(fn, server_pid: int) -> tuple[float, float, float, object]:
    """Wall seconds, server CPU seconds, this process's CPU seconds (the client), result."""
    server, client, t = cpu_s(server_pid), time.process_time(), time.perf_counter()
    result = fn()
    return time.perf_counter() - t, cpu_s(server_pid) - server, time.process_time() - client, result


def run_shape(n: int, c: int, ours: tuple[str, int], sink: tuple[str, int], batch_bytes: int, repeats: int) -> None:
    logits = np.random.default_rng(0).normal(size=(n, c)).astype(np.float32)
    gb = logits.nbytes / 1e9
    msgs = messages(logits, batch_bytes)
    best = {}  # name -> (wall, server CPU, client CPU) of its fastest run
    paired = []  # bare / ours of each round: their median shrugs off one lucky run on either side
    with Client(ours[0], batch_bytes=batch_bytes, max_message_bytes=256 << 20) as client, \
            grpc.insecure_channel(sink[0], options=[("grpc.max_send_message_length", 1 << 30)]) as ch:
        drain = ch.stream_unary("/bench.Sink/Drain")
        client.score_pool(logits[: min(n, 70_000)], STRATEGY, k=K)  # warm: compiled kernel, connection
        drain(iter(msgs[:3]))
        for _ in range(repeats):  # interleaved, so a machine that drifts in speed slows both alike
            *ours_run, top = measured(lambda: client.score_pool(logits, STRATEGY, k=K), ours[1])
            *bare_run, _ = measured(lambda: drain(iter(msgs)), sink[1])
            for name, run in (("ours", ours_run), ("bare", bare_run)):
                best[name] = min(best.get(name, run), run)
            paired.append(bare_run[0] / ours_run[0])
    (t_ours, *cpu_ours), (t_bare, *cpu_bare) = best["ours"], best["bare"]
    print(f"\n{n:,} x {c} float32 logits ({gb * 1e3:.0f} MB), {STRATEGY}, k={K}, batches of {batch_bytes >> 20} MiB")
    row = lambda name, t: print(f"  {name:<34} {n / t / 1e6:7.2f} M rows/s  {gb / t:6.2f} GB/s  {t:7.3f} s")  # noqa: E731
    row("poolscore, default client (shm)", t_ours)
    row("bare gRPC stream, no work (limit)", t_bare)
    print(f"  -> poolscore / bare transport: {t_bare / t_ours:.2f}x of the limit (target >= 0.60); "
          f"median of the {len(paired)} paired rounds {np.median(paired):.2f}x")
    cores = os.cpu_count() or 1
    for name, t, (server, client) in (("poolscore", t_ours, cpu_ours), ("bare", t_bare, cpu_bare)):
        print(f"  -> CPU, {name}: server {server * 1e3:.0f} ms + client {client * 1e3:.0f} ms "
              f"= {(server + client) / (t * cores):.0%} of {cores} cores for {t * 1e3:.0f} ms")
    d = PeerInput(logits, np.arange(n))
    for name, peer in peers_for(STRATEGY).items():
        t_peer, peer_ids = timed(lambda: peer_top(peer, d), repeats=1)
        row(f"{name} in-process + argpartition", t_peer)
        overlap = len(np.intersect1d(peer_ids, top.ids)) / K  # the peers score in float64: near-ties may swap
        print(f"  -> poolscore vs {name}: {t_peer / t_ours:.2f}x faster; top-{K} overlap {overlap:.1%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a tenth of the rows")
    ap.add_argument("--batch-mib", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=9, help="interleaved runs of each; the best counts")
    ap.add_argument("--server-args", default="", help="extra `poolscore serve` flags, e.g. '--threads 1'")
    args = ap.parse_args()
    scale = 10 if args.quick else 1
    serve = [sys.executable, "-m", "poolscore.server.cli", "serve", "--port", "0", "--metrics-port", "-1",
             "--compile", "sync", "--warm", STRATEGY, "--max-message-bytes", str(256 << 20), "--log-level", "WARNING", *args.server_args.split()]
    ours, ours_t = start(serve, r"listening on [\d.]+:(\d+)")
    sink, sink_t = start([sys.executable, str(Path(__file__).with_name("sink_server.py"))], r"listening on (\d+)")
    print(f"machine: {os.cpu_count()} cores; servers in their own processes on loopback")
    try:
        with Client(ours_t) as c:
            c.wait_ready()
            print(f"server: {c.info().device}")
        for n, c in ((2_000_000 // scale, 10), (200_000 // scale, 1000)):
            run_shape(n, c, (ours_t, ours.pid), (sink_t, sink.pid), args.batch_mib << 20, args.repeats)
    finally:
        stop(ours, sink)


if __name__ == "__main__":
    main()
