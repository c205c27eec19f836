"""An ONNX model file in onnxruntime, for either backend: its arrays in, its arrays out.

On CUDA the torch backend binds its tensors' GPU memory instead (backends/torch/runners.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from poolscore.server.backends.base import Array, Backend
from poolscore.server.models.config import ModelConfig, ModelConfigError


class OnnxRunner:
    def __init__(self, path: Path, cfg: ModelConfig, backend: Backend) -> None:
        import onnxruntime as ort

        self.cuda = backend.device_type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers()
        providers = ["CUDAExecutionProvider"] if self.cuda else []
        self.session = ort.InferenceSession(str(path), providers=providers + ["CPUExecutionProvider"])
        names = [o.name for o in self.session.get_outputs()]
        self.input = cfg.input_name or self.session.get_inputs()[0].name
        self.logits = cfg.logits_output or names[0]
        self.embedding = cfg.embedding_output or None
        for wanted in (self.logits, self.embedding):
            if wanted and wanted not in names:
                raise ModelConfigError(f"{cfg.folder / 'config.json'}: outputs: {path.name} has no output "
                                       f"{wanted!r} (it has {names})")
        self.wanted = [self.logits] + ([self.embedding] if self.embedding else [])
        self.backend = backend

    def __call__(self, x: Array) -> tuple[Array, Array | None]:
        feed = np.ascontiguousarray(self.backend.to_numpy(x))
        out = [self.backend.from_numpy(o) for o in self.session.run(self.wanted, {self.input: feed})]
        return out[0], (out[1] if self.embedding else None)
