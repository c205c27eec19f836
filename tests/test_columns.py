"""The column-form kernels (few classes, rows-inner) give the row kernels' scores and guards."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import reference as ref
from poolscore.server.backends.torch.columns import COLUMN_KERNELS
from poolscore.server.backends.torch.kernels import KERNELS
from poolscore.server.backends.torch.relayout import rows_inner

INV_T = torch.tensor(1.0, dtype=torch.float64)


def _inputs(rng: np.random.Generator, classes: int, kind: str) -> np.ndarray:
    z = rng.normal(size=(257, classes)) * 4
    z[3] = 2.0  # every class tied at the max
    z[4, :2] = z[4].max() + 1  # two tied maxima
    z[5, 0] = 80.0  # a confident row: the scores are tiny, not 0
    if kind == "logits":
        return z
    logp = z - np.logaddexp.reduce(z, axis=1, keepdims=True)
    return np.exp(logp) if kind == "probabilities" else logp


CASES = [(name, classes) for name in sorted(COLUMN_KERNELS) for classes in (1, 2, 3, 10, 16)
         if classes > 1 or name not in ("margin", "ratio")]  # those two need 2 classes (the scorer says so)


@pytest.mark.parametrize("name,classes", CASES)
@pytest.mark.parametrize("kind", ["logits", "probabilities", "log_probabilities"])
def test_column_kernels_match_the_row_kernels_and_the_reference(name: str, classes: int, kind: str) -> None:
    x = torch.from_numpy(_inputs(np.random.default_rng(classes), classes, kind).astype(np.float32))
    got = COLUMN_KERNELS[name](rows_inner(x), None, INV_T, kind).double().numpy()
    rows = KERNELS[name](x, None, INV_T, kind).double().numpy()
    np.testing.assert_allclose(got, rows, rtol=2e-6, atol=1e-7)
    want = getattr(ref, name)(ref.probs(x.double().numpy(), kind))
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-6)
    assert got[5] > 0 or classes == 1  # 1 - p_max of a confident row does not cancel to 0


@pytest.mark.parametrize("name", sorted(COLUMN_KERNELS))
def test_bad_rows_come_out_nan_as_in_the_row_kernels(name: str) -> None:
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32))
    x[1, 2], x[2, 0], x[3, 5], x[4, :] = float("nan"), float("inf"), -float("inf"), -float("inf")
    for kind in ("logits", "log_probabilities"):
        got = COLUMN_KERNELS[name](rows_inner(x), None, INV_T, kind)
        want = KERNELS[name](x, None, INV_T, kind)
        assert torch.equal(got.isnan(), want.isnan()), kind
        assert got[1].isnan() and got[2].isnan() and got[4].isnan()
        assert got[3].isnan() == (kind == "logits")  # -inf is p = 0 in log-probabilities


def test_float64_and_temperature_carry_through() -> None:
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(100, 7)))
    inv_t = torch.tensor(1 / 3.0, dtype=torch.float64)
    got = COLUMN_KERNELS["entropy"](rows_inner(x), None, inv_t, "logits")
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), ref.entropy(ref.probs(x.numpy(), "logits", 3.0)), rtol=1e-12)
