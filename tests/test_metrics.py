"""/metrics passes promtool, and a real Prometheus scrapes it and reads our counters back."""
from __future__ import annotations

import json
import shutil
import socket
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest

from poolscore.client import BadBatch, Client
from poolscore.server.app import build_server
from poolscore.server.config import ServeConfig


def poll(what: str, check: Callable[[], object], timeout: float = 60.0) -> object:
    """Call `check` until it returns something truthy (polling a real process, not sleeping on it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout}s")
        time.sleep(0.1)


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return reply.read().decode()


@pytest.fixture(scope="module")
def scored_app() -> Iterator:
    app = build_server(ServeConfig(port=0, metrics_port=0, device="cpu", compile="off")).start()
    with Client(app.target, timeout=30) as client:
        client.wait_ready()
        client.score_pool(np.random.default_rng(0).normal(size=(1234, 6)).astype(np.float32), "ratio", k=3)
        with pytest.raises(BadBatch):
            client.score_batch(np.full((2, 3), np.nan, np.float32), "entropy")
    yield app
    app.stop()


def test_exposition_passes_promtool(scored_app) -> None:
    text = get(f"http://127.0.0.1:{scored_app.metrics_port}/metrics")
    assert 'poolscore_items_scored_total{device="cpu",strategy="ratio"} 1234.0' in text
    assert 'poolscore_errors_total{code="INVALID_ARGUMENT"} 1.0' in text
    assert 'poolscore_bytes_scored_total{device="cpu",strategy="ratio"} 29616.0' in text  # 1234 * 6 * 4
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_requests_are_counted_by_rpc_and_code_beside_the_process_and_build_series(scored_app) -> None:
    text = get(f"http://127.0.0.1:{scored_app.metrics_port}/metrics")
    assert 'poolscore_requests_total{code="OK",rpc="ScorePool"} 1.0' in text  # the error ratio's numerator and denominator
    assert 'poolscore_requests_total{code="INVALID_ARGUMENT",rpc="ScoreBatch"} 1.0' in text
    assert 'poolscore_request_duration_seconds_count{rpc="ScorePool"} 1.0' in text
    assert re.search(r"^poolscore_queue_duration_seconds_count [1-9]", text, re.M)  # the pool's messages waited, counted
    assert "process_resident_memory_bytes" in text and "python_info{" in text and "python_gc_objects_collected_total" in text
    assert re.search(r'poolscore_build_info\{backend="torch",device="[^"]+",version="[^"]+"\} 1\.0', text)
    limit = float(re.search(r"^poolscore_session_memory_limit_bytes (\S+)$", text, re.M).group(1))
    assert limit == 4096 * 2**20 and re.search(r"^poolscore_session_memory_reserved_bytes 0\.0$", text, re.M)
    # the acquisition scores themselves: every one of the 1234 (a sample of up to 1024 per batch), ratio in (0, 1]
    assert 'poolscore_score_sample_count{strategy="ratio"} 1234.0' in text
    assert 'poolscore_score_sample_bucket{le="1",strategy="ratio"} 1234.0' in text
    assert 'poolscore_score_sample_bucket{le="0.001",strategy="ratio"} 0.0' in text


def test_other_paths_on_the_metrics_port_are_404(scored_app) -> None:
    for path in ("/", "/metricsx", "/favicon.ico"):
        with pytest.raises(urllib.error.HTTPError) as err:
            get(f"http://127.0.0.1:{scored_app.metrics_port}{path}")
        assert err.value.code == 404


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_real_prometheus_scrapes_the_counters(scored_app, tmp_path: Path) -> None:
    assert shutil.which("prometheus"), "scripts/setup.sh installs Debian's prometheus"
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: poolscore\n    static_configs: [{{targets: ['127.0.0.1:{scored_app.metrics_port}']}}]\n")
    port = free_port()
    proc = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        poll("prometheus ready", lambda: "Ready" in get(f"{base}/-/ready"))
        query = f"{base}/api/v1/query?query=poolscore_items_scored_total%7Bstrategy%3D%22ratio%22%7D"
        result = poll("the scraped counter", lambda: json.loads(get(query))["data"]["result"])
        assert float(result[0]["value"][1]) == 1234.0
        assert result[0]["metric"]["job"] == "poolscore" and result[0]["metric"]["device"] == "cpu"
        shares = f"{base}/api/v1/query?query=sum(poolscore_selected_class_share%7Bstrategy%3D%22ratio%22%7D)"
        total = poll("the scraped class shares", lambda: json.loads(get(shares))["data"]["result"])
        assert float(total[0]["value"][1]) == pytest.approx(1.0)  # the 3 selected rows' classes
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _sessions_active(app) -> float:
    text = get(f"http://127.0.0.1:{app.metrics_port}/metrics")
    return float(next(line.split()[1] for line in text.splitlines() if line.startswith("poolscore_sessions_active ")))


@pytest.mark.parametrize("ttl_s,held", [(3600.0, 2), (0.0, 0)])
def test_sessions_active_counts_live_sessions_and_expired_ones_are_not_found(ttl_s: float, held: int) -> None:
    """The gauge is read at scrape time, so a session idle past the TTL leaves it without
    any create or delete; and a call for an expired session gets NOT_FOUND."""
    from poolscore.client import NotFound

    app = build_server(ServeConfig(port=0, metrics_port=0, device="cpu", compile="off", session_ttl_s=ttl_s)).start()
    try:
        with Client(app.target, timeout=30) as client:
            client.wait_ready()
            ids = [client.create_session("entropy", k=3) for _ in range(2)]
            assert _sessions_active(app) == held
            if held:
                assert client.get_session(ids[0]).session_id == ids[0]
            else:
                with pytest.raises(NotFound, match=ids[0]):
                    client.get_session(ids[0])
                with pytest.raises(NotFound):
                    client.score(ids[1], np.zeros((4, 3), np.float32))
    finally:
        app.stop()


def _value(text: str, name: str) -> float | None:
    found = [line.split()[-1] for line in text.splitlines() if line.split(" ")[0].split("{")[0] == name]
    return float(found[0]) if found else None


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if __import__("torch").cuda.is_available() else []))
def test_shared_memory_and_gpu_series(device: str) -> None:
    """A local client's pool through shared memory shows in the shm series; GPU memory series
    appear on a CUDA server only (bench/gpu.sh runs the cuda case)."""
    app = build_server(ServeConfig(port=0, metrics_port=0, device=device, compile="off")).start()
    url = f"http://127.0.0.1:{app.metrics_port}/metrics"
    try:
        with Client(app.target, timeout=30) as c:
            c.score_pool(np.random.default_rng(2).normal(size=(1000, 10)).astype(np.float32), "entropy", k=3)
            text = get(url)
            ring = c._rings._idle[0]  # kept for the next call: still mapped by the server
            assert _value(text, "poolscore_shared_memory_regions") == 1
            assert _value(text, "poolscore_shared_memory_mapped_bytes") == ring.capacity + 64
            assert _value(text, "poolscore_shared_memory_tensor_bytes_total") == 1000 * 10 * 4
        text = get(url)
        assert _value(text, "poolscore_shared_memory_regions") == 0  # the client's close unregistered it
        assert _value(text, "poolscore_shared_memory_mapped_bytes") == 0
        used, total = _value(text, "poolscore_gpu_memory_used_bytes"), _value(text, "poolscore_gpu_memory_total_bytes")
        if device == "cuda":
            assert total > 0 and 0 < used <= total
        else:
            assert used is None and total is None and "poolscore_gpu_" not in text
    finally:
        app.stop()
