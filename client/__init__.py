"""poolscore client: call a poolscore server from Python (grpcio, protobuf and NumPy only)."""
from poolscore.client.client import Client, TopK
from poolscore.client.errors import (
    BadBatch, DataLoss, NotFound, OverLimit, PoolscoreError, SequenceGap, SessionExists, Unauthenticated, Unavailable,
)
from poolscore.client.pools import Batch
from poolscore.client.sessions import Session
from poolscore.client.sharding import merge, score_pool_sharded

__all__ = ["Client", "TopK", "Batch", "Session", "merge", "score_pool_sharded", "PoolscoreError", "BadBatch", "DataLoss", "NotFound", "SequenceGap",
           "SessionExists", "OverLimit", "Unauthenticated", "Unavailable"]
