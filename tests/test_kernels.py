"""Every strategy against DESIGN.md's worked examples and a float64 NumPy reference."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

import reference as ref
from poolscore.server.backends.torch.scorer import Scorer
from poolscore.server.strategies import STRATEGIES, ScoreOptions

PROBS = ScoreOptions(input_kind="probabilities")


def scores(scorer: Scorer, name: str, x: np.ndarray, **options) -> np.ndarray:
    out = scorer.score(name, torch.from_numpy(x), options=ScoreOptions(**options))
    return out.double().cpu().numpy()


# --- DESIGN.md's worked examples ---------------------------------------------------------

def test_least_confidence_worked_examples(scorer: Scorer) -> None:
    p = np.array([[0.95, 0.03, 0.02], [0.45, 0.35, 0.20]], np.float32)
    np.testing.assert_allclose(scores(scorer, "least_confidence", p, input_kind="probabilities"), [0.05, 0.55], rtol=1e-5)


def test_margin_worked_examples_are_one_minus_margin(scorer: Scorer) -> None:
    p = np.array([[0.8, 0.15, 0.05], [0.41, 0.39, 0.2]], np.float32)
    np.testing.assert_allclose(scores(scorer, "margin", p, input_kind="probabilities"), [1 - 0.65, 1 - 0.02], rtol=1e-5)


def test_entropy_worked_example_in_bits(scorer: Scorer) -> None:
    p = np.array([[0.34, 0.33, 0.33]], np.float32)
    assert scores(scorer, "entropy", p, input_kind="probabilities", base=2)[0] == pytest.approx(1.58, abs=0.005)


def test_variation_ratios_worked_example(scorer: Scorer) -> None:
    x = np.full((1, 10, 2), -3.0, np.float32)  # 10 passes: 6 vote A, 4 vote B
    x[0, :6, 0] = 3.0
    x[0, 6:, 1] = 3.0
    assert scores(scorer, "variation_ratios", x)[0] == pytest.approx(0.4)


def test_normalized_entropy_of_a_uniform_row_is_one(scorer: Scorer) -> None:
    x = np.zeros((2, 7), np.float32)
    np.testing.assert_allclose(scores(scorer, "entropy", x, normalized=True), [1.0, 1.0], rtol=1e-6)


# --- against the float64 reference ----------------------------------------------------------

def logits_arrays(rank: int) -> st.SearchStrategy[np.ndarray]:
    dims = [st.integers(1, 24)] + [st.integers(1, 6)] * (rank - 2) + [st.integers(2, 60)]
    shape = st.tuples(*dims)
    scale = st.sampled_from([1.0, 10.0, 1e4])
    return st.tuples(shape, scale, st.integers(0, 2**32 - 1)).map(
        lambda a: (np.random.default_rng(a[2]).normal(size=a[0]) * a[1]).astype(np.float32))


def _expected(name: str, x: np.ndarray, kind: str = "logits", temperature: float = 1.0) -> np.ndarray:
    fn = ref.POINTWISE.get(name) or ref.SAMPLED[name]
    return fn(ref.probs(x, kind, temperature))


@pytest.mark.parametrize("name", sorted(ref.POINTWISE))
@given(x=logits_arrays(2), temperature=st.sampled_from([1.0, 0.5, 3.0]))
def test_pointwise_matches_reference(scorer: Scorer, name: str, x: np.ndarray, temperature: float) -> None:
    got = scores(scorer, name, x, temperature=temperature)
    np.testing.assert_allclose(got, _expected(name, x, temperature=temperature), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", sorted(ref.SAMPLED))
@given(x=logits_arrays(3))
def test_sampled_and_committee_match_reference(scorer: Scorer, name: str, x: np.ndarray) -> None:
    np.testing.assert_allclose(scores(scorer, name, x), _expected(name, x), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", sorted(ref.POINTWISE) + ["bald", "kl_disagreement"])
@pytest.mark.parametrize("kind", ["probabilities", "log_probabilities"])
def test_probability_inputs_give_the_same_scores_as_logits(scorer: Scorer, rng: np.random.Generator, name: str, kind: str) -> None:
    shape = (50, 4, 9) if name in ref.SAMPLED else (50, 9)
    z = rng.normal(size=shape) * 3
    p = ref.probs(z)
    p[0, ..., 0] = 0.0  # a class of zero probability: 0·log 0 = 0, never NaN
    p = p / p.sum(-1, keepdims=True)
    x = (p if kind == "probabilities" else np.log(p)).astype(np.float32)
    np.testing.assert_allclose(scores(scorer, name, x, input_kind=kind), _expected(name, np.log(p)), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("name", ["entropy", "margin", "bald", "kl_disagreement"])
def test_every_float_dtype_scores_its_own_values(scorer: Scorer, rng: np.random.Generator, name: str, dtype: torch.dtype) -> None:
    shape = (64, 5, 11) if name in ref.SAMPLED else (64, 11)
    x = torch.from_numpy(rng.normal(size=shape) * 4).to(dtype)
    got = scorer.score(name, x)
    assert got.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    np.testing.assert_allclose(got.double().cpu().numpy(), _expected(name, x.double().numpy()), rtol=1e-4, atol=1e-6)


def test_expected_gradient_length_matches_reference(scorer: Scorer, rng: np.random.Generator) -> None:
    z = rng.normal(size=(40, 7)).astype(np.float32)
    h = rng.normal(size=(40, 16)).astype(np.float32)
    got = scorer.score("expected_gradient_length", torch.from_numpy(z), embedding=torch.from_numpy(h))
    np.testing.assert_allclose(got.cpu().numpy(), ref.expected_gradient_length(ref.probs(z), h), rtol=1e-4, atol=1e-6)


def test_random_is_a_reproducible_seeded_hash(scorer: Scorer) -> None:
    ids = np.array([0, 1, 2, -5, 2**62, 123456789], np.int64)
    got = scorer.score("random", ids=torch.from_numpy(ids), options=ScoreOptions(seed=7)).cpu().numpy()
    np.testing.assert_array_equal(got, ref.random(ids, 7))
    other = scorer.score("random", ids=torch.from_numpy(ids), options=ScoreOptions(seed=8)).cpu().numpy()
    assert ((got >= 0) & (got < 1)).all() and not np.array_equal(got, other)


# --- numerics at the edges ------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(ref.POINTWISE))
def test_extreme_equal_and_two_class_rows_are_finite_and_right(scorer: Scorer, name: str) -> None:
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [5.0, 5.0, 5.0]], np.float32)
    got = scores(scorer, name, x)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, _expected(name, x), rtol=1e-4, atol=1e-30)
    two = np.array([[0.3, -0.2], [8.0, -8.0]], np.float32)
    np.testing.assert_allclose(scores(scorer, name, two), _expected(name, two), rtol=1e-4)


def test_confident_rows_keep_relative_precision(scorer: Scorer) -> None:
    """[30, 0, 0]: 1 - p_max ≈ 1.9e-13, which 1 - p_max cancels to 0 in float32 (and
    to 3 digits in float64); the kernels sum the small terms, so the closed forms hold."""
    x = np.array([[30.0, 0.0, 0.0]], np.float32)
    r = 2 * math.exp(-30)  # Σ e over the non-max classes; s = 1 + r
    closed = {"least_confidence": r / (1 + r), "margin": (r + math.exp(-30)) / (1 + r),
              "ratio": math.exp(-30), "entropy": math.log1p(r) + 30 * r / (1 + r)}
    for name, want in closed.items():
        assert scores(scorer, name, x)[0] == pytest.approx(want, rel=1e-5), name


def test_fifty_thousand_classes(scorer: Scorer, rng: np.random.Generator) -> None:
    x = (rng.normal(size=(4, 50_000)) * 5).astype(np.float32)
    for name in ref.POINTWISE:
        np.testing.assert_allclose(scores(scorer, name, x), _expected(name, x), rtol=1e-4)
    uniform = np.zeros((1, 50_000), np.float32)
    assert scores(scorer, "entropy", uniform)[0] == pytest.approx(math.log(50_000), rel=1e-6)


@pytest.mark.parametrize("name", sorted(ref.SAMPLED))
def test_a_single_sample_is_a_valid_sample_axis(scorer: Scorer, rng: np.random.Generator, name: str) -> None:
    x = rng.normal(size=(8, 1, 5)).astype(np.float32)
    np.testing.assert_allclose(scores(scorer, name, x), _expected(name, x), rtol=1e-4, atol=1e-6)


def test_bald_and_kl_disagreement_are_zero_when_all_samples_agree(scorer: Scorer, rng: np.random.Generator) -> None:
    x = np.repeat(rng.normal(size=(6, 1, 4)), 5, axis=1).astype(np.float32)
    for name in ("bald", "kl_disagreement", "kl_max_disagreement", "vote_entropy", "variation_ratios"):
        np.testing.assert_allclose(scores(scorer, name, x), 0.0, atol=1e-6)


def test_every_strategy_in_the_registry_is_tested() -> None:
    tested = set(ref.POINTWISE) | set(ref.SAMPLED) | {"expected_gradient_length", "random"}
    assert tested == set(STRATEGIES)


def test_expected_gradient_length_keeps_precision_on_confident_rows(scorer: Scorer) -> None:
    z = np.array([[12.0, 0.0, -1.0], [30.0, 0.0, 0.0], [2.0, 2.0, 0.0]], np.float32)  # confident, very, tied
    h = np.ones((3, 4), np.float32)
    got = scorer.score("expected_gradient_length", torch.from_numpy(z), embedding=torch.from_numpy(h)).cpu().numpy()
    np.testing.assert_allclose(got, ref.expected_gradient_length(ref.probs(z), h), rtol=1e-5)
