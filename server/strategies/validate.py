"""Shape and dtype checks before scoring, and the message for a row that poisoned its score.

No torch here: tensors and NumPy arrays are checked alike (shape, ndim, dtype name)."""
from __future__ import annotations

import numpy as np

from poolscore.server.errors import BadInput
from poolscore.server.ingest.dtypes import FLOATS, name_of
from poolscore.server.strategies.registry import Strategy


def tensors(strategy: Strategy, field: str, x, embedding, ids) -> None:
    """Raise BadInput naming the field when `strategy` cannot take these tensors."""
    if not strategy.pointwise:  # a selection: the session runs its pre_score's kernel
        raise BadInput("strategy.name", f"{strategy.name} selects over a pre_score; it scores no batch itself")
    if strategy.scores_ids:
        if ids is None:
            raise BadInput("ids", f"strategy {strategy.name} scores ids; none were sent")
        return
    if x is None:
        raise BadInput(field, f"strategy {strategy.name} needs {field} shaped {strategy.shape}")
    _float(field, x)
    if x.ndim != strategy.rank:
        raise BadInput(field, f"strategy {strategy.name} needs shape {strategy.shape}, got {list(x.shape)}")
    if any(n == 0 for n in x.shape[1:]):
        raise BadInput(field, f"empty axis in shape {list(x.shape)}")
    if x.shape[-1] < strategy.min_classes:
        raise BadInput(field, f"strategy {strategy.name} needs at least {strategy.min_classes} classes, got {x.shape[-1]}")
    if strategy.needs_embedding:
        _embedding(strategy, x, embedding)
    if ids is not None and ids.shape[0] != x.shape[0]:
        raise BadInput("ids", f"{ids.shape[0]} ids for {x.shape[0]} rows of {field}")


def _float(field: str, x) -> None:
    if name_of(x) not in FLOATS:
        raise BadInput(f"{field}.dtype", f"{name_of(x)} is not one of {', '.join(FLOATS)}")


def _embedding(strategy: Strategy, x, embedding) -> None:
    if embedding is None:
        raise BadInput("embedding", f"strategy {strategy.name} needs an embedding [N, D]")
    _float("embedding", embedding)
    if embedding.ndim != 2 or embedding.shape[0] != x.shape[0]:
        raise BadInput("embedding", f"needs shape [{x.shape[0]}, D] to match the rows, got {list(embedding.shape)}")


def bad_row(field: str, kind: str, values: np.ndarray, embedding: np.ndarray | None, row: int) -> BadInput:
    """Describe why `row` gave a non-finite score: the only row looked at twice (as NumPy)."""
    values = values.reshape(-1).astype(np.float64)
    if embedding is not None and not np.isfinite(embedding.astype(np.float64)).all():
        return BadInput("embedding", "NaN" if np.isnan(embedding.astype(np.float64)).any() else "Inf", row)
    if np.isnan(values).any():
        return BadInput(field, "NaN", row)
    if kind == "probabilities":
        if (values < 0).any():
            return BadInput(field, "negative probability", row)
        if np.isinf(values).any():
            return BadInput(field, "Inf", row)
        return BadInput(field, "no class has a probability above 0", row)
    if kind == "log_probabilities" and not (values == np.inf).any():
        return BadInput(field, "every log-probability is -inf", row)
    if np.isinf(values).any():
        return BadInput(field, "Inf", row)
    return BadInput(field, "score not finite (overflow)", row)
