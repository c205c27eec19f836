"""The streaming top-K equals a full lexsort of the whole pool, however it is batched."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from poolscore.server.topk.torch_topk import TorchTopK as TopK
from poolscore.server.topk.numpy_topk import NumpyTopK


def stream(scores: np.ndarray, ids: np.ndarray, k: int, cuts: list[int], numpy: bool = False):
    """Either implementation: torch (topk.py) or NumPy (topk_numpy.py, the ONNX backend's)."""
    top = NumpyTopK.empty(k, scores.dtype) if numpy else TopK.empty(k, dtype=torch.from_numpy(scores).dtype)
    as_array = (lambda a: a) if numpy else torch.from_numpy
    for lo, hi in zip([0] + cuts, cuts + [len(scores)]):
        top = top.merged(as_array(scores[lo:hi]), as_array(ids[lo:hi]))
    return top


def full_sort(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((ids, -scores))[:k]  # score descending, then id ascending
    return scores[order], ids[order]


@pytest.mark.parametrize("numpy", [False, True], ids=["torch", "numpy"])
@given(n=st.integers(0, 3000), k=st.integers(1, 300), levels=st.sampled_from([2, 7, 1000, 0]),
       seed=st.integers(0, 2**32 - 1))
def test_streamed_in_uneven_batches_with_heavy_ties_equals_lexsort(numpy: bool, n: int, k: int, levels: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = (rng.integers(0, levels, n) if levels else rng.random(n)).astype(np.float32)
    ids = rng.permutation(n).astype(np.int64) * 3 - 1000  # unordered, negative ids too
    cuts = sorted(rng.choice(max(n, 1), size=min(n, int(rng.integers(0, 40))), replace=False).tolist())
    top = stream(scores, ids, k, cuts, numpy)
    want_scores, want_ids = full_sort(scores, ids, k)
    np.testing.assert_array_equal(np.asarray(top.ids), want_ids)
    np.testing.assert_array_equal(np.asarray(top.scores), want_scores)


def test_merge_returns_a_new_value_and_leaves_the_old_one_alone() -> None:
    before = TopK.empty(3).merged(torch.tensor([0.5, 0.2, 0.9]), torch.tensor([1, 2, 3]))
    after = before.merged(torch.tensor([0.95, 0.1]), torch.tensor([4, 5]))
    assert before.ids.tolist() == [3, 1, 2] and after.ids.tolist() == [4, 3, 1]


def test_a_batch_that_cannot_enter_returns_the_same_value() -> None:
    top = TopK.empty(2).merged(torch.tensor([0.9, 0.8]), torch.tensor([1, 2]))
    assert top.merged(torch.tensor([0.1, 0.8]), torch.tensor([7, 3])) is top  # 0.8 ties but id 3 > 2


def test_float64_scores_keep_their_precision() -> None:
    top = TopK.empty(2, dtype=torch.float64).merged(
        torch.tensor([1e-300, 2e-300, 0.0], dtype=torch.float64), torch.tensor([1, 2, 3]))
    assert top.ids.tolist() == [2, 1] and top.scores.dtype == torch.float64


def test_k_must_be_positive() -> None:
    with pytest.raises(ValueError, match="k must be > 0, got 0"):
        TopK.empty(0)


def test_memory_stays_at_k_over_a_long_stream() -> None:
    rng = np.random.default_rng(5)
    top = TopK.empty(50)
    for i in range(200):
        top = top.merged(torch.from_numpy(rng.random(1000).astype(np.float32)), torch.arange(i * 1000, (i + 1) * 1000))
        assert len(top) == min(50, (i + 1) * 1000)
    assert top.scores.shape == (50,) and bool((top.scores[:-1] >= top.scores[1:]).all())


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_scores_on_the_scoring_device_merge_with_ids_from_the_wire(device: str) -> None:
    """As the server calls it: scores where the kernel ran, ids decoded (or numbered) on the CPU."""
    rng = np.random.default_rng(8)
    scores = rng.random(5000).astype(np.float32)
    ids = torch.arange(5000) * 7
    top = TopK.empty(10, torch.float64, device)
    for lo in range(0, 5000, 700):
        top = top.merged(torch.from_numpy(scores[lo:lo + 700]).to(device), ids[lo:lo + 700])
    want_scores, want_ids = full_sort(scores, ids.numpy(), 10)
    np.testing.assert_array_equal(top.ids.cpu().numpy(), want_ids)
    np.testing.assert_array_equal(top.scores.cpu().numpy(), want_scores.astype(np.float64))
    assert top.ids.device.type == device
