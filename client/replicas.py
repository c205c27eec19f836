"""Several replicas behind one Client: which they are, and which one holds a session.

A Client given a list of targets, a comma-separated string of them, or a `dns:///` name that
resolves to several addresses (a Kubernetes headless Service answers with every ready pod)
talks to each replica over its own channel. A pool is spread over all of them (sharding.py);
a session lives on one, chosen from its id, so every call about it reaches the same replica.
"""
from __future__ import annotations

import functools
import secrets
import socket
import zlib
from typing import Callable


def targets_of(target) -> tuple[list[str], str | None]:
    """(each replica's target, the TLS name to check their certificates against); one server (a
    single address, or a name that resolves to one) is ([target], None)."""
    if not isinstance(target, str):
        found = [str(t) for t in target]
        if not found:
            raise ValueError("no target: give a server's host:port, a list of them, or a dns:/// name")
        return sorted(found), None
    if "," in target and ":" in target and not target.startswith(("ipv4:", "ipv6:")):
        return targets_of([t.strip() for t in target.split(",") if t.strip()])
    if target.startswith("dns:"):
        host, port = _host_port(target.removeprefix("dns:").lstrip("/").split("/")[-1])
        addresses = sorted({info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})
        if len(addresses) > 1:
            return [f"[{a}]:{port}" if ":" in a else f"{a}:{port}" for a in addresses], host
    return [target], None


def _host_port(name: str) -> tuple[str, int]:
    host, _, port = name.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{name!r}: a dns:/// target names a host and its port, as dns:///poolscore:50051")
    return host.strip("[]"), int(port)


def replica_for(replicas: list, session_id: str):
    """The replica that holds `session_id`: the same for every Client given the same replicas."""
    return replicas[zlib.crc32(session_id.encode()) % len(replicas)]


def pinned(method: Callable) -> Callable:
    """A session method that, on a Client of several replicas, runs on the session's replica."""
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        if not self.replicas:
            return method(self, *args, **kwargs)
        if method.__name__ == "create_session":  # choose the id here, so it names its replica
            kwargs["session_id"] = kwargs.get("session_id") or secrets.token_hex(16)
            session_id = kwargs["session_id"]
        else:
            session_id = kwargs["session_id"] if "session_id" in kwargs else args[0]
        return getattr(replica_for(self.replicas, session_id), method.__name__)(*args, **kwargs)
    return call
