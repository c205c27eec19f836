"""Shape and dtype checks before scoring, and the message for a row that poisoned its score."""
from __future__ import annotations

import torch

from poolscore.server.errors import BadInput
from poolscore.server.scoring.registry import Strategy

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def tensors(strategy: Strategy, field: str, x: torch.Tensor | None,
            embedding: torch.Tensor | None, ids: torch.Tensor | None) -> None:
    """Raise BadInput naming the field when `strategy` cannot take these tensors."""
    if strategy.scores_ids:
        if ids is None:
            raise BadInput("ids", f"strategy {strategy.name} scores ids; none were sent")
        return
    if x is None:
        raise BadInput(field, f"strategy {strategy.name} needs {field} shaped {strategy.shape}")
    _float(field, x)
    if x.dim() != strategy.rank:
        raise BadInput(field, f"strategy {strategy.name} needs shape {strategy.shape}, got {list(x.shape)}")
    if any(n == 0 for n in x.shape[1:]):
        raise BadInput(field, f"empty axis in shape {list(x.shape)}")
    if x.shape[-1] < strategy.min_classes:
        raise BadInput(field, f"strategy {strategy.name} needs at least {strategy.min_classes} classes, got {x.shape[-1]}")
    if strategy.needs_embedding:
        _embedding(strategy, x, embedding)
    if ids is not None and ids.shape[0] != x.shape[0]:
        raise BadInput("ids", f"{ids.shape[0]} ids for {x.shape[0]} rows of {field}")


def _float(field: str, x: torch.Tensor) -> None:
    if x.dtype not in FLOAT_DTYPES:
        names = ", ".join(str(d).removeprefix("torch.") for d in FLOAT_DTYPES)
        raise BadInput(f"{field}.dtype", f"{str(x.dtype).removeprefix('torch.')} is not one of {names}")


def _embedding(strategy: Strategy, x: torch.Tensor, embedding: torch.Tensor | None) -> None:
    if embedding is None:
        raise BadInput("embedding", f"strategy {strategy.name} needs an embedding [N, D]")
    _float("embedding", embedding)
    if embedding.dim() != 2 or embedding.shape[0] != x.shape[0]:
        raise BadInput("embedding", f"needs shape [{x.shape[0]}, D] to match the rows, got {list(embedding.shape)}")


def bad_row(field: str, kind: str, x: torch.Tensor, embedding: torch.Tensor | None, row: int) -> BadInput:
    """Describe why `row` gave a non-finite score: the only row looked at twice."""
    values = x[row].reshape(-1)
    if embedding is not None and not torch.isfinite(embedding[row]).all():
        has_nan = bool(torch.isnan(embedding[row]).any())
        return BadInput("embedding", "NaN" if has_nan else "Inf", row)
    if torch.isnan(values).any():
        return BadInput(field, "NaN", row)
    if kind == "probabilities":
        if (values < 0).any():
            return BadInput(field, "negative probability", row)
        if torch.isinf(values).any():
            return BadInput(field, "Inf", row)
        return BadInput(field, "no class has a probability above 0", row)
    if kind == "log_probabilities" and not (values == float("inf")).any():
        return BadInput(field, "every log-probability is -inf", row)
    if torch.isinf(values).any():
        return BadInput(field, "Inf", row)
    return BadInput(field, "score not finite (overflow)", row)
