"""A model folder's config.json, parsed and checked: every error names the file and field.

    models/digits/
      model.onnx | model.pt2 (torch.export) | model.pt (TorchScript)
      model_mc.onnx | model_mc.pt2   optional: the same model with dropout active, for MC passes
      config.json

    {"input": {"name": "x", "dtype": "float32", "shape": [-1, 64]},
     "outputs": {"logits": "logits", "embedding": "hidden"},
     "strategy": "entropy", "max_batch_rows": 8192}

A committee folder has no model file: {"committee": ["digits_a", "digits_b", "digits_c"],
"strategy": "vote_entropy"}. For torch models, outputs name tuple positions ("0", "1").
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from poolscore.server.ingest.dtypes import BY_NAME

DTYPES = tuple(n for n in BY_NAME if n != "bfloat16")  # what a model may take (onnxruntime has no bfloat16 from NumPy)
MODEL_FILES = ("model.onnx", "model.pt2", "model.pt")


class ModelConfigError(ValueError):
    """A model folder that cannot be served; the message names the file and the field."""


@dataclass(frozen=True)
class ModelConfig:
    name: str
    folder: Path
    model_file: Path | None  # None for a committee
    mc_file: Path | None = None
    input_name: str = ""
    input_dtype: str = "float32"
    input_shape: tuple[int, ...] = (-1,)
    logits_output: str = ""  # "" = the first output
    embedding_output: str = ""  # "" = none
    strategy: str = "entropy"
    max_batch_rows: int = 8192
    committee: tuple[str, ...] = field(default_factory=tuple)

    @property
    def platform(self) -> str:
        if self.committee:
            return "committee"
        return "onnx" if self.model_file.suffix == ".onnx" else "torch"


def load(folder: Path) -> ModelConfig:
    path = folder / "config.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelConfigError(f"{path}: missing (every model folder needs a config.json)") from None
    except json.JSONDecodeError as err:
        raise ModelConfigError(f"{path}: not JSON: {err}") from None
    if not isinstance(raw, dict):
        raise ModelConfigError(f"{path}: must hold a JSON object")
    return _parse(folder, path, raw)


def _parse(folder: Path, path: Path, raw: dict) -> ModelConfig:
    def fail(key: str, problem: str) -> ModelConfigError:
        return ModelConfigError(f"{path}: {key}: {problem}")

    known = {"input", "outputs", "strategy", "max_batch_rows", "committee"}
    if set(raw) - known:
        raise fail(sorted(set(raw) - known)[0], f"unknown field; known: {', '.join(sorted(known))}")
    strategy = raw.get("strategy", "entropy")
    rows = raw.get("max_batch_rows", 8192)
    if not isinstance(rows, int) or rows < 1:
        raise fail("max_batch_rows", f"must be a whole number ≥ 1, got {rows!r}")
    if "committee" in raw:
        members = raw["committee"]
        if not isinstance(members, list) or len(members) < 2 or not all(isinstance(m, str) for m in members):
            raise fail("committee", "must list at least two model names")
        return ModelConfig(folder.name, folder, None, strategy=strategy, max_batch_rows=rows, committee=tuple(members))
    files = [folder / f for f in MODEL_FILES if (folder / f).exists()]
    if len(files) != 1:
        found = ", ".join(f.name for f in files) or "none"
        raise ModelConfigError(f"{folder}: needs exactly one of {', '.join(MODEL_FILES)} (found {found})")
    mc = folder / f"model_mc{files[0].suffix}"
    inp = raw.get("input", {})
    if not isinstance(inp, dict):
        raise fail("input", "must be an object with name, dtype and shape")
    dtype = inp.get("dtype", "float32")
    if dtype not in DTYPES:
        raise fail("input.dtype", f"{dtype!r} is not one of {', '.join(DTYPES)}")
    shape = inp.get("shape", [-1])
    if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and (d > 0 or d == -1) for d in shape):
        raise fail("input.shape", f"must list sizes > 0 or -1 (any), got {shape!r}")
    outputs = raw.get("outputs", {})
    if not isinstance(outputs, dict) or set(outputs) - {"logits", "embedding"}:
        raise fail("outputs", "must map logits (and optionally embedding) to output names")
    return ModelConfig(folder.name, folder, files[0], mc if mc.exists() else None, str(inp.get("name", "")),
                       dtype, tuple(shape), str(outputs.get("logits", "")), str(outputs.get("embedding", "")),
                       strategy, rows)
