"""poolscore demo: the active-learning loop through a live server on bundled digits. The
selection must beat random: an assertion on data no one tuned, that can fail."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np


def test_the_quick_demo_beats_random_and_writes_its_curves(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "poolscore.client.cli", "demo", "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    print("\n" + done.stdout)
    rounds = [line for line in done.stdout.splitlines() if line.startswith("digits ") and line.split()[1].isdigit()]
    assert len(rounds) == 11  # rounds 0..10, one line each
    assert "labels to reach a test accuracy" in done.stdout and "AUC" in done.stdout
    assert (tmp_path / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(tmp_path / "learning_curves.csv") as f:
        rows = list(csv.DictReader(f))
    last = max(int(r["round"]) for r in rows)
    final = {s: np.mean([float(r["accuracy"]) for r in rows if r["strategy"] == s and int(r["round"]) == last])
             for s in ("random", "margin", "entropy")}
    seeds = {r["seed"] for r in rows}
    labels = {int(r["labels"]) for r in rows if int(r["round"]) == last}
    print(f"mean test accuracy at {labels} labels over {len(seeds)} seeds: {final}")
    assert len(seeds) == 3 and labels == {120}
    assert max(final["margin"], final["entropy"]) > final["random"]
    auc = {s: np.mean([float(r["accuracy"]) for r in rows if r["strategy"] == s]) for s in ("random", "margin")}
    assert auc["margin"] > auc["random"]  # over the whole budget too
