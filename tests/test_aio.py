"""poolscore.client.aio: the asyncio client against the real server, with the sync client's
results and errors, and many calls in flight on one event loop."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

import reference as ref
from poolscore.client import BadBatch, Batch, Client, NotFound, Unauthenticated
from poolscore.client.aio import AsyncClient
from poolscore.server.app import build_server
from poolscore.server.config import ServeConfig


def test_the_async_client_scores_as_the_sync_one_does(app, rng: np.random.Generator) -> None:
    z = rng.normal(size=(3000, 7)).astype(np.float32)
    ids = np.arange(3000) * 3

    async def main():
        async with AsyncClient(app.target, batch_bytes=20_000) as c:  # several batches per pool
            await c.wait_ready()
            assert (await c.info()).version
            scores = await c.score_batch(z[:50], "margin")
            top = await c.score_pool(z, "entropy", k=20, ids=ids)
            pools = await asyncio.gather(*(c.score_pool(z[i::4], "margin", k=5) for i in range(4)))  # in flight at once
            sid = await c.create_session("entropy", k=20)
            ack = await c.stream(sid, [Batch(z[i:i + 500], ids[i:i + 500]) for i in range(0, 3000, 500)])
            session_top = await c.top_k(sid)
            await c.delete_session(sid)
            with pytest.raises(NotFound):
                await c.get_session(sid)
            with pytest.raises(BadBatch, match="NaN"):
                await c.score_batch(np.full((2, 3), np.nan, np.float32))
            return scores, top, pools, ack, session_top

    scores, top, pools, ack, session_top = asyncio.run(main())
    np.testing.assert_allclose(scores, ref.margin(ref.probs(z[:50])), rtol=1e-4, atol=1e-6)
    with Client(app.target) as sync:
        assert top == sync.score_pool(z, "entropy", k=20, ids=ids)
        assert [p.ids.tolist() for p in pools] == [sync.score_pool(z[i::4], "margin", k=5).ids.tolist() for i in range(4)]
    assert (ack.seq, ack.items) == (5, 3000) and session_top.ids.tolist() == top.ids.tolist()


def test_the_async_client_carries_the_token() -> None:
    app = build_server(ServeConfig(port=0, metrics_port=-1, device="cpu", compile="off", token="tk")).start()
    try:
        async def main():
            async with AsyncClient(app.target, token="tk") as ok, AsyncClient(app.target) as bad:
                assert (await ok.info()).version
                with pytest.raises(Unauthenticated):
                    await bad.info()
        asyncio.run(main())
    finally:
        app.stop()


def test_a_failing_pool_reader_raises_its_own_error_not_a_cancellation(app) -> None:
    def pool():
        yield np.arange(10), np.zeros((10, 3), np.float32)
        raise ValueError("the reader broke at row 10")

    async def main():
        async with AsyncClient(app.target) as c:
            with pytest.raises(ValueError, match="row 10"):
                await c.score_pool(pool(), "entropy", k=3)
            sid = await c.create_session("entropy", k=3)
            with pytest.raises(ValueError, match="row 10"):
                await c.stream(sid, pool())

    asyncio.run(main())
