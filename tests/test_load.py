"""A short load: 16 sessions against a `poolscore serve` process, half of them idle streams
(bench/load.py runs 64 and prints the latencies)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import load  # noqa: E402  (the benchmark's own harness)


def test_sixteen_sessions_half_idle_every_top_k_exact_and_health_answering():
    r = load.run(sessions=16, batches=6, rows=500, classes=5)
    assert r["failures"] == [] and r["active"] == 8 and len(r["acks"]) == 8 * 6
    assert len(r["probes"]) >= 1 and max(r["probes"]) < 5  # each probe answered within its deadline
