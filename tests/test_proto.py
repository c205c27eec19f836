"""The committed generated code is what the .proto files generate today."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    gen.generate(tmp_path)
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*_pb2*"))
    assert fresh, "protoc generated nothing"
    for rel in fresh:
        committed = ROOT / "proto" / rel
        assert committed.exists(), f"{rel} is not committed: run python scripts/gen_proto.py"
        assert committed.read_text() == (tmp_path / rel).read_text(), f"{rel} is stale: run python scripts/gen_proto.py"
