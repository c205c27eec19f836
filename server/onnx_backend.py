"""The ONNX backend: scorer graphs in onnxruntime, a NumPy top-K, no torch import at all.

For a deployment that wants a small image (onnxruntime alone) or onnxruntime's providers.
It computes in float32 and hosts ONNX models only."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from poolscore.server import decode
from poolscore.server.errors import BadInput
from poolscore.server.threads import scoring_threads
from poolscore.server.onnx_scorer import OnnxScorer, first_bad_row
from poolscore.server.scoring import ScoreOptions, Strategy
from poolscore.server.scoring import validate
from poolscore.server.topk_numpy import NumpyTopK
from poolscore.server.wire import RawTensor
from poolscore.v1 import scoring_pb2 as pb

try:
    from ml_dtypes import bfloat16 as _bf16
except ImportError:  # pragma: no cover
    _bf16 = None
_DTYPES = {"float16": np.float16, "float32": np.float32, "float64": np.float64, "int64": np.int64, "int32": np.int32,
           "bfloat16": _bf16}


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
        name, shape = decode.checked(raw, field)
        if _DTYPES[name] is None:
            raise BadInput(f"{field}.dtype", "bfloat16 needs the ml_dtypes package on this server")
        return np.frombuffer(raw.data, dtype=_DTYPES[name]).reshape(shape)

    def from_numpy(self, a: np.ndarray) -> np.ndarray:
        return a

    def arange(self, first: int, rows: int) -> np.ndarray:
        return np.arange(first, first + rows, dtype=np.int64)

    def score(self, strategy: Strategy, x, *, embedding=None, ids=None, options: ScoreOptions) -> np.ndarray:
        field = options.input_kind.value
        validate.tensors(strategy, field, x, embedding, ids)
        if strategy.scores_ids:
            return self.scorer.score("random", ids, options=options)
        scores = self.scorer.score(strategy.name, _float32(x), embedding=None if embedding is None else _float32(embedding),
                                   options=options)
        row = first_bad_row(scores)
        if row is not None:
            raise validate.bad_row(field, field, _float32(x[row]), None if embedding is None else _float32(embedding[row]), row)
        return scores

    def empty_top(self, k: int) -> NumpyTopK:
        return NumpyTopK.empty(k, np.float64)

    def to_numpy(self, a: np.ndarray) -> np.ndarray:
        return a

    def encode(self, a: np.ndarray) -> pb.Tensor:
        a = np.ascontiguousarray(a)
        return pb.Tensor(dtype=decode.WIRE[str(a.dtype)], shape=list(a.shape), data=a.tobytes())

    def models(self, root: Path | None):
        from poolscore.server.models import ModelRepository
        return ModelRepository(root, self)

    def warm(self, names: list[str]) -> None:
        """Build the scorer sessions now (float32 logits, the common case)."""
        for name in names:
            if name != "random":
                self.scorer.session(name)

    def close(self) -> None:
        self.scorer.close()


def _float32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)
