"""proto/ is buf-clean (buf.yaml: STANDARD, each exception documented there) and wire-compatible
with the last released contract (proto/baseline.binpb: WIRE_JSON, buf breaking)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def buf() -> str:
    found = ROOT / ".tools" / "node_modules" / ".bin" / "buf"
    path = str(found) if found.exists() else shutil.which("buf")
    assert path, "buf is not installed: scripts/setup.sh puts it in .tools/ (npm install @bufbuild/buf)"
    return path


def test_buf_lint_is_clean() -> None:
    done = subprocess.run([buf(), "lint"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_wire_is_compatible_with_the_last_release() -> None:
    done = subprocess.run([buf(), "breaking", "--against", "proto/baseline.binpb"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_breaking_change_would_be_caught(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "proto", tmp_path / "proto", ignore=shutil.ignore_patterns("*.py", "*.pyi", "__pycache__"))
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    scoring = tmp_path / "proto" / "poolscore" / "v1" / "scoring.proto"
    scoring.write_text(scoring.read_text().replace("int64 acked_seq = 4;", "int64 acked_seq = 14;"))  # renumbered
    done = subprocess.run([buf(), "breaking", "--against", "proto/baseline.binpb"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode != 0 and "ScoreAck" in done.stdout + done.stderr
