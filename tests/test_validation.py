"""Bad inputs raise a BadInput that names the field and, for NaN/Inf, the first bad row."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from poolscore.server.errors import BadInput, UnknownStrategy
from poolscore.server.backends.torch.scorer import Scorer
from poolscore.server.strategies import ScoreOptions


def logits(rng: np.random.Generator, *shape: int) -> torch.Tensor:
    return torch.from_numpy(rng.normal(size=shape).astype(np.float32))


@pytest.mark.parametrize("name", ["entropy", "margin", "bald", "vote_entropy", "kl_disagreement"])
@pytest.mark.parametrize("bad, problem", [(float("nan"), "NaN"), (float("inf"), "Inf"), (-float("inf"), "Inf")])
def test_first_non_finite_row_is_named(scorer: Scorer, rng: np.random.Generator, name: str, bad: float, problem: str) -> None:
    x = logits(rng, 20, 3, 5) if name in ("bald", "vote_entropy", "kl_disagreement") else logits(rng, 20, 5)
    x[11].view(-1)[2] = bad
    x[15].view(-1)[0] = bad
    with pytest.raises(BadInput, match=rf"^logits: {problem} in row 11$") as err:
        scorer.score(name, x)
    assert err.value.row == 11 and err.value.field == "logits"


def test_negative_probability_is_named(scorer: Scorer) -> None:
    p = torch.tensor([[0.5, 0.5], [0.2, 0.8], [1.1, -0.1]])
    with pytest.raises(BadInput, match=r"probabilities: negative probability in row 2"):
        scorer.score("entropy", p, options=ScoreOptions(input_kind="probabilities"))


def test_log_probabilities_may_hold_minus_inf_but_not_only_that(scorer: Scorer) -> None:
    lp = torch.tensor([[0.0, -float("inf")], [-float("inf"), -float("inf")]])
    assert scorer.score("entropy", lp[:1], options=ScoreOptions(input_kind="log_probabilities")).item() == 0.0
    with pytest.raises(BadInput, match=r"every log-probability is -inf in row 1"):
        scorer.score("entropy", lp, options=ScoreOptions(input_kind="log_probabilities"))


@pytest.mark.parametrize("name, shape, message", [
    ("entropy", (4,), r"logits: strategy entropy needs shape \[N, C\], got \[4\]"),
    ("entropy", (4, 2, 3), r"needs shape \[N, C\], got \[4, 2, 3\]"),
    ("bald", (4, 3), r"strategy bald needs shape \[N, T, C\], got \[4, 3\]"),
    ("entropy", (4, 0), r"logits: empty axis in shape \[4, 0\]"),
    ("margin", (4, 1), r"strategy margin needs at least 2 classes, got 1"),
])
def test_wrong_shapes_are_named(scorer: Scorer, name: str, shape: tuple, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        scorer.score(name, torch.zeros(shape))


def test_integer_dtype_is_rejected(scorer: Scorer) -> None:
    with pytest.raises(BadInput, match=r"logits.dtype: int32 is not one of float16, bfloat16, float32, float64"):
        scorer.score("entropy", torch.zeros(3, 4, dtype=torch.int32))


def test_embedding_rows_must_match(scorer: Scorer, rng: np.random.Generator) -> None:
    with pytest.raises(BadInput, match=r"embedding: needs shape \[10, D\] to match the rows, got \[9, 4\]"):
        scorer.score("expected_gradient_length", logits(rng, 10, 3), embedding=logits(rng, 9, 4))
    with pytest.raises(BadInput, match=r"embedding: strategy expected_gradient_length needs an embedding"):
        scorer.score("expected_gradient_length", logits(rng, 10, 3))
    emb = logits(rng, 10, 4)
    emb[6, 1] = float("nan")
    with pytest.raises(BadInput, match=r"embedding: NaN in row 6"):
        scorer.score("expected_gradient_length", logits(rng, 10, 3), embedding=emb)


def test_ids_must_match_rows_and_random_needs_ids(scorer: Scorer, rng: np.random.Generator) -> None:
    with pytest.raises(BadInput, match=r"ids: 3 ids for 4 rows of logits"):
        scorer.score("entropy", logits(rng, 4, 3), ids=torch.arange(3))
    with pytest.raises(BadInput, match=r"ids: strategy random scores ids; none were sent"):
        scorer.score("random", logits(rng, 4, 3))


def test_unknown_strategy_lists_the_known_ones(scorer: Scorer) -> None:
    with pytest.raises(UnknownStrategy, match=r"strategy: unknown 'entropi'; known: badge, bald, batch_bald, "):
        scorer.score("entropi", torch.zeros(2, 2))


@pytest.mark.parametrize("option, message", [
    ({"temperature": 0.0}, r"options.temperature: must be a finite number > 0, got 0.0"),
    ({"base": 1.0}, r"options.base: must be a finite number > 1"),
    ({"input_kind": "probs"}, r"options.input_kind: 'probs' is not one of logits, probabilities, log_probabilities"),
    ({"seed": 2**64}, r"options.seed: must fit in int64"),
])
def test_bad_options_are_named(option: dict, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        ScoreOptions(**option)


def test_an_empty_batch_scores_nothing(scorer: Scorer) -> None:
    assert scorer.score("entropy", torch.zeros(0, 5)).shape == (0,)
