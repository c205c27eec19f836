"""A channel's target, TLS credentials and options, and the tensor bytes a message has room for:
the same for the sync Client and the asyncio one."""
from __future__ import annotations

import time

import grpc
from grpc_health.v1 import health_pb2

from poolscore.client.errors import Unavailable


def channel_args(target: str, max_message_bytes: int, tls: bool, root_certificates: bytes | None,
                 private_key: bytes | None, certificate_chain: bytes | None, server_name: str | None = None):
    """(target without its scheme, TLS credentials or None, channel options), for either client."""
    options = [("grpc.max_send_message_length", max_message_bytes),
               ("grpc.max_receive_message_length", max_message_bytes)]
    if server_name:  # a replica reached by its address is checked against the Service's name
        options.append(("grpc.ssl_target_name_override", server_name))
    secure = target.startswith("grpcs://") or tls or any((root_certificates, private_key, certificate_chain))
    creds = grpc.ssl_channel_credentials(root_certificates, private_key, certificate_chain) if secure else None
    return target.removeprefix("grpcs://").removeprefix("grpc://"), creds, options


def room(max_message_bytes: int) -> int:
    """Tensor bytes a message of this size has room for, after its envelope (ids of the
    session, strategy, tensor headers; string keys are counted per row by the splitter)."""
    return max_message_bytes - 64 * 1024 if max_message_bytes > 128 * 1024 else max(1, max_message_bytes // 2)


def poll_health(health, target: str, timeout: float) -> None:
    """Ask the standard health service until it says SERVING; Unavailable after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            reply = health.Check(health_pb2.HealthCheckRequest(), timeout=max(0.1, deadline - time.monotonic()))
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError as err:
            if time.monotonic() >= deadline:
                raise Unavailable(err.code(), f"{target} not serving after {timeout}s: {err.details()}") from None
        if time.monotonic() >= deadline:
            raise Unavailable(grpc.StatusCode.UNAVAILABLE, f"{target} not serving after {timeout}s")
        time.sleep(0.05)  # poll interval of a health check, not a wait for readiness
