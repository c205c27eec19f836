"""Hosted models: raw inputs → logits (and an embedding) on the scoring device.

One runner per model file: onnxruntime (the CUDA provider when the device is CUDA, with
IO binding so tensors stay on the GPU) or torch (torch.export `.pt2`, TorchScript `.pt`).
MC-dropout passes run the T copies of a chunk through the model as one batch; a
committee stacks its members' logits. The repository loads every folder it can and
reports the ones it cannot, so one broken model never takes the others down.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from poolscore.server import model_config
from poolscore.server.errors import BadInput
from poolscore.server.model_config import ModelConfig, ModelConfigError

log = logging.getLogger(__name__)
_TORCH_DTYPES = {"float16": torch.float16, "float32": torch.float32, "float64": torch.float64,
                 "int64": torch.int64, "int32": torch.int32}
_RNG_LOCK = threading.Lock()  # torch's dropout draws from the global generator: one seeded pass at a time


class Runner(Protocol):
    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]: ...


class OnnxRunner:
    def __init__(self, path: Path, cfg: ModelConfig, device: torch.device) -> None:
        import onnxruntime as ort

        cuda = device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers()
        providers = [("CUDAExecutionProvider", {"device_id": device.index or 0})] if cuda else []
        self.session = ort.InferenceSession(str(path), providers=providers + ["CPUExecutionProvider"])
        names = [o.name for o in self.session.get_outputs()]
        self.input = cfg.input_name or self.session.get_inputs()[0].name
        self.logits = cfg.logits_output or names[0]
        self.embedding = cfg.embedding_output or None
        for wanted in (self.logits, self.embedding):
            if wanted and wanted not in names:
                raise ModelConfigError(f"{cfg.folder / 'config.json'}: outputs: {path.name} has no output "
                                       f"{wanted!r} (it has {names})")
        self.device, self.cuda = device, cuda

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        wanted = [self.logits] + ([self.embedding] if self.embedding else [])
        if self.cuda:  # IO binding: input and outputs stay on the GPU
            binding = self.session.io_binding()
            x = x.contiguous()
            binding.bind_input(self.input, "cuda", self.device.index or 0, _np_dtype(x), tuple(x.shape), x.data_ptr())
            for name in wanted:
                binding.bind_output(name, "cuda", self.device.index or 0)
            self.session.run_with_iobinding(binding)
            out = [torch.from_dlpack(o._ortvalue.to_dlpack()) for o in binding.get_outputs()]  # noqa: SLF001
        else:
            out = [torch.from_numpy(o) for o in self.session.run(wanted, {self.input: x.numpy()})]
        return out[0], (out[1] if self.embedding else None)


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

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.module(x)
        out = out if isinstance(out, (tuple, list)) else (out,)
        return out[self.logits], (out[self.embedding] if self.embedding is not None else None)


def _np_dtype(x: torch.Tensor) -> type:
    return {torch.float32: np.float32, torch.float16: np.float16, torch.float64: np.float64,
            torch.int64: np.int64, torch.int32: np.int32}[x.dtype]


@dataclass
class HostedModel:
    config: ModelConfig
    runner: Runner
    mc_runner: Runner | None
    device: torch.device

    @property
    def name(self) -> str:
        return self.config.name

    def forward(self, x: torch.Tensor, samples: int = 0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits [N, C] (or [N, T, C] with samples=T MC-dropout passes) and the embedding [N, D]."""
        x = self._checked(x).to(self.device, non_blocking=True)
        if samples <= 0:
            parts = [self.runner(c) for c in x.split(self.config.max_batch_rows)]
            logits = torch.cat([p[0] for p in parts])
            return logits, (torch.cat([p[1] for p in parts]) if parts and parts[0][1] is not None else None)
        if self.mc_runner is None:
            raise BadInput("model.samples", f"model {self.name} has no MC-dropout variant "
                                            f"(add model_mc{self.config.model_file.suffix} with dropout active)")
        rows = max(1, self.config.max_batch_rows // samples)  # the T copies of a chunk go as one batch
        with _RNG_LOCK, torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(seed)
            parts = [self._mc_chunk(c, samples) for c in x.split(rows)]
        return torch.cat(parts), None

    def _mc_chunk(self, chunk: torch.Tensor, samples: int) -> torch.Tensor:
        repeated = chunk.repeat((samples,) + (1,) * (chunk.dim() - 1))  # [T·n, ...]
        logits = self.mc_runner(repeated)[0]
        return logits.view(samples, chunk.shape[0], -1).transpose(0, 1)  # [n, T, C]

    def _checked(self, x: torch.Tensor) -> torch.Tensor:
        want = self.config.input_shape
        if x.dim() != len(want) or any(w != -1 and w != n for w, n in zip(want[1:], x.shape[1:])):
            shape = ["N" if d == -1 else d for d in want]
            raise BadInput("inputs", f"model {self.name} takes shape {shape}, got {list(x.shape)}")
        dtype = _TORCH_DTYPES[self.config.input_dtype]
        if x.dtype != dtype and not (x.is_floating_point() and dtype.is_floating_point):
            raise BadInput("inputs.dtype", f"model {self.name} takes {self.config.input_dtype}, got {x.dtype}")
        return x.to(dtype)  # float to float: cast


@dataclass
class Committee:
    config: ModelConfig
    members: list[HostedModel]

    @property
    def name(self) -> str:
        return self.config.name

    def forward(self, x: torch.Tensor, samples: int = 0, seed: int = 0) -> tuple[torch.Tensor, None]:
        """The members' logits stacked: [N, M, C]."""
        if samples > 0:
            raise BadInput("model.samples", f"{self.name} is a committee: its members are the sample axis")
        return torch.stack([m.forward(x)[0] for m in self.members], dim=1), None


class ModelRepository:
    """Models loaded from a folder of model folders; `reload` swaps in a fresh set atomically."""

    def __init__(self, root: Path | None, device: torch.device) -> None:
        self.root, self.device = root, device
        self.models: dict[str, HostedModel | Committee] = {}
        self.errors: dict[str, str] = {}
        self.reload()

    def get(self, name: str) -> HostedModel | Committee:
        model = self.models.get(name)
        if model is None:
            why = f" (it failed to load: {self.errors[name]})" if name in self.errors else ""
            raise BadInput("model.name", f"no model {name!r}{why}; serving: {', '.join(sorted(self.models)) or 'none'}")
        return model

    def reload(self) -> None:
        models, errors = {}, {}
        folders = sorted(p for p in self.root.iterdir() if p.is_dir()) if self.root else []
        configs = {}
        for folder in folders:
            try:
                configs[folder.name] = model_config.load(folder)
            except ModelConfigError as err:
                errors[folder.name] = str(err)
        for name, cfg in configs.items():
            if cfg.committee:
                continue
            try:
                models[name] = self._load(cfg)
            except Exception as err:  # noqa: BLE001 - one broken model must not stop the others
                errors[name] = err.args[0] if isinstance(err, ModelConfigError) else f"{cfg.model_file}: {err}"
        for name, cfg in configs.items():
            if cfg.committee:
                missing = [m for m in cfg.committee if m not in models or isinstance(models[m], Committee)]
                if missing:
                    errors[name] = f"{cfg.folder / 'config.json'}: committee: no loaded model {missing[0]!r}"
                else:
                    models[name] = Committee(cfg, [models[m] for m in cfg.committee])
        for name, err in errors.items():
            log.error("model %s not served: %s", name, err)
        self.models, self.errors = models, errors  # one assignment each: readers see old or new

    def _load(self, cfg: ModelConfig) -> HostedModel:
        if cfg.platform == "onnx":
            runner = OnnxRunner(cfg.model_file, cfg, self.device)
            mc = OnnxRunner(cfg.mc_file, cfg, self.device) if cfg.mc_file else None
        else:
            runner = TorchRunner(cfg.model_file, cfg, self.device, mc=False)
            scripted = cfg.model_file.suffix == ".pt"
            mc_path = cfg.mc_file or (cfg.model_file if scripted else None)
            mc = TorchRunner(mc_path, cfg, self.device, mc=True) if mc_path else None
        return HostedModel(cfg, runner, mc, self.device)


def model_info(m: HostedModel | Committee):
    """The ServerInfo entry of a model (its signature, outputs, default strategy)."""
    from poolscore.v1 import scoring_pb2 as pb

    c = m.config
    if isinstance(m, Committee):
        return pb.ModelInfo(name=c.name, platform="committee", default_strategy=c.strategy, members=list(c.committee),
                            input=pb.TensorSignature(name=m.members[0].config.input_name,
                                                     dtype=m.members[0].config.input_dtype,
                                                     shape=m.members[0].config.input_shape))
    return pb.ModelInfo(name=c.name, platform=c.platform, default_strategy=c.strategy,
                        input=pb.TensorSignature(name=c.input_name, dtype=c.input_dtype, shape=c.input_shape),
                        logits_output=c.logits_output, embedding_output=c.embedding_output,
                        mc_dropout=m.mc_runner is not None)
