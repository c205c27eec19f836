"""The Dockerfile passes hadolint, builds the three variants it documents, keeps its
context small (.dockerignore), and its HEALTHCHECK's probe answers like a kubelet's."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    done = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_variants_run_as_non_root_with_a_healthcheck_from_pinned_bases() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\S+)$", text, re.M)
    assert {"build", "onnx", "cpu", "cuda"} <= set(stages) and stages[-1] == "default"
    assert re.search(r"^ARG BASE=python:\d+\.\d+\.\d+-slim-\w+$", text, re.M)  # pinned, and a build argument
    assert text.count("USER 10001") == 3 and text.count("HEALTHCHECK") == 2  # onnx and cpu share runtime-base's
    assert "download.pytorch.org/whl/cpu" in text  # the CPU variant never pulls CUDA wheels
    onnx = text[text.index("AS onnx"):text.index("AS cpu")]
    assert "torch" not in onnx


def test_the_context_leaves_out_what_the_image_does_not_need() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "tests", "bench", "docs"} <= ignored
    copied = set(re.findall(r"^COPY (?!--from)(\S+)", (ROOT / "Dockerfile").read_text(), re.M))
    assert copied and not copied & ignored  # nothing the build copies is ignored


def test_the_healthcheck_probe_answers_as_health_does(app) -> None:
    probe = [sys.executable, "-m", "poolscore.client.probe"]
    ok = subprocess.run([*probe, app.target], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "SERVING" in ok.stderr
    down = subprocess.run([*probe, "127.0.0.1:1"], capture_output=True, text=True, timeout=60)
    assert down.returncode == 1 and "UNAVAILABLE" in down.stderr
