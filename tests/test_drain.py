"""Graceful drain: SIGTERM on `poolscore serve` turns health NOT_SERVING and refuses new calls,
while a stream in flight goes on being scored until it ends; then the process exits 0."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from poolscore.client import Client
from poolscore.v1 import scoring_pb2 as pb


def batch(sid: str, seq: int) -> bytes:
    z = np.random.default_rng(seq).normal(size=(10, 3)).astype(np.float32)
    return pb.ScoreRequest(session_id=sid, seq=seq, logits=pb.Tensor(dtype=pb.FP32, shape=[10, 3],
                                                                     data=z.tobytes())).SerializeToString()


def test_sigterm_drains_the_streams_in_flight_and_exits_cleanly():
    proc = subprocess.Popen([sys.executable, "-m", "poolscore.client.cli", "serve", "--port", "0", "--metrics-port",
                             "-1", "--compile", "off", "--drain-grace-s", "60"], stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if "listening on" in line:
                break
        port = re.search(r"listening on [\d.]+:(\d+)", line).group(1)
        target = f"127.0.0.1:{port}"
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        with Client(target) as c:
            c.wait_ready(timeout=60)
            sid = c.create_session("entropy", k=5)
        with grpc.insecure_channel(target) as channel:
            score = channel.stream_stream("/poolscore.v1.PoolScorer/Score", response_deserializer=pb.ScoreAck.FromString)
            go = [threading.Event() for _ in range(3)]

            def requests():
                for seq in range(3):
                    go[seq].wait(timeout=60)
                    yield batch(sid, seq)

            acks = score(requests())
            go[0].set()
            assert next(acks).seq == 0
            proc.send_signal(signal.SIGTERM)
            health = health_pb2_grpc.HealthStub(channel)
            for _ in range(600):  # the drain begins: the probe turns NOT_SERVING
                status = health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
                if status == health_pb2.HealthCheckResponse.NOT_SERVING:
                    break
                threading.Event().wait(0.05)
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING
            try:
                next(score(iter([batch(sid, 1)])))
                refused = None
            except grpc.RpcError as err:
                refused = err
            assert refused is not None and refused.code() == grpc.StatusCode.UNAVAILABLE  # new streams: elsewhere
            go[1].set()
            assert next(acks).seq == 1  # the stream in flight is still scored
            go[2].set()
            assert next(acks).items == 30
            assert list(acks) == []  # it ends as the client ends it
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
