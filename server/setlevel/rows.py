"""What a candidate holds, checked and made: the rows' widths, and log-probabilities on the host.

Log-probabilities are kept (float64) rather than logits: they are what every set-level strategy
reads (p for BADGE's gradient, EER's step, BatchBALD's samples), with the request's input kind
and temperature already applied, and they stay finite where probabilities underflow."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from poolscore.server.errors import BadInput
from poolscore.server.strategies import ScoreOptions, Strategy


@dataclass(frozen=True)
class Widths:
    embedding: int = 0  # D
    classes: int = 0  # C
    samples: int = 1  # T (batch_bald)

    def row_bytes(self, keeps: tuple[str, ...]) -> int:
        return (4 * self.embedding if "embedding" in keeps else 0) + (
            8 * self.classes * self.samples if "log_probs" in keeps else 0)


def widths_of(strategy: Strategy, host: Mapping[str, np.ndarray], fixed: Widths | None) -> Widths:
    """The widths of this batch's rows, checked against the first batch's; BadInput names the field."""
    rows = len(host["ids"])
    emb, x = host.get("embedding"), host.get("x")
    d = c = 0
    t = 1
    if "embedding" in strategy.keeps:
        if emb is None:
            raise BadInput("embedding", f"strategy {strategy.name} needs an embedding [N, D]")
        if emb.ndim != 2 or emb.shape[0] != rows or emb.shape[1] == 0:
            raise BadInput("embedding", f"needs shape [{rows}, D] to match the rows, got {list(emb.shape)}")
        d = emb.shape[1]
    if "log_probs" in strategy.keeps:
        rank = 3 if strategy.name == "batch_bald" else 2
        shape = "[N, T, C]" if rank == 3 else "[N, C]"
        if x is None:
            raise BadInput("logits", f"strategy {strategy.name} needs logits {shape}")
        if x.ndim != rank or x.shape[0] != rows or 0 in x.shape[1:]:
            raise BadInput("logits", f"strategy {strategy.name} needs shape {shape} with {rows} rows, got {list(x.shape)}")
        c, t = x.shape[-1], (x.shape[1] if rank == 3 else 1)
    widths = Widths(d, c, t)
    if fixed is not None and widths != fixed:
        field, now, then = _first_difference(widths, fixed)
        raise BadInput(field, f"{now} wide, but the session's first batch was {then}")
    if emb is not None and d and not np.isfinite(emb).all():
        raise BadInput("embedding", "NaN" if np.isnan(emb).any() else "Inf", int(np.flatnonzero(~np.isfinite(emb).all(axis=1))[0]))
    return widths


def _first_difference(now: Widths, then: Widths) -> tuple[str, int, int]:
    if now.embedding != then.embedding:
        return "embedding", now.embedding, then.embedding
    if now.classes != then.classes:
        return "logits", now.classes, then.classes
    return "logits", now.samples, then.samples


def log_probs(x: np.ndarray, options: ScoreOptions) -> np.ndarray:
    """log softmax(z / T) over the last axis, float64, for what the request says x holds."""
    z = np.asarray(x, np.float64)
    if options.input_kind.value == "probabilities":
        with np.errstate(divide="ignore"):
            z = np.log(z)
    z = z / options.temperature
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
