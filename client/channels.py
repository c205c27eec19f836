"""A channel's target, TLS credentials and options, and the tensor bytes a message has room for:
the same for the sync Client and the asyncio one."""
from __future__ import annotations

import grpc


def channel_args(target: str, max_message_bytes: int, tls: bool, root_certificates: bytes | None,
                 private_key: bytes | None, certificate_chain: bytes | None):
    """(target without its scheme, TLS credentials or None, channel options), for either client."""
    options = [("grpc.max_send_message_length", max_message_bytes),
               ("grpc.max_receive_message_length", max_message_bytes)]
    secure = target.startswith("grpcs://") or tls or any((root_certificates, private_key, certificate_chain))
    creds = grpc.ssl_channel_credentials(root_certificates, private_key, certificate_chain) if secure else None
    return target.removeprefix("grpcs://").removeprefix("grpc://"), creds, options


def room(max_message_bytes: int) -> int:
    """Tensor bytes a message of this size has room for, after its envelope (ids of the
    session, strategy, tensor headers; string keys are counted per row by the splitter)."""
    return max_message_bytes - 64 * 1024 if max_message_bytes > 128 * 1024 else max(1, max_message_bytes // 2)
