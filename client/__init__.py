"""poolscore client: call a poolscore server from Python (grpcio, protobuf and NumPy only)."""
from poolscore.client.client import Client, TopK
from poolscore.client.errors import (
    BadBatch, NotFound, OverLimit, PoolscoreError, SequenceGap, Unauthenticated, Unavailable,
)
from poolscore.client.pools import Batch

__all__ = ["Client", "TopK", "Batch", "PoolscoreError", "BadBatch", "NotFound", "SequenceGap",
           "OverLimit", "Unauthenticated", "Unavailable"]
