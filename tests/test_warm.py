"""A server reports SERVING once its --warm kernels are compiled (one per class-count bucket),
so probes and wait_ready hand it traffic at full speed; calls made sooner are answered."""
from __future__ import annotations

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from poolscore.client import Client
from poolscore.server.app import build_server
from poolscore.server.config import ServeConfig
from poolscore.server.backends.torch.compiled import WARM_CLASSES

pytestmark = pytest.mark.compiled


def test_health_waits_for_the_warm_kernels_and_calls_are_answered_meanwhile() -> None:
    # bald: compiled past C = 16 (a pointwise strategy is native at every C: nothing to wait for)
    app = build_server(ServeConfig(port=0, metrics_port=-1, device="cpu", compile="background", warm="bald")).start()
    try:
        with grpc.insecure_channel(app.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == \
                health_pb2.HealthCheckResponse.NOT_SERVING
            x = np.random.default_rng(0).normal(size=(300, 4, 70)).astype(np.float32)
            with Client(app.target, timeout=60) as c:
                early = c.score_batch(x, "bald")  # answered while the kernels compile (eagerly)
                c.wait_ready(timeout=300)
                kernels = app.backend.scorer.kernels
                assert len(kernels.ready_keys()) == len(WARM_CLASSES)  # bald, once per class-count bucket
                np.testing.assert_allclose(c.score_batch(x, "bald"), early, rtol=2e-5, atol=1e-6)
            for service in ("", "poolscore.v1.PoolScorer"):
                assert health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status == \
                    health_pb2.HealthCheckResponse.SERVING
    finally:
        app.stop()


def test_a_server_with_nothing_to_warm_serves_at_once() -> None:
    app = build_server(ServeConfig(port=0, metrics_port=-1, device="cpu", compile="background", warm="")).start()
    try:
        with grpc.insecure_channel(app.target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        app.stop()


def test_the_batch_path_is_rehearsed_before_serving_on_metrics_of_its_own(caplog) -> None:
    """Each warm strategy and class count runs one small batch through the pipeline, merge and
    reply before SERVING; the server's own metrics count none of it."""
    import logging
    import urllib.request

    caplog.set_level(logging.INFO, logger="poolscore.server.app")
    app = build_server(ServeConfig(port=0, metrics_port=0, device="cpu", compile="background", warm="margin,entropy",
                                   warm_classes="3,40")).start()
    try:
        with Client(app.target, timeout=60) as c:
            c.wait_ready(timeout=300)
            text = urllib.request.urlopen(f"http://127.0.0.1:{app.metrics_port}/metrics", timeout=5).read().decode()
        assert any("4 batch paths rehearsed: serving" in r.getMessage() for r in caplog.records)
        assert "poolscore_items_scored_total{" not in text and "poolscore_selected_class_share{" not in text
    finally:
        app.stop()


def test_the_rehearsal_fits_a_small_max_k(caplog) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="poolscore.server.app")
    app = build_server(ServeConfig(port=0, metrics_port=-1, device="cpu", compile="background", warm="ratio",
                                   warm_classes="3", max_k=2)).start()
    try:
        with Client(app.target, timeout=60) as c:
            c.wait_ready(timeout=300)
        assert any("1 batch paths rehearsed: serving" in r.getMessage() for r in caplog.records)
        assert not any(r.levelno >= logging.ERROR for r in caplog.records)
    finally:
        app.stop()


def test_warm_classes_name_the_class_counts_compiled_at_start() -> None:
    """--warm-classes 2: one kernel (C = 2's bucket), ready for a binary pool's first batch: for
    float32 on the CPU the native one (no relayout to tune)."""
    app = build_server(ServeConfig(port=0, metrics_port=-1, device="cpu", compile="background", warm="margin",
                                   warm_classes="2")).start()
    try:
        with Client(app.target, timeout=60) as c:
            c.wait_ready(timeout=300)
        kernels = app.backend.scorer.kernels
        assert len(kernels.ready_keys()) == 1
        import torch

        from poolscore.server.backends.torch.native import NativeKernel
        from poolscore.server.strategies import strategy_named
        assert isinstance(kernels.kernel_for(strategy_named("margin"), "logits", torch.zeros(10, 2), None), NativeKernel)
    finally:
        app.stop()


@pytest.mark.parametrize("bad, says", [("10,x", "not a comma-separated list"), ("1,10", "at least 2")])
def test_a_bad_warm_classes_is_refused_by_name(bad: str, says: str) -> None:
    with pytest.raises(ValueError, match=f"--warm-classes: .*{says}"):
        build_server(ServeConfig(port=0, metrics_port=-1, device="cpu", compile="off", warm_classes=bad))
