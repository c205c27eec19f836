"""Scorer: validate → fused kernel → check → rescale, for one batch on the scoring device."""
from __future__ import annotations

import math
from typing import Callable

import torch

from poolscore.server.strategies import validate
from poolscore.server.backends.torch.compiled import WARM_CLASSES, CompiledKernels, CompileMode
from poolscore.server.backends.torch.hashing import random_scores
from poolscore.server.strategies.options import ScoreOptions, entropy_divisor
from poolscore.server.strategies.registry import STRATEGIES, Strategy, strategy_named


class Scorer:
    """Scores batches with any registered strategy on one device."""

    def __init__(self, device: torch.device | str = "cpu", compile: CompileMode = "background",
                 on_compiled: Callable[[int], None] | None = None) -> None:
        self.device = torch.device(device)
        self.kernels = CompiledKernels(compile, on_compiled)

    def score(self, strategy: str | Strategy, x: torch.Tensor | None = None, *,
              embedding: torch.Tensor | None = None, ids: torch.Tensor | None = None,
              options: ScoreOptions = ScoreOptions()) -> torch.Tensor:
        """Scores [N] (float32, float64 for float64 input or `random`) on the scoring device."""
        s = strategy if isinstance(strategy, Strategy) else strategy_named(strategy)
        field = options.input_kind.value
        validate.tensors(s, field, x, embedding, ids)
        if s.scores_ids:
            return random_scores(ids.to(self.device), options.seed)
        x = x.to(self.device, non_blocking=True)
        emb = None if embedding is None else embedding.to(self.device, non_blocking=True)
        if x.shape[0] == 0:
            return torch.empty(0, dtype=torch.float64 if x.dtype == torch.float64 else torch.float32, device=self.device)
        kind = options.input_kind.value
        inv_t = torch.tensor(1.0 / options.temperature, dtype=torch.float64, device=self.device)  # cast per input
        scores = self.kernels.kernel_for(s, kind, x, emb)(x, emb, inv_t, kind)
        _check_finite(scores, field, kind, x, emb)
        return _rescale(scores, s, options, x.shape[-1])

    def warm(self, strategies: list[str] | None = None, kind: str = "logits", dtype: torch.dtype = torch.float32,
             classes: tuple[int, ...] = WARM_CLASSES) -> list:
        """Start compiling kernels now, so first requests find them ready; their futures."""
        chosen = [STRATEGIES[n] for n in (strategies or list(STRATEGIES))]
        return self.kernels.warm(chosen, kind, dtype, self.device, classes=classes)

    def close(self) -> None:
        self.kernels.close()


def _check_finite(scores: torch.Tensor, field: str, kind: str, x: torch.Tensor, emb: torch.Tensor | None) -> None:
    """A NaN score marks a bad row. The one host sync is a sum (NaN and ±inf survive it, and
    it costs a tenth of isfinite().all()); only a non-finite sum looks for the row, which an
    overflowing sum of finite scores may not have. On the CPU, NumPy sums in this thread: a
    torch sum forks onto the other cores, and on a busy machine waiting for them cost 10% of
    the server's time."""
    total = scores.numpy().sum() if scores.device.type == "cpu" else scores.sum()
    if math.isfinite(float(total)):
        return
    bad = (~torch.isfinite(scores)).nonzero()
    if bad.shape[0]:
        row = int(bad[0, 0])
        raise validate.bad_row(field, kind, _row(x, row), None if emb is None else _row(emb, row), row)


def _row(t: torch.Tensor, row: int):
    return t[row].detach().float().cpu().numpy()


def _rescale(scores: torch.Tensor, s: Strategy, options: ScoreOptions, classes: int) -> torch.Tensor:
    """Entropies come out of the kernels in nats: to bits (or any base), or ÷ log C."""
    divisor = entropy_divisor(s.entropic, options, classes)
    if divisor is None:
        return torch.zeros_like(scores)
    return scores / divisor if divisor != 1.0 else scores
