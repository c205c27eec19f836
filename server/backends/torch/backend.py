"""The torch backend: compiled kernels and the top-K on the scoring device (CUDA or CPU)."""
from __future__ import annotations

import contextlib
import threading
import warnings
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from poolscore.server.backends.base import Runner
from poolscore.server.backends.torch import device as devices
from poolscore.server.backends.torch.hashing import random_scores
from poolscore.server.backends.torch.compiled import WARM_CLASSES
from poolscore.server.backends.torch.scorer import Scorer
from poolscore.server.ingest.tensors import RawTensor, checked
from poolscore.server.models.config import ModelConfig
from poolscore.server.runtime.threads import scoring_threads
from poolscore.server.strategies import ScoreOptions, Strategy
from poolscore.server.topk.numpy_topk import NumpyTopK
from poolscore.server.topk.torch_topk import TorchTopK

# Read-only views are intended: kernels never write their input. A filter set once, as
# catch_warnings around each view would swap the process's filters under other threads.
warnings.filterwarnings("ignore", message="The given buffer is not writable", category=UserWarning)

_RNG_LOCK = threading.Lock()  # torch's dropout draws from the global generator: one seeded pass at a time
_NUMPY_ARGMAX = (torch.float32, torch.float64, torch.float16)  # bfloat16 has no NumPy dtype


class TorchBackend:
    name = "torch"

    def __init__(self, device: str, compile: str, on_compiled: Callable[[int], None] | None = None,
                 threads: int = 0) -> None:
        torch.set_num_threads(scoring_threads(threads))  # before any kernel compiles for it
        self.scorer = Scorer(devices.choose(device), compile=compile, on_compiled=on_compiled)
        self.device = self.scorer.device
        self.device_type = self.device.type
        self.description = devices.describe(self.device)
        self.xp = torch

    def view(self, raw: RawTensor, field: str) -> torch.Tensor:
        """A read-only tensor over the message bytes (no copy); the scorer makes the one copy to the device."""
        dtype, shape = checked(raw, field)
        if not len(raw.data):
            return torch.empty(shape, dtype=getattr(torch, dtype.name))
        return torch.frombuffer(raw.data, dtype=getattr(torch, dtype.name)).view(shape)

    def from_numpy(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a))

    def to_numpy(self, t: torch.Tensor) -> np.ndarray:
        t = t.detach().cpu()
        return (t.float() if t.dtype == torch.bfloat16 else t).numpy()

    def to_device(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.device, non_blocking=True)

    def cast(self, t: torch.Tensor, dtype: str) -> torch.Tensor:
        return t.to(getattr(torch, dtype))

    def arange(self, first: int, rows: int) -> torch.Tensor:
        # NumPy fills it in this thread; torch would fork onto cores that gRPC is using
        return torch.from_numpy(np.arange(first, first + rows, dtype=np.int64))

    def score(self, strategy: Strategy, x: torch.Tensor | None, *, embedding: torch.Tensor | None = None,
              ids: torch.Tensor | None = None, options: ScoreOptions) -> torch.Tensor:
        return self.scorer.score(strategy, x, embedding=embedding, ids=ids, options=options)

    def gumbel_keys(self, scores: torch.Tensor, ids: torch.Tensor, seed: int, beta: float, power: bool) -> torch.Tensor:
        u = random_scores(ids.to(self.device), seed) + 2.0**-54  # in (0, 1): the log of a log stays finite
        s = scores.to(torch.float64)
        return beta * (torch.log(s) if power else s) - torch.log(-torch.log(u))

    def predicted_class(self, x: torch.Tensor, kind: str, rows: np.ndarray | None = None) -> torch.Tensor:
        if x.dim() == 2 and x.device.type == "cpu" and x.dtype in _NUMPY_ARGMAX:
            # NumPy's gather and argmax run 2.5-7x torch's on the CPU (1,000 rows of C = 1000:
            # 0.2 against 1.5 ms a batch, a sixth of a shared-memory pool's time); same first max
            a = x.detach().numpy()
            return torch.from_numpy((a if rows is None else a.take(np.asarray(rows, np.int64), 0)).argmax(-1))
        if rows is not None:  # gathered where x lives, before any copy: only these rows travel
            x = x[torch.from_numpy(np.asarray(rows, np.int64)).to(x.device)]
        x = x.to(self.device)
        if x.dim() == 3:  # the class of the mean prediction over samples
            z = x.to(torch.float64)
            x = (z if kind == "probabilities" else torch.softmax(z, -1)).mean(1)  # log-probabilities: softmax is exp
        return x.argmax(-1).cpu()

    def empty_top(self, k: int) -> TorchTopK | NumpyTopK:
        return empty_top(k, self.device)

    def runner(self, path: Path, config: ModelConfig, mc: bool) -> Runner:
        from poolscore.server.backends.torch import runners

        return runners.load(path, config, self, mc)

    @contextlib.contextmanager
    def seeded(self, seed: int) -> Iterator[None]:
        """Seed torch's generator for one MC pass, restoring it after."""
        with _RNG_LOCK, torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(seed)
            yield

    def warm(self, names: list[str], classes: tuple[int, ...] = WARM_CLASSES) -> list:
        if names and self.scorer.kernels.mode != "off":
            return self.scorer.warm(names, classes=classes)
        return []

    def close(self) -> None:
        self.scorer.close()


def empty_top(k: int, device: torch.device) -> TorchTopK | NumpyTopK:
    """The top-K a session keeps for scores on `device`. float64 keeps every strategy's
    scores exactly (random's 53 bits, float64 inputs). On the CPU the NumPy top-K merges
    views of the scores: a merge is a dozen small ops, and NumPy's cost a third of torch's
    (2.0 against 3.7 ms per 80 MB pool); on CUDA the torch one keeps them on the device."""
    if device.type == "cpu":
        return NumpyTopK.empty(k, np.float64)
    return TorchTopK.empty(k, dtype=torch.float64, device=device)
