"""The native sample-axis kernels (server/backends/native) give the torch kernels' scores, mark the
rows the torch row guard marks, and are what a compiled CPU scorer serves float32 [N, T, C] with."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from poolscore.server.backends.native import build as native_build
from poolscore.server.backends.native.library import MAX_ROW_FLOATS, POINTWISE, STRATEGIES, load
from poolscore.server.backends.torch.kernels import KERNELS
from poolscore.server.backends.torch.native import NativeKernel
from poolscore.server.backends.torch.scorer import Scorer
from poolscore.server.strategies import ScoreOptions

NAMES = sorted(STRATEGIES)
KINDS = ["logits", "log_probabilities", "probabilities"]


@pytest.fixture(scope="module")
def library():
    lib = load()
    assert lib is not None, "scripts/setup.sh installs g++, which builds the native kernels"
    return lib


def of_rank(name: str, x: np.ndarray) -> np.ndarray:
    """x [N, T, C] as the strategy takes it: a pointwise one scores the first sample, [N, C]."""
    return np.ascontiguousarray(x[:, 0]) if name in POINTWISE else x


def reference(name: str, x: np.ndarray, kind: str, temperature: float = 1.0) -> np.ndarray:
    """The eager torch kernel in float64: the exact answer the float32 kernels round."""
    inv_t = torch.tensor(1.0 / temperature, dtype=torch.float64)
    return KERNELS[name](torch.from_numpy(x.astype(np.float64)), None, inv_t, kind).numpy()


def as_kind(logits: np.ndarray, kind: str) -> np.ndarray:
    lp = torch.log_softmax(torch.from_numpy(logits.astype(np.float64)), -1).numpy()
    return {"logits": logits, "log_probabilities": lp, "probabilities": np.exp(lp)}[kind].astype(np.float32)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(1000, 20, 10), (37, 3, 2), (50, 7, 16), (5, 1, 5), (19, 4, 100)])
def test_native_scores_match_the_torch_kernels(library, kind: str, shape: tuple[int, int, int]) -> None:
    """Every strategy, input kind and temperature; row counts off the 16-row block, classes off
    the 8-wide transpose. Within float32 rounding of the float64 answer (torch's own float32
    kernels are within 1e-6 too)."""
    x = as_kind(np.random.default_rng(sum(shape)).normal(size=shape) * 4, kind)
    for name in NAMES:
        for temperature in (1.0, 0.7, 3.0):
            got = library.score(name, of_rank(name, x), 1.0 / temperature, kind, threads=2)
            want = reference(name, of_rank(name, x), kind, temperature)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6, err_msg=f"{name} T={temperature}")


@pytest.mark.parametrize("kind", KINDS)
def test_bad_rows_are_nan_where_the_torch_row_guard_marks_them(library, kind: str) -> None:
    nan, inf = np.nan, np.inf
    x = as_kind(np.random.default_rng(1).normal(size=(24, 4, 5)), kind).astype(np.float64)
    x[1, 2, 3], x[2, 0, 0], x[3, 1, 4] = nan, inf, -inf  # -inf is p = 0 in log_probabilities
    x[4], x[5, 2] = -inf, -inf  # every sample, or one whole sample, of zero probability
    if kind == "probabilities":
        x[6, 0, 1], x[7, 3, 2], x[8, 1], x[9, :, 0] = 0, -0.1, 0, 0
    x[10] = 0.0  # every class tied in every sample
    x[11] = np.arange(5) * (100.0 if kind == "logits" else 1.0)
    x[12] = np.array([0, 1, 0, 1, 0]) * 80.0  # two maxima, far apart from the rest
    x = x.astype(np.float32)
    for name in NAMES:
        for sample in range(4) if name in POINTWISE else [None]:  # a pointwise strategy: each sample as [N, C]
            xs = x if sample is None else np.ascontiguousarray(x[:, sample])
            got = library.score(name, xs, 1.0, kind)
            want = KERNELS[name](torch.from_numpy(xs), None, torch.ones((), dtype=torch.float64), kind).numpy()
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=name)
            np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], rtol=1e-5, atol=1e-7, err_msg=name)


def test_a_row_scores_the_same_bits_at_any_position_and_thread_count(library) -> None:
    for name in NAMES:
        x = of_rank(name, (np.random.default_rng(2).normal(size=(5000, 6, 10)) * 3).astype(np.float32))
        once = library.score(name, x, 1.0, "logits", threads=1)
        np.testing.assert_array_equal(library.score(name, x, 1.0, "logits", threads=3), once)
        np.testing.assert_array_equal(library.score(name, x[77:80].copy(), 1.0, "logits"), once[77:80])


def test_vote_entropy_ties_permuted_vote_patterns_exactly(library) -> None:
    """Summed by vote count as committee.py does: the same votes over other classes give the same bits."""
    rng = np.random.default_rng(3)
    base = rng.normal(size=(1, 9, 7)).astype(np.float32) * 3
    x = np.ascontiguousarray(np.concatenate([base[:, :, rng.permutation(7)] for _ in range(40)]))
    scores = library.score("vote_entropy", x, 1.0, "logits")
    assert len(set(scores.tolist())) == 1


def test_confident_rows_round_as_the_torch_float32_kernels_do(library) -> None:
    """Near one-hot samples: scores from 1e-5 down to 0, where float32's p̄ ≈ 1 - tiny costs both
    implementations the same digits (the same algorithm: log1p(rest), Σe·d over the non-max)."""
    x = np.zeros((16, 3, 4), np.float32)
    x[:, :, 0] = np.linspace(10, 40, 16)[:, None]
    x[:, 1, 0] += 3
    for name in NAMES:
        xs = of_rank(name, x)
        want = KERNELS[name](torch.from_numpy(xs), None, torch.ones((), dtype=torch.float64), "logits").numpy()
        np.testing.assert_allclose(library.score(name, xs, 1.0, "logits"), want, rtol=1e-4, atol=1e-12, err_msg=name)


def test_a_compiled_cpu_scorer_serves_float32_sample_axes_natively(scorer: Scorer) -> None:
    compiled = Scorer("cpu", compile="sync")
    try:
        pool = torch.from_numpy((np.random.default_rng(4).normal(size=(3000, 20, 10)) * 3).astype(np.float32))
        for name in NAMES:
            x = torch.from_numpy(of_rank(name, pool.numpy()))
            got = compiled.score(name, x, options=ScoreOptions(temperature=0.5))
            key = next(k for k in compiled.kernels.ready_keys() if k[0] == name)
            assert isinstance(compiled.kernels._ready[key], NativeKernel), name
            np.testing.assert_allclose(got.numpy(), scorer.score(name, x, options=ScoreOptions(temperature=0.5)).numpy(),
                                       rtol=2e-5, atol=1e-6)
        pool[2999, 19, 9] = float("nan")
        with pytest.raises(ValueError, match="logits: NaN in row 2999"):
            compiled.score("bald", pool)
    finally:
        compiled.close()


@pytest.mark.parametrize("classes", [300, 1000, 4100])
def test_pointwise_strategies_serve_many_classes_natively(scorer: Scorer, classes: int) -> None:
    """A pointwise kernel past C = 256 (past inductor's C ≤ 4096 too): served natively by a
    compiled CPU scorer, within float32 rounding of float64, a bad row named."""
    compiled = Scorer("cpu", compile="sync")
    try:
        x = torch.from_numpy((np.random.default_rng(classes).normal(size=(203, classes)) * 4).astype(np.float32))
        for name in POINTWISE:
            got = compiled.score(name, x).numpy()
            key = next(k for k in compiled.kernels.ready_keys() if k[0] == name)
            assert isinstance(compiled.kernels._ready[key], NativeKernel), name
            want = scorer.score(name, x.double()).numpy()
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6, err_msg=name)
        x[77, classes - 1] = float("inf")
        with pytest.raises(ValueError, match="logits: .* in row 77"):
            compiled.score("margin", x)
    finally:
        compiled.close()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(9000, 10), (700, 20, 10), (3, 300)])
def test_half_precision_is_widened_in_chunks_and_scored_natively(monkeypatch, dtype, shape) -> None:
    """float16 / bfloat16 rows go through the native kernel a float32 chunk at a time (many
    chunks, a short last one, and one chunk of 16 rows for 3): the scores of the same values in
    float32, bit for bit, a bad row named from the batch's start."""
    from poolscore.server.backends.torch import native

    monkeypatch.setattr(native, "CHUNK_FLOATS", 16 * 1000)  # chunks of 1,600 / 80 / 16 rows a thread
    compiled = Scorer("cpu", compile="sync")
    try:
        x = torch.from_numpy(np.random.default_rng(len(shape)).normal(size=shape) * 4).to(dtype)
        names = [n for n in STRATEGIES if (n in POINTWISE) == (len(shape) == 2)]
        for name in names:
            got = compiled.score(name, x)
            key = next(k for k in compiled.kernels.ready_keys() if k[0] == name and k[2] == dtype)
            assert isinstance(compiled.kernels._ready[key], NativeKernel), name
            np.testing.assert_array_equal(got.numpy(), compiled.score(name, x.float()).numpy(), err_msg=name)
        x[shape[0] - 2].view(-1)[-1] = float("nan")
        with pytest.raises(ValueError, match=f"logits: NaN in row {shape[0] - 2}"):
            compiled.score(names[0], x)
    finally:
        compiled.close()


def test_rows_longer_than_the_scratch_go_to_the_torch_kernel(library) -> None:
    calls = []
    kernel = NativeKernel(library, "bald", lambda x, emb, inv_t, kind: calls.append(x.shape) or torch.zeros(len(x)))
    inv_t = torch.ones((), dtype=torch.float64)
    assert kernel(torch.zeros(3, MAX_ROW_FLOATS // 100 + 1, 100), None, inv_t, "logits").tolist() == [0.0] * 3
    assert calls == [(3, MAX_ROW_FLOATS // 100 + 1, 100)]
    kernel(torch.zeros(3, 20, 100), None, inv_t, "logits")
    assert len(calls) == 1


def test_the_build_is_cached_and_a_failing_compiler_leaves_the_torch_kernels(tmp_path, monkeypatch, caplog) -> None:
    built = native_build.build(cache=tmp_path)
    assert built is not None and built.parent == tmp_path
    stamp = built.stat().st_mtime_ns
    assert native_build.build(cache=tmp_path) == built and built.stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob("*.part"))  # written atomically, nothing left beside it
    monkeypatch.setenv("CXX", "false")  # a compiler that always fails
    with caplog.at_level(logging.WARNING):
        assert native_build.build(cache=tmp_path / "other") is None
    assert "the torch kernels serve" in caplog.text
    bad = tmp_path / "bad.cpp"
    bad.write_text("this is not C++")
    monkeypatch.delenv("CXX")
    assert native_build.build(bad, cache=tmp_path / "bad") is None


def test_extreme_temperatures_and_subnormal_results_match_torch(library) -> None:
    """1/T overflowing float32 (d = 0·inf = NaN at the max: torch's where()s drop it) must not
    mark a valid row; and results below float32's normal range stay subnormal, as torch's."""
    inv_t = torch.tensor(1e40, dtype=torch.float64)
    x2, x3 = np.array([[1, 0, -1]], np.float32), np.array([[[1, 0, -1], [0, 1, 2]]], np.float32)
    for name, x in (("entropy", x2), ("margin", x2), ("predictive_entropy", x3), ("bald", x3)):
        want = KERNELS[name](torch.from_numpy(x), None, inv_t, "logits").numpy()
        np.testing.assert_array_equal(library.score(name, x, 1e40, "logits"), want, err_msg=name)
    tiny = np.array([[0, -90], [0, -100], [0, -103], [0, -110]], np.float32)
    for name in ("ratio", "margin", "least_confidence", "entropy"):
        want = KERNELS[name](torch.from_numpy(tiny), None, torch.ones((), dtype=torch.float64), "logits").numpy()
        assert (want[:3] > 0).all() and (want[1:3] < 1.18e-38).all()  # subnormal
        np.testing.assert_allclose(library.score(name, tiny, 1.0, "logits"), want, rtol=1e-3, atol=3e-45, err_msg=name)


def test_the_argmax_of_probabilities_is_taken_on_p_itself(library) -> None:
    """log is monotone, so argmax p = argmax log p exactly; a rounded log can merge two
    probabilities a float step apart, so the vote kernels compare p (as NumPy's argmax would)."""
    p = np.array([[[0.30000305, 0.30000308], [0.9, 0.1]]], np.float32)
    votes = np.bincount(p[0].argmax(-1), minlength=2)
    assert library.score("variation_ratios", p, 1.0, "probabilities")[0] == pytest.approx(1 - votes.max() / 2)


def test_concurrent_callers_with_any_thread_counts_get_the_same_scores(library) -> None:
    from concurrent.futures import ThreadPoolExecutor
    x = (np.random.default_rng(9).normal(size=(20000, 4, 10)) * 3).astype(np.float32)
    want = library.score("bald", x, 1.0, "logits")
    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(lambda t: library.score("bald", x, 1.0, "logits", threads=t), [1, 2, 3, 8, 2, 5] * 3))
    for scores in got:
        np.testing.assert_array_equal(scores, want)


def test_a_shared_cache_directory_open_to_others_is_not_trusted(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(native_build.tempfile, "gettempdir", lambda: str(tmp_path))
    mine = native_build.cache_dir()
    assert mine.parent == tmp_path and mine.stat().st_mode & 0o777 == 0o700
    assert native_build.cache_dir() == mine
    mine.chmod(0o777)  # anyone could plant a library in it now
    other = native_build.cache_dir()
    assert other != mine and other.stat().st_mode & 0o077 == 0


def test_a_corrupt_cached_library_is_built_again(tmp_path, monkeypatch) -> None:
    from poolscore.server.backends.native import library as native_library
    path = native_build.build(cache=tmp_path)  # not the loaded one: rewriting a mapped file kills the process
    assert path is not None
    path.write_bytes(b"not a shared object")
    monkeypatch.setattr(native_library, "build", lambda: native_build.build(cache=tmp_path))
    again = native_library._open(path)
    assert again is not None and again.score("entropy", np.zeros((3, 4), np.float32), 1.0, "logits").shape == (3,)


_SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.5, 1e30, -1e30, 1e-40], np.float32)


@given(shape=st.tuples(st.integers(1, 40), st.integers(1, 5), st.integers(1, 20)), seed=st.integers(0, 2**32 - 1),
       share=st.sampled_from([0.0, 0.02, 0.2]), kind=st.sampled_from(KINDS),
       temperature=st.sampled_from([1.0, 0.3, 4.0]))
def test_any_shape_and_any_special_values_score_as_torch_with_its_bad_rows(library, shape, seed, share, kind,
                                                                           temperature) -> None:
    """A property over shapes, input kinds, temperatures and sprinkled specials (NaN, ±inf, 0,
    negatives, huge and subnormal values): NaN exactly where torch's row guard puts it, the
    other scores within float32 rounding of torch's float32 kernels."""
    rng = np.random.default_rng(seed)
    x = as_kind(rng.normal(size=shape) * 4, kind)
    hit = rng.random(shape) < share
    x[hit] = rng.choice(_SPECIALS, hit.sum())
    inv_t = torch.tensor(1.0 / temperature, dtype=torch.float64)
    for name in NAMES:
        xs = of_rank(name, x)
        got = library.score(name, xs, 1.0 / temperature, kind)
        want = KERNELS[name](torch.from_numpy(xs), None, inv_t, kind).numpy()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=name)
        np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], rtol=1e-4, atol=1e-6, err_msg=name)


@given(rows=st.integers(1, 6000), threads=st.integers(1, 4), chunk=st.sampled_from([64, 4096, 1 << 20]),
       name=st.sampled_from(NAMES))
def test_any_split_over_threads_and_chunks_scores_the_same_bits(library, rows, threads, chunk, name) -> None:
    """However the rows are handed out (threads, chunk sizes, a short last chunk), each row's
    score is the one a single call on one thread gives."""
    from poolscore.server.backends.native import library as native_library

    x = of_rank(name, (np.random.default_rng(rows).normal(size=(rows, 3, 7)) * 3).astype(np.float32))
    want = library.score(name, x, 1.0, "logits", threads=1)
    before = native_library._CHUNK_BYTES
    native_library._CHUNK_BYTES = chunk
    try:
        got = library.score(name, x, 1.0, "logits", threads=threads)
    finally:
        native_library._CHUNK_BYTES = before
    np.testing.assert_array_equal(got, want)
