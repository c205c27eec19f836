"""The parity suite: every backend (torch on CPU and CUDA, ONNX) against DESIGN.md's worked
examples, a float64 NumPy reference, and the exactness rules (equal rows score bit-equal)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

import reference as ref
import backends
from backends import score as scores
from poolscore.server.backends.base import Backend
from poolscore.server.backends.torch.scorer import Scorer
from poolscore.server.strategies import POINTWISE, STRATEGIES


# --- DESIGN.md's worked examples ---------------------------------------------------------

def test_least_confidence_worked_examples(backend: Backend) -> None:
    p = np.array([[0.95, 0.03, 0.02], [0.45, 0.35, 0.20]], np.float32)
    np.testing.assert_allclose(scores(backend, "least_confidence", p, input_kind="probabilities"), [0.05, 0.55], rtol=1e-5)


def test_margin_worked_examples_are_one_minus_margin(backend: Backend) -> None:
    p = np.array([[0.8, 0.15, 0.05], [0.41, 0.39, 0.2]], np.float32)
    np.testing.assert_allclose(scores(backend, "margin", p, input_kind="probabilities"), [1 - 0.65, 1 - 0.02], rtol=1e-5)


def test_entropy_worked_example_in_bits(backend: Backend) -> None:
    p = np.array([[0.34, 0.33, 0.33]], np.float32)
    assert scores(backend, "entropy", p, input_kind="probabilities", base=2)[0] == pytest.approx(1.58, abs=0.005)


def test_variation_ratios_worked_example(backend: Backend) -> None:
    x = np.full((1, 10, 2), -3.0, np.float32)  # 10 passes: 6 vote A, 4 vote B
    x[0, :6, 0] = 3.0
    x[0, 6:, 1] = 3.0
    assert scores(backend, "variation_ratios", x)[0] == pytest.approx(0.4)


def test_normalized_entropy_of_a_uniform_row_is_one(backend: Backend) -> None:
    x = np.zeros((2, 7), np.float32)
    np.testing.assert_allclose(scores(backend, "entropy", x, normalized=True), [1.0, 1.0], rtol=1e-6)


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
def test_pointwise_matches_reference(backend: Backend, name: str, x: np.ndarray, temperature: float) -> None:
    got = scores(backend, name, x, temperature=temperature)
    np.testing.assert_allclose(got, _expected(name, x, temperature=temperature), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", sorted(ref.SAMPLED))
@given(x=logits_arrays(3))
def test_sampled_and_committee_match_reference(backend: Backend, name: str, x: np.ndarray) -> None:
    np.testing.assert_allclose(scores(backend, name, x), _expected(name, x), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", sorted(ref.POINTWISE) + ["bald", "kl_disagreement"])
@pytest.mark.parametrize("kind", ["probabilities", "log_probabilities"])
def test_probability_inputs_give_the_same_scores_as_logits(backend: Backend, rng: np.random.Generator, name: str, kind: str) -> None:
    shape = (50, 4, 9) if name in ref.SAMPLED else (50, 9)
    z = rng.normal(size=shape) * 3
    p = ref.probs(z)
    p[0, ..., 0] = 0.0  # a class of zero probability: 0·log 0 = 0, never NaN
    p = p / p.sum(-1, keepdims=True)
    x = (p if kind == "probabilities" else np.log(p)).astype(np.float32)
    np.testing.assert_allclose(scores(backend, name, x, input_kind=kind), _expected(name, np.log(p)), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("name", ["entropy", "margin", "bald", "kl_disagreement"])
def test_every_float_dtype_scores_its_own_values_on_torch(scorer: Scorer, rng: np.random.Generator, name: str, dtype: torch.dtype) -> None:
    shape = (64, 5, 11) if name in ref.SAMPLED else (64, 11)
    x = torch.from_numpy(rng.normal(size=shape) * 4).to(dtype)
    got = scorer.score(name, x)
    assert got.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    np.testing.assert_allclose(got.double().cpu().numpy(), _expected(name, x.double().numpy()), rtol=1e-4, atol=1e-6)


def test_expected_gradient_length_matches_reference(backend: Backend, rng: np.random.Generator) -> None:
    z = rng.normal(size=(40, 7)).astype(np.float32)
    h = rng.normal(size=(40, 16)).astype(np.float32)
    got = scores(backend, "expected_gradient_length", z, h)
    np.testing.assert_allclose(got, ref.expected_gradient_length(ref.probs(z), h), rtol=1e-4, atol=1e-6)


def test_random_is_a_reproducible_seeded_hash(backend: Backend) -> None:
    ids = np.array([0, 1, 2, -5, 2**62, 123456789], np.int64)
    got = scores(backend, "random", ids=ids, seed=7)
    np.testing.assert_array_equal(got, ref.random(ids, 7))
    other = scores(backend, "random", ids=ids, seed=8)
    assert ((got >= 0) & (got < 1)).all() and not np.array_equal(got, other)


# --- numerics at the edges ------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(ref.POINTWISE))
def test_extreme_equal_and_two_class_rows_are_finite_and_right(backend: Backend, name: str) -> None:
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [5.0, 5.0, 5.0]], np.float32)
    got = scores(backend, name, x)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, _expected(name, x), rtol=1e-4, atol=1e-30)
    two = np.array([[0.3, -0.2], [8.0, -8.0]], np.float32)
    np.testing.assert_allclose(scores(backend, name, two), _expected(name, two), rtol=1e-4)


def test_confident_rows_keep_relative_precision(backend: Backend) -> None:
    """[30, 0, 0]: 1 - p_max ≈ 1.9e-13, which 1 - p_max cancels to 0 in float32 (and
    to 3 digits in float64); the kernels sum the small terms, so the closed forms hold."""
    x = np.array([[30.0, 0.0, 0.0]], np.float32)
    r = 2 * math.exp(-30)  # Σ e over the non-max classes; s = 1 + r
    closed = {"least_confidence": r / (1 + r), "margin": (r + math.exp(-30)) / (1 + r),
              "ratio": math.exp(-30), "entropy": math.log1p(r) + 30 * r / (1 + r)}
    for name, want in closed.items():
        assert scores(backend, name, x)[0] == pytest.approx(want, rel=1e-5), name


def test_fifty_thousand_classes(backend: Backend, rng: np.random.Generator) -> None:
    x = (rng.normal(size=(4, 50_000)) * 5).astype(np.float32)
    for name in ref.POINTWISE:
        np.testing.assert_allclose(scores(backend, name, x), _expected(name, x), rtol=1e-4)
    uniform = np.zeros((1, 50_000), np.float32)
    assert scores(backend, "entropy", uniform)[0] == pytest.approx(math.log(50_000), rel=1e-6)


@pytest.mark.parametrize("name", sorted(ref.SAMPLED))
def test_a_single_sample_is_a_valid_sample_axis(backend: Backend, rng: np.random.Generator, name: str) -> None:
    x = rng.normal(size=(8, 1, 5)).astype(np.float32)
    np.testing.assert_allclose(scores(backend, name, x), _expected(name, x), rtol=1e-4, atol=1e-6)


def test_bald_and_kl_disagreement_are_zero_when_all_samples_agree(backend: Backend, rng: np.random.Generator) -> None:
    x = np.repeat(rng.normal(size=(6, 1, 4)), 5, axis=1).astype(np.float32)
    for name in ("bald", "kl_disagreement", "kl_max_disagreement", "vote_entropy", "variation_ratios"):
        np.testing.assert_allclose(scores(backend, name, x), 0.0, atol=1e-6)


def test_every_strategy_in_the_registry_is_tested() -> None:
    tested = set(ref.POINTWISE) | set(ref.SAMPLED) | {"expected_gradient_length", "random"}
    assert tested == set(POINTWISE)  # the selections over them: test_selection.py


def test_expected_gradient_length_keeps_precision_on_confident_rows(backend: Backend) -> None:
    z = np.array([[12.0, 0.0, -1.0], [30.0, 0.0, 0.0], [2.0, 2.0, 0.0]], np.float32)  # confident, very, tied
    h = np.ones((3, 4), np.float32)
    got = scores(backend, "expected_gradient_length", z, h)
    np.testing.assert_allclose(got, ref.expected_gradient_length(ref.probs(z), h), rtol=1e-5)


def egl_exact(z: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Float64 expected gradient length without cancellation: 1 - p_c = Σ_{j≠c} p_j."""
    p = ref.probs(z.astype(np.float64))
    others = p[:, None, :] * (1.0 - np.eye(p.shape[-1]))  # [N, c, j]: p_j for j ≠ c
    dist = np.sqrt((others**2).sum(-1) + others.sum(-1) ** 2)
    return np.linalg.norm(h.astype(np.float64), axis=-1) * (p * dist).sum(-1)


@pytest.mark.parametrize("scale", [1.0, 3.0, 10.0])
@pytest.mark.parametrize("c", [2, 10, 100])
def test_expected_gradient_length_is_exact_on_confident_rows_too(backend: Backend, c: int, scale: float) -> None:
    rng = np.random.default_rng(c)
    x = (rng.normal(size=(257, c)) * scale).astype(np.float32)
    h = rng.normal(size=(257, 16)).astype(np.float32)
    np.testing.assert_allclose(scores(backend, "expected_gradient_length", x, h), egl_exact(x, h), rtol=1e-5, atol=1e-6)


# --- options ----------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [dict(base=2.0), dict(normalized=True), dict(normalized=True, base=2.0), dict(base=10.0)])
@pytest.mark.parametrize("name", sorted(n for n, s in STRATEGIES.items() if s.entropic))
def test_bases_and_normalization_rescale_the_nats(backend: Backend, rng: np.random.Generator, name: str, options: dict) -> None:
    x = (rng.normal(size=(50, 4, 12) if STRATEGIES[name].rank == 3 else (50, 12)) * 3).astype(np.float32)
    nats = _expected(name, x)
    want = nats / math.log(12) if options.get("normalized") else nats / math.log(options["base"])
    np.testing.assert_allclose(scores(backend, name, x, **options), want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("temperature", [0.5, 2.0])
@pytest.mark.parametrize("kind", ["logits", "probabilities", "log_probabilities"])
def test_temperature_applies_to_every_input_kind(backend: Backend, rng: np.random.Generator, kind: str, temperature: float) -> None:
    z = rng.normal(size=(64, 9)) * 3
    p = ref.probs(z)
    x = {"logits": z, "probabilities": p, "log_probabilities": np.log(p)}[kind].astype(np.float32)
    for name in sorted(ref.POINTWISE):
        got = scores(backend, name, x, input_kind=kind, temperature=temperature)
        np.testing.assert_allclose(got, _expected(name, np.log(p), temperature=temperature), rtol=1e-4, atol=1e-6)


# --- exactness: equal rows score bit-equal, wherever they sit ------------------------------------

def _batch(rng: np.random.Generator, name: str, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    s = STRATEGIES[name]
    x = (rng.normal(size=(n, 6, 7) if s.rank == 3 else (n, 10)) * 3).astype(np.float32)
    return x, rng.normal(size=(n, 24)).astype(np.float32) if s.needs_embedding else None


@pytest.mark.parametrize("name", sorted(n for n, s in POINTWISE.items() if not s.scores_ids))
def test_a_row_scores_the_same_bits_at_any_position(backend: Backend, name: str) -> None:
    """Shifted, shuffled or copied, a row keeps its score to the bit: the top-K's id order among
    equal items rests on it (a backend whose sums depend on a row's address broke it)."""
    rng = np.random.default_rng(11)
    x, emb = _batch(rng, name, 9001)  # big enough for the ONNX backend to split the rows
    base = scores(backend, name, x, emb)
    for order in (np.roll(np.arange(9001), 1), np.roll(np.arange(9001), 13), rng.permutation(9001)):
        got = scores(backend, name, x[order], None if emb is None else emb[order])
        np.testing.assert_array_equal(got, base[order], err_msg=f"{name}: rows moved, scores changed")
    copies = scores(backend, name, np.repeat(x[:1], 4099, 0), None if emb is None else np.repeat(emb[:1], 4099, 0))
    assert np.unique(copies).size == 1 and copies[0] == base[0]


@pytest.mark.parametrize("name", ["vote_entropy", "variation_ratios"])
def test_equal_vote_counts_over_other_classes_score_the_same_bits(backend: Backend, name: str) -> None:
    """Votes of M = 6 members over C = 4 classes: a score depends on the counts, not on which
    classes got them, so every permutation of one pattern ties exactly."""
    members, classes = 6, 4
    patterns = [c for c in itertools.product(range(members + 1), repeat=classes) if sum(c) == members]
    rows = []
    for counts in patterns:
        votes = np.repeat(np.arange(classes), counts)  # member m votes votes[m]
        z = np.full((members, classes), -2.0, np.float32)
        z[np.arange(members), votes] = 3.0
        rows.append(z)
    got = scores(backend, name, np.stack(rows))
    by_multiset: dict[tuple, set] = {}
    for counts, value in zip(patterns, got):
        by_multiset.setdefault(tuple(sorted(counts)), set()).add(value)
    assert all(len(values) == 1 for values in by_multiset.values()), \
        {k: sorted(v) for k, v in by_multiset.items() if len(v) > 1}


@pytest.fixture(scope="module")
def torch_cpu() -> Backend:
    b = backends.make("torch-cpu")
    yield b
    b.close()


@pytest.mark.parametrize("n", [1, 257])
@pytest.mark.parametrize("c", [2, 10, 100])
@pytest.mark.parametrize("name", sorted(n for n, s in POINTWISE.items() if not s.scores_ids))
def test_backends_agree_closer_than_the_reference_tolerance(backend: Backend, torch_cpu: Backend, name: str, c: int,
                                                           n: int) -> None:
    """Same math op for op: every backend within 1e-5 of the torch CPU kernels (float32 each)."""
    rng = np.random.default_rng(c * 1000 + n)
    x, emb = _batch(rng, name, n)
    x = (rng.normal(size=x.shape[:-1] + (c,)) * 3).astype(np.float32)
    np.testing.assert_allclose(scores(backend, name, x, emb), scores(torch_cpu, name, x, emb), rtol=1e-5, atol=1e-6)
