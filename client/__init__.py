"""poolscore client: call a poolscore server from Python (grpcio, protobuf and NumPy only).

The names below are imported on first use (PEP 562), so `poolscore score`, which may never
open a channel, does not pay for grpc's channel machinery at start."""
from __future__ import annotations

import importlib

_WHERE = {
    "Client": "client", "TopK": "client", "Batch": "pools", "Session": "sessions", "merge": "sharding",
    "score_pool_sharded": "sharding",
    **{name: "errors" for name in ("PoolscoreError", "BadBatch", "DataLoss", "NotFound", "SequenceGap", "SessionExists",
                                   "OverLimit", "Unauthenticated", "Unavailable")},
}

__all__ = list(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'poolscore.client' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"poolscore.client.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
