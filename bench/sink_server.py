"""A gRPC server that does nothing with what it receives: the transport's limit.

It answers a client stream of raw messages (no protobuf parsing) with their count, and
prints "listening on PORT" once bound to a free loopback port.
"""
from __future__ import annotations

import sys
from concurrent import futures

import grpc

METHOD = "/bench.Sink/Drain"


def drain(requests, context) -> bytes:
    n = sum(len(r) for r in requests)  # touch every message, keep none
    return str(n).encode()


def main() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                         options=[("grpc.max_receive_message_length", 1 << 30)])
    handler = grpc.method_handlers_generic_handler(
        "bench.Sink", {"Drain": grpc.stream_unary_rpc_method_handler(drain)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"listening on {port}", flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    server.stop(None)


if __name__ == "__main__":
    main()
