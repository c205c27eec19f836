"""Hosted models: raw inputs → logits (and an embedding) on the backend's device.

MC-dropout passes run the T copies of a chunk through the model as one batch; a committee
stacks its members' logits. Array code goes through the backend (its `xp` namespace and the
members base.py declares), so the ONNX backend never imports torch."""
from __future__ import annotations

from dataclasses import dataclass

from poolscore.server.backends.base import Array, Backend, Runner
from poolscore.server.errors import BadInput
from poolscore.server.ingest.dtypes import name_of
from poolscore.server.models.config import ModelConfig


@dataclass(frozen=True)
class ModelInfo:
    """What ServerInfo tells of a model."""
    name: str
    platform: str  # onnx, torch or committee
    default_strategy: str
    input_name: str
    input_dtype: str
    input_shape: tuple[int, ...]
    logits_output: str = ""
    embedding_output: str = ""
    mc_dropout: bool = False
    members: tuple[str, ...] = ()


@dataclass
class HostedModel:
    config: ModelConfig
    runner: Runner
    mc_runner: Runner | None
    backend: Backend

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def input_config(self) -> ModelConfig:
        return self.config

    def forward(self, x: Array, samples: int = 0, seed: int = 0) -> tuple[Array, Array | None]:
        """Logits [N, C] (or [N, T, C] with samples=T MC-dropout passes) and the embedding [N, D]."""
        xp, x = self.backend.xp, self.backend.to_device(self._checked(x))
        if samples <= 0:
            parts = [self.runner(c) for c in _chunks(x, self.config.max_batch_rows)]
            emb = [p[1] for p in parts]
            return xp.concatenate([p[0] for p in parts]), (xp.concatenate(emb) if emb and emb[0] is not None else None)
        if self.mc_runner is None:
            raise BadInput("model.samples", f"model {self.name} has no MC-dropout variant "
                                            f"(add model_mc{self.config.model_file.suffix} with dropout active)")
        rows = max(1, self.config.max_batch_rows // samples)  # the T copies of a chunk go as one batch
        with self.backend.seeded(seed):
            parts = [self._mc_chunk(c, samples) for c in _chunks(x, rows)]
        return xp.concatenate(parts), None

    def _mc_chunk(self, chunk: Array, samples: int) -> Array:
        repeated = self.backend.xp.tile(chunk, (samples,) + (1,) * (chunk.ndim - 1))  # [T·n, ...]
        logits = self.mc_runner(repeated)[0]
        return logits.reshape(samples, chunk.shape[0], -1).swapaxes(0, 1)  # [n, T, C]

    def _checked(self, x: Array) -> Array:
        want = self.config.input_shape
        if x.ndim != len(want) or any(w != -1 and w != n for w, n in zip(want[1:], x.shape[1:])):
            shape = ["N" if d == -1 else d for d in want]
            raise BadInput("inputs", f"model {self.name} takes shape {shape}, got {list(x.shape)}")
        sent, dtype = name_of(x), self.config.input_dtype
        if sent != dtype and not (sent.startswith(("float", "bfloat")) and dtype.startswith("float")):
            raise BadInput("inputs.dtype", f"model {self.name} takes {dtype}, got {sent}")
        return x if sent == dtype else self.backend.cast(x, dtype)  # float to float: cast

    def info(self) -> ModelInfo:
        c = self.config
        return ModelInfo(c.name, c.platform, c.strategy, c.input_name, c.input_dtype, c.input_shape,
                         c.logits_output, c.embedding_output, mc_dropout=self.mc_runner is not None)


@dataclass
class Committee:
    config: ModelConfig
    members: list[HostedModel]
    backend: Backend

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def input_config(self) -> ModelConfig:
        """The members' input (the repository checks they exist; the first one's is asked for)."""
        return self.members[0].config

    def forward(self, x: Array, samples: int = 0, seed: int = 0) -> tuple[Array, Array | None]:
        """The members' logits stacked: [N, M, C]."""
        if samples > 0:
            raise BadInput("model.samples", f"{self.name} is a committee: its members are the sample axis")
        return self.backend.xp.stack([m.forward(x)[0] for m in self.members], 1), None

    def info(self) -> ModelInfo:
        first = self.input_config
        return ModelInfo(self.name, "committee", self.config.strategy, first.input_name, first.input_dtype,
                         first.input_shape, members=tuple(self.config.committee))


def _chunks(x: Array, rows: int) -> list[Array]:
    return [x[i:i + rows] for i in range(0, x.shape[0], rows)] or [x]
