"""topk/: both implementations pass one conformance suite: the K best of everything merged, in
score-descending then id-ascending order, as immutable values, holding at most 2K pairs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from poolscore.server.topk.numpy_topk import NumpyTopK
from poolscore.server.topk.torch_topk import TorchTopK


class Impl:
    """One implementation behind NumPy in and out, so every test below runs on both."""

    def __init__(self, name: str, device: str = "cpu") -> None:
        self.name, self.device = name, device

    def empty(self, k: int, dtype=np.float32):
        if self.name == "numpy":
            return NumpyTopK.empty(k, dtype)
        return TorchTopK.empty(k, dtype=torch.from_numpy(np.zeros(0, dtype)).dtype, device=self.device)

    def array(self, a: np.ndarray):
        return a if self.name == "numpy" else torch.from_numpy(a).to(self.device)

    def merged(self, top, scores: np.ndarray, ids: np.ndarray):
        # ids come from the wire (the CPU) while scores sit where the kernel ran
        return top.merged(self.array(scores), ids if self.name == "numpy" else torch.from_numpy(ids))

    @staticmethod
    def numpy(a) -> np.ndarray:
        return a.cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


IMPLS = [Impl("numpy"), Impl("torch")] + ([Impl("torch", "cuda")] if torch.cuda.is_available() else [])


@pytest.fixture(params=IMPLS, ids=lambda i: f"{i.name}-{i.device}")
def impl(request: pytest.FixtureRequest) -> Impl:
    return request.param


def stream(impl: Impl, scores: np.ndarray, ids: np.ndarray, k: int, cuts: list[int]):
    top = impl.empty(k, scores.dtype)
    for lo, hi in zip([0] + cuts, cuts + [len(scores)]):
        top = impl.merged(top, scores[lo:hi], ids[lo:hi])
    return top


def full_sort(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((ids, -scores))[:k]  # score descending, then id ascending
    return scores[order], ids[order]


@pytest.mark.parametrize("impl_", IMPLS, ids=lambda i: f"{i.name}-{i.device}")
@given(n=st.integers(0, 3000), k=st.integers(1, 300), levels=st.sampled_from([2, 7, 1000, 0]),
       seed=st.integers(0, 2**32 - 1))
def test_streamed_in_uneven_batches_with_heavy_ties_equals_lexsort(impl_: Impl, n: int, k: int, levels: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = (rng.integers(0, levels, n) if levels else rng.random(n)).astype(np.float32)
    ids = rng.permutation(n).astype(np.int64) * 3 - 1000  # unordered, negative ids too
    cuts = sorted(rng.choice(max(n, 1), size=min(n, int(rng.integers(0, 40))), replace=False).tolist())
    top = stream(impl_, scores, ids, k, cuts)
    want_scores, want_ids = full_sort(scores, ids, k)
    np.testing.assert_array_equal(impl_.numpy(top.ids), want_ids)
    np.testing.assert_array_equal(impl_.numpy(top.scores), want_scores)
    assert len(top) == min(k, n)


def test_merge_returns_a_new_value_and_leaves_the_old_one_alone(impl: Impl) -> None:
    before = impl.merged(impl.empty(3), np.array([0.5, 0.2, 0.9], np.float32), np.array([1, 2, 3]))
    after = impl.merged(before, np.array([0.95, 0.1], np.float32), np.array([4, 5]))
    assert impl.numpy(before.ids).tolist() == [3, 1, 2] and impl.numpy(after.ids).tolist() == [4, 3, 1]


def test_a_batch_that_cannot_enter_returns_the_same_value(impl: Impl) -> None:
    top = impl.merged(impl.empty(2), np.array([0.9, 0.8], np.float32), np.array([1, 2]))
    assert impl.merged(top, np.array([0.1, 0.8], np.float32), np.array([7, 3])) is top  # 0.8 ties but id 3 > 2


def test_float64_scores_keep_their_precision(impl: Impl) -> None:
    top = impl.merged(impl.empty(2, np.float64), np.array([1e-300, 2e-300, 0.0]), np.array([1, 2, 3]))
    assert impl.numpy(top.ids).tolist() == [2, 1] and impl.numpy(top.scores).dtype == np.float64


def test_k_must_be_positive(impl: Impl) -> None:
    with pytest.raises(ValueError, match="k must be > 0, got 0"):
        impl.empty(0)


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "all-tied"])
def test_memory_stays_at_k_over_a_long_stream(impl: Impl, ties: bool) -> None:
    """What a value holds (the best K and the unsorted candidates) never passes 2K pairs,
    however long the stream: 200 batches of 1000 into k = 50."""
    rng = np.random.default_rng(5)
    top, held = impl.empty(50), []
    for i in range(200):
        scores = np.full(1000, 0.5, np.float32) if ties else rng.random(1000).astype(np.float32)
        top = impl.merged(top, scores, np.arange(i * 1000, (i + 1) * 1000))
        held.append(len(impl.numpy(top.held_ids())))
        assert len(top) == 50
    assert max(held) <= 2 * 50 and min(held) >= 50
    scores = impl.numpy(top.scores)
    assert scores.shape == (50,) and bool((scores[:-1] >= scores[1:]).all())
    if ties:  # all equal: the first 50 ids of the stream
        assert impl.numpy(top.ids).tolist() == list(range(50))


@pytest.mark.parametrize("cuts", [[], [3], [1, 2, 5, 9]])
def test_an_id_sent_twice_is_held_once_with_its_best_score(impl: Impl, cuts: list[int]) -> None:
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 12, 40).astype(np.int64)  # every id many times, within and across batches
    scores = rng.random(40).astype(np.float64)
    top = stream(impl, scores, ids, 8, cuts)
    got_ids, got_scores = impl.numpy(top.ids), impl.numpy(top.scores)
    best = {i: scores[ids == i].max() for i in np.unique(ids)}
    want = sorted(best, key=lambda i: (-best[i], i))[:8]
    assert got_ids.tolist() == want and len(top) == 8
    np.testing.assert_array_equal(got_scores, [best[i] for i in want])
