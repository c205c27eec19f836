"""Model files the torch backend hosts: torch.export (.pt2), TorchScript (.pt), and ONNX,
whose inputs and outputs stay on the GPU through IO binding when the device is CUDA."""
from __future__ import annotations

from pathlib import Path

import torch

from poolscore.server.backends.base import Backend, Runner
from poolscore.server.models.config import ModelConfig
from poolscore.server.models.onnx_runner import OnnxRunner


def load(path: Path, cfg: ModelConfig, backend: Backend, mc: bool) -> Runner:
    if path.suffix == ".onnx":
        runner = OnnxRunner(path, cfg, backend)
        return BoundOnnxRunner(runner) if runner.cuda else runner
    return TorchRunner(path, cfg, backend.device, mc)


class BoundOnnxRunner:
    """IO binding: the torch tensor's GPU memory in, outputs left on the GPU (no host round trip)."""

    def __init__(self, runner: OnnxRunner) -> None:
        self.runner = runner

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        r = self.runner
        binding, index = r.session.io_binding(), x.device.index or 0
        x = x.contiguous()
        binding.bind_input(r.input, "cuda", index, r.backend.to_numpy(x[:0]).dtype, tuple(x.shape), x.data_ptr())
        for name in r.wanted:
            binding.bind_output(name, "cuda", index)
        r.session.run_with_iobinding(binding)
        out = [torch.from_dlpack(o._ortvalue.to_dlpack()) for o in binding.get_outputs()]  # noqa: SLF001
        return out[0], (out[1] if r.embedding else None)


class TorchRunner:
    def __init__(self, path: Path, cfg: ModelConfig, device: torch.device, mc: bool) -> None:
        if path.suffix == ".pt2":
            self.module = torch.export.load(str(path)).module().to(device)
        else:
            self.module = torch.jit.load(str(path), map_location=device)
            self.module.eval()
            if mc:  # dropout on, everything else (batch norm) as in inference
                for sub in self.module.modules():
                    if "Dropout" in getattr(sub, "original_name", type(sub).__name__):
                        sub.train()
        self.logits = int(cfg.logits_output or 0)
        self.embedding = int(cfg.embedding_output) if cfg.embedding_output else None

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        with torch.inference_mode():
            out = self.module(x)
        out = out if isinstance(out, (tuple, list)) else (out,)
        return out[self.logits], (out[self.embedding] if self.embedding is not None else None)
