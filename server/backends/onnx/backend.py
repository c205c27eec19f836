"""The ONNX backend: scorer graphs in onnxruntime, a NumPy top-K, no torch import at all.

For a deployment that wants a small image (onnxruntime alone) or onnxruntime's providers.
It computes in float32 and hosts ONNX models only."""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import onnxruntime as ort

from poolscore.server.backends.base import Runner
from poolscore.server.backends.onnx.scorer import OnnxScorer, first_bad_row
from poolscore.server.errors import BadInput
from poolscore.server.ingest.tensors import RawTensor, checked
from poolscore.server.models.config import ModelConfig, ModelConfigError
from poolscore.server.runtime.threads import scoring_threads
from poolscore.server.strategies import ScoreOptions, Strategy, validate
from poolscore.server.topk.numpy_topk import NumpyTopK

try:
    from ml_dtypes import bfloat16 as _bf16
except ImportError:  # pragma: no cover
    _bf16 = None


def _numpy_dtype(name: str):
    return _bf16 if name == "bfloat16" else np.dtype(name)


class OnnxBackend:
    name = "onnx"

    def __init__(self, device: str = "auto", threads: int = 0) -> None:
        cuda = "CUDAExecutionProvider" in ort.get_available_providers() and device in ("auto", "cuda", "cuda:0")
        if device.startswith("cuda") and not cuda:
            raise ValueError(f"device {device!r} asked for, but this onnxruntime has no CUDA provider")
        self.scorer = OnnxScorer(["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"],
                                 intra_op_threads=scoring_threads(threads))
        self.device_type = "cuda" if cuda else "cpu"
        self.description = f"{self.device_type} (onnxruntime {ort.__version__}, {self.scorer.providers[0]})"
        self.xp = np

    def view(self, raw: RawTensor, field: str) -> np.ndarray:
        dtype, shape = checked(raw, field)
        numpy_dtype = _numpy_dtype(dtype.name)
        if numpy_dtype is None:
            raise BadInput(f"{field}.dtype", "bfloat16 needs the ml_dtypes package on this server")
        return np.frombuffer(raw.data, dtype=numpy_dtype).reshape(shape)

    def from_numpy(self, a: np.ndarray) -> np.ndarray:
        return a

    def to_numpy(self, a: np.ndarray) -> np.ndarray:
        return a

    def to_device(self, a: np.ndarray) -> np.ndarray:
        return a  # onnxruntime copies to its provider's device itself

    def cast(self, a: np.ndarray, dtype: str) -> np.ndarray:
        return a.astype(dtype)

    def arange(self, first: int, rows: int) -> np.ndarray:
        return np.arange(first, first + rows, dtype=np.int64)

    def score(self, strategy: Strategy, x: np.ndarray | None, *, embedding: np.ndarray | None = None,
              ids: np.ndarray | None = None, options: ScoreOptions) -> np.ndarray:
        field = options.input_kind.value
        validate.tensors(strategy, field, x, embedding, ids)
        if strategy.scores_ids:
            return self.scorer.score("random", ids, options=options)
        emb = None if embedding is None else _float32(embedding)
        scores = self.scorer.score(strategy.name, _float32(x), embedding=emb, options=options)
        row = first_bad_row(scores)
        if row is not None:
            raise validate.bad_row(field, field, _float32(x[row]), None if emb is None else emb[row], row)
        return scores

    def gumbel_keys(self, scores: np.ndarray, ids: np.ndarray, seed: int, beta: float, power: bool) -> np.ndarray:
        u = self.scorer.score("random", ids, options=ScoreOptions(seed=seed)) + 2.0**-54  # in (0, 1)
        s = np.asarray(scores, np.float64)
        with np.errstate(divide="ignore"):  # power sampling: a score of 0 is never drawn (log 0 = -inf)
            return beta * (np.log(s) if power else s) - np.log(-np.log(u))

    def predicted_class(self, x: np.ndarray, kind: str, rows: np.ndarray | None = None) -> np.ndarray:
        if rows is not None:
            x = np.asarray(x)[rows]
        if x.ndim == 3:  # the class of the mean prediction over samples
            z = np.asarray(x, np.float64)
            if kind != "probabilities":
                z = np.exp(z - z.max(-1, keepdims=True))
                z /= z.sum(-1, keepdims=True)
            x = z.mean(1)
        return np.asarray(x).argmax(-1).astype(np.int64)

    def empty_top(self, k: int) -> NumpyTopK:
        return NumpyTopK.empty(k, np.float64)

    def runner(self, path: Path, config: ModelConfig, mc: bool) -> Runner:
        if path.suffix != ".onnx":
            raise ModelConfigError(f"{path}: torch models need --backend torch")
        from poolscore.server.models.onnx_runner import OnnxRunner

        return OnnxRunner(path, config, self)

    def seeded(self, seed: int) -> contextlib.nullcontext:
        return contextlib.nullcontext()  # onnxruntime draws its own dropout masks

    def warm(self, names: list[str], classes: tuple[int, ...] = ()) -> list:
        """Build the scorer sessions now (float32 logits, the common case): nothing left pending."""
        for name in names:
            if name != "random":
                self.scorer.session(name)
        return []

    def close(self) -> None:
        self.scorer.close()


def _float32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)
