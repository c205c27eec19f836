"""Regenerates proto/poolscore/v1/**/*_pb2*.py and .pyi from the .proto files (grpcio-tools).

The generated files are committed so a client install needs no code generator;
tests/test_proto.py fails when they are stale. Run: python scripts/gen_proto.py [OUT_DIR]
"""
from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent / "proto"


def generate(out: Path) -> None:
    protos = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "poolscore" / "v1").rglob("*.proto"))
    args = ["protoc", f"-I{ROOT}", f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}", *protos]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
