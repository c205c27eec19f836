"""Hosted models: raw inputs → logits (and an embedding) on the backend's device.

One runner per model file: onnxruntime (the CUDA provider when the device is CUDA, with
IO binding so tensors stay on the GPU) or torch (torch.export `.pt2`, TorchScript `.pt`;
torch backend only). MC-dropout passes run the T copies of a chunk through the model as
one batch; a committee stacks its members' logits. Array code goes through the backend's
namespace (`xp`: torch or NumPy), so the ONNX backend never imports torch. The repository
loads every folder it can and reports the others: one broken model never takes the rest down.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poolscore.server import model_config
from poolscore.server.errors import BadInput
from poolscore.server.model_config import ModelConfig, ModelConfigError
from poolscore.v1 import scoring_pb2 as pb

log = logging.getLogger(__name__)
_RNG_LOCK = threading.Lock()  # torch's dropout draws from the global generator: one seeded pass at a time


class OnnxRunner:
    def __init__(self, path: Path, cfg: ModelConfig, backend) -> None:
        import onnxruntime as ort

        cuda = backend.device_type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers()
        providers = ["CUDAExecutionProvider"] if cuda else []
        self.session = ort.InferenceSession(str(path), providers=providers + ["CPUExecutionProvider"])
        names = [o.name for o in self.session.get_outputs()]
        self.input = cfg.input_name or self.session.get_inputs()[0].name
        self.logits = cfg.logits_output or names[0]
        self.embedding = cfg.embedding_output or None
        for wanted in (self.logits, self.embedding):
            if wanted and wanted not in names:
                raise ModelConfigError(f"{cfg.folder / 'config.json'}: outputs: {path.name} has no output "
                                       f"{wanted!r} (it has {names})")
        self.backend, self.io_binding = backend, cuda and backend.name == "torch"

    def __call__(self, x):
        wanted = [self.logits] + ([self.embedding] if self.embedding else [])
        if self.io_binding:
            out = self._bound(x, wanted)
        else:
            feed = self.backend.to_numpy(x) if self.backend.name == "torch" else x
            out = [self.backend.from_numpy(o) for o in self.session.run(wanted, {self.input: np.ascontiguousarray(feed)})]
        return out[0], (out[1] if self.embedding else None)

    def _bound(self, x, wanted: list[str]):
        """IO binding: the torch tensor's GPU memory in, outputs left on the GPU (no host round trip)."""
        import torch

        binding, index = self.session.io_binding(), x.device.index or 0
        x = x.contiguous()
        binding.bind_input(self.input, "cuda", index, self.backend.to_numpy(x[:0]).dtype, tuple(x.shape), x.data_ptr())
        for name in wanted:
            binding.bind_output(name, "cuda", index)
        self.session.run_with_iobinding(binding)
        return [torch.from_dlpack(o._ortvalue.to_dlpack()) for o in binding.get_outputs()]  # noqa: SLF001


class TorchRunner:
    def __init__(self, path: Path, cfg: ModelConfig, backend, mc: bool) -> None:
        if backend.name != "torch":
            raise ModelConfigError(f"{path}: torch models need --backend torch")
        import torch

        self.torch = torch
        if path.suffix == ".pt2":
            self.module = torch.export.load(str(path)).module().to(backend.device)
        else:
            self.module = torch.jit.load(str(path), map_location=backend.device)
            self.module.eval()
            if mc:  # dropout on, everything else (batch norm) as in inference
                for sub in self.module.modules():
                    if "Dropout" in getattr(sub, "original_name", type(sub).__name__):
                        sub.train()
        self.logits = int(cfg.logits_output or 0)
        self.embedding = int(cfg.embedding_output) if cfg.embedding_output else None

    def __call__(self, x):
        with self.torch.inference_mode():
            out = self.module(x)
        out = out if isinstance(out, (tuple, list)) else (out,)
        return out[self.logits], (out[self.embedding] if self.embedding is not None else None)


@dataclass
class HostedModel:
    config: ModelConfig
    runner: object
    mc_runner: object | None
    backend: object

    @property
    def name(self) -> str:
        return self.config.name

    def forward(self, x, samples: int = 0, seed: int = 0):
        """Logits [N, C] (or [N, T, C] with samples=T MC-dropout passes) and the embedding [N, D]."""
        xp, x = self.backend.xp, self._checked(x)
        if self.backend.name == "torch":
            x = x.to(self.backend.device, non_blocking=True)
        if samples <= 0:
            parts = [self.runner(c) for c in _chunks(x, self.config.max_batch_rows)]
            emb = [p[1] for p in parts]
            return xp.concatenate([p[0] for p in parts]), (xp.concatenate(emb) if emb and emb[0] is not None else None)
        if self.mc_runner is None:
            raise BadInput("model.samples", f"model {self.name} has no MC-dropout variant "
                                            f"(add model_mc{self.config.model_file.suffix} with dropout active)")
        rows = max(1, self.config.max_batch_rows // samples)  # the T copies of a chunk go as one batch
        with _seeded(self.backend, seed):
            parts = [self._mc_chunk(c, samples) for c in _chunks(x, rows)]
        return xp.concatenate(parts), None

    def _mc_chunk(self, chunk, samples: int):
        repeated = self.backend.xp.tile(chunk, (samples,) + (1,) * (chunk.ndim - 1))  # [T·n, ...]
        logits = self.mc_runner(repeated)[0]
        return logits.reshape(samples, chunk.shape[0], -1).swapaxes(0, 1)  # [n, T, C]

    def _checked(self, x):
        want = self.config.input_shape
        if x.ndim != len(want) or any(w != -1 and w != n for w, n in zip(want[1:], x.shape[1:])):
            shape = ["N" if d == -1 else d for d in want]
            raise BadInput("inputs", f"model {self.name} takes shape {shape}, got {list(x.shape)}")
        sent, dtype = str(x.dtype).removeprefix("torch."), self.config.input_dtype
        if sent != dtype and not (sent.startswith(("float", "bfloat")) and dtype.startswith("float")):
            raise BadInput("inputs.dtype", f"model {self.name} takes {dtype}, got {sent}")
        return x if sent == dtype else _cast(self.backend, x, dtype)  # float to float: cast

    def info(self) -> pb.ModelInfo:
        c = self.config
        return pb.ModelInfo(name=c.name, platform=c.platform, default_strategy=c.strategy,
                            input=pb.TensorSignature(name=c.input_name, dtype=c.input_dtype, shape=c.input_shape),
                            logits_output=c.logits_output, embedding_output=c.embedding_output,
                            mc_dropout=self.mc_runner is not None)


@dataclass
class Committee:
    config: ModelConfig
    members: list[HostedModel]
    backend: object

    @property
    def name(self) -> str:
        return self.config.name

    def forward(self, x, samples: int = 0, seed: int = 0):
        """The members' logits stacked: [N, M, C]."""
        if samples > 0:
            raise BadInput("model.samples", f"{self.name} is a committee: its members are the sample axis")
        return self.backend.xp.stack([m.forward(x)[0] for m in self.members], 1), None

    def info(self) -> pb.ModelInfo:
        first = self.members[0].config
        return pb.ModelInfo(name=self.name, platform="committee", default_strategy=self.config.strategy,
                            members=list(self.config.committee),
                            input=pb.TensorSignature(name=first.input_name, dtype=first.input_dtype, shape=first.input_shape))


def _chunks(x, rows: int) -> list:
    return [x[i:i + rows] for i in range(0, x.shape[0], rows)] or [x]


def _cast(backend, x, dtype: str):
    if backend.name == "torch":
        import torch
        return x.to(getattr(torch, dtype))
    return x.astype(dtype)


class _seeded:
    """Seed torch's generator for one MC pass, restoring it after (onnxruntime draws its own)."""

    def __init__(self, backend, seed: int) -> None:
        self.backend, self.seed, self.fork = backend, seed, None

    def __enter__(self) -> None:
        if self.backend.name != "torch":
            return
        import torch
        _RNG_LOCK.acquire()
        cuda = [self.backend.device] if self.backend.device.type == "cuda" else []
        self.fork = torch.random.fork_rng(devices=cuda)
        self.fork.__enter__()
        torch.manual_seed(self.seed)

    def __exit__(self, *exc) -> None:
        if self.fork is not None:
            self.fork.__exit__(*exc)
            _RNG_LOCK.release()


class ModelRepository:
    """Models loaded from a folder of model folders; `reload` swaps in a fresh set atomically."""

    def __init__(self, root: Path | None, backend) -> None:
        self.root, self.backend = root, backend
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
        configs, errors = {}, {}
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()) if self.root else []:
            try:
                configs[folder.name] = model_config.load(folder)
            except ModelConfigError as err:
                errors[folder.name] = str(err)
        models = {}
        for name, cfg in configs.items():
            if not cfg.committee:
                try:
                    models[name] = self._load(cfg)
                except Exception as err:  # noqa: BLE001 - one broken model must not stop the others
                    errors[name] = err.args[0] if isinstance(err, ModelConfigError) else f"{cfg.model_file}: {err}"
        for name, cfg in configs.items():
            if cfg.committee:
                missing = [m for m in cfg.committee if not isinstance(models.get(m), HostedModel)]
                if missing:
                    errors[name] = f"{cfg.folder / 'config.json'}: committee: no loaded model {missing[0]!r}"
                else:
                    models[name] = Committee(cfg, [models[m] for m in cfg.committee], self.backend)
        for name, err in errors.items():
            log.error("model %s not served: %s", name, err)
        self.models, self.errors = models, errors  # one assignment each: readers see old or new

    def _load(self, cfg: ModelConfig) -> HostedModel:
        if cfg.platform == "onnx":
            mc = OnnxRunner(cfg.mc_file, cfg, self.backend) if cfg.mc_file else None
            return HostedModel(cfg, OnnxRunner(cfg.model_file, cfg, self.backend), mc, self.backend)
        runner = TorchRunner(cfg.model_file, cfg, self.backend, mc=False)
        scripted = cfg.model_file.suffix == ".pt"
        mc_path = cfg.mc_file or (cfg.model_file if scripted else None)
        mc = TorchRunner(mc_path, cfg, self.backend, mc=True) if mc_path else None
        return HostedModel(cfg, runner, mc, self.backend)
