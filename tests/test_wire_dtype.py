"""Client(wire_dtype=...): logits travel as float16 or bfloat16, half the bytes; the ranking
change is bounded (top-K overlap with float32 scoring) where the README says it is."""
from __future__ import annotations

import numpy as np
import pytest

from poolscore.client import Client
from poolscore.client import wire
from poolscore.client.pools import Batch


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_entropy_and_least_confidence_keep_99_percent_of_the_top_k(app, dtype: str) -> None:
    rng = np.random.default_rng(3)
    z = (rng.normal(size=(50_000, 10)) * rng.uniform(0.5, 4, size=(50_000, 1))).astype(np.float32)
    with Client(app.target) as full, Client(app.target, wire_dtype=dtype) as narrow:
        for strategy in ("entropy", "least_confidence"):
            want = set(full.score_pool(z, strategy, k=500).ids.tolist())
            got = narrow.score_pool(z, strategy, k=500)
            overlap = len(want & set(got.ids.tolist())) / 500
            print(f"\n{dtype} {strategy}: top-500 overlap {overlap:.3f}")
            assert overlap >= 0.99 and got.items == 50_000


def test_a_narrow_wire_halves_the_bytes_but_never_a_models_raw_inputs() -> None:
    x = np.ones((1000, 64), np.float32)
    batch = Batch(x, np.arange(1000))
    full = len(wire.encode(wire.pb.ScoreRequest(), batch, wire.SCORE_REQUEST))
    half = len(wire.encode(wire.pb.ScoreRequest(), batch, wire.SCORE_REQUEST, "float16"))
    assert half < 0.6 * full  # 64 KiB of logits as 32 KiB (ids stay int64)
    hosted = len(wire.encode(wire.pb.ScoreRequest(), batch, wire.SCORE_REQUEST_INPUTS, "float16"))
    assert hosted == full  # the model takes float32: inputs go as they are
    with pytest.raises(ValueError, match="wire_dtype must be one of"):
        Client("127.0.0.1:1", wire_dtype="int8")
