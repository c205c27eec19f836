"""The seams every backend fills: what the pipeline, sessions and hosted models may call.

A backend owns one array type (torch tensors on its device, or NumPy arrays) and everything
that touches it: views of wire bytes, kernels, the top-K, model runners, host copies. Nothing
outside backends/ branches on which backend it has; it calls these members instead."""
from __future__ import annotations

from concurrent.futures import Future

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol, TypeAlias

import numpy as np

from poolscore.server.ingest.tensors import RawTensor
from poolscore.server.strategies import ScoreOptions, Strategy

Array: TypeAlias = Any  # the backend's array type: torch.Tensor, or np.ndarray (the ONNX backend)


class TopK(Protocol):
    """The K best (score, id) pairs seen so far, as an immutable value (see topk/)."""
    k: int

    @property
    def scores(self) -> Array: ...  # [≤ k], best first

    @property
    def ids(self) -> Array: ...  # [≤ k] int64, aligned; ties go to the smaller id

    def __len__(self) -> int: ...

    def held_ids(self) -> Array: ...  # every id the value holds (≤ 2K): what memory is spent on

    def merged(self, scores: Array, ids: Array) -> "TopK": ...  # a new value; self stays as it was


class Runner(Protocol):
    """One model file, loaded for the backend's device: inputs → (logits, embedding or None)."""

    def __call__(self, x: Array) -> tuple[Array, Array | None]: ...


class Backend(Protocol):
    name: str  # "torch" or "onnx", as --backend says
    device_type: str  # "cpu" or "cuda": the metrics' device label
    description: str  # ServerInfo's device line
    xp: Any  # the array namespace (torch or numpy): concatenate, stack, tile

    def view(self, raw: RawTensor, field: str) -> Array: ...  # read-only, no copy; BadInput names the field

    def from_numpy(self, a: np.ndarray) -> Array: ...

    def to_numpy(self, a: Array) -> np.ndarray: ...  # on the host; bfloat16 widened to float32

    def to_device(self, a: Array) -> Array: ...  # the one copy onto the scoring device

    def cast(self, a: Array, dtype: str) -> Array: ...  # to a dtype named as ingest/dtypes.py names it

    def arange(self, first: int, rows: int) -> Array: ...  # int64 row numbers, the ids of an id-less batch

    def score(self, strategy: Strategy, x: Array | None, *, embedding: Array | None = None,
              ids: Array | None = None, options: ScoreOptions) -> Array: ...  # [N]; BadInput names a bad row

    def gumbel_keys(self, scores: Array, ids: Array, seed: int, beta: float, power: bool) -> Array: ...
    # float64 [N]: β·s (or β·log s) plus a Gumbel draw seeded by (seed, id); the top K of these
    # keys is a sample of K without replacement, p ∝ exp(β·s) (or s^β): stochastic's selection

    def predicted_class(self, x: Array, kind: str, rows: np.ndarray | None = None) -> Array: ...
    # int64 [N] (or [len(rows)], those rows only) on the host: argmax of p (of p̄ over samples)

    def empty_top(self, k: int) -> TopK: ...

    def runner(self, path: Path, config: Any, mc: bool) -> Runner: ...  # ModelConfigError if it cannot host it

    def seeded(self, seed: int) -> AbstractContextManager[None]: ...  # MC-dropout passes drawn from `seed`

    def warm(self, names: list[str], classes: tuple[int, ...]) -> list[Future]: ...  # compiling starts; done: they serve

    def close(self) -> None: ...
