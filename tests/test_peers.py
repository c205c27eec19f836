"""Poolscore's strategies against the peers' own functions (baal 2.1, modAL 0.4), on the same seeded data.

strategy             peer function                                           transform of the peer's output
least_confidence     baal Certainty().get_uncertainties                      1 - peer (baal scores max p)
least_confidence     modAL.uncertainty.classifier_uncertainty                none
margin               baal Margin().get_uncertainties                         1 - peer (baal scores p(1) - p(2))
margin               modAL.uncertainty.classifier_margin                     1 - peer (modAL scores p(1) - p(2))
entropy              baal Entropy().get_uncertainties                        none (nats)
entropy              modAL.uncertainty.classifier_entropy                    none (nats)
predictive_entropy   baal Entropy() on [N, C, T] (means over T first)        none
predictive_entropy   modAL.disagreement.consensus_entropy                    none
bald                 baal BALD().get_uncertainties on [N, C, T]              none
vote_entropy         modAL.disagreement.vote_entropy                         none
kl_max_disagreement  modAL.disagreement.KL_max_disagreement                  none
kl_disagreement      modAL consensus_entropy - mean_m classifier_entropy(m)  identity: mean_m KL(p_m‖p̄) = H(p̄) - mean_m H(p_m)

Entropic options: base=2 is compared with peer / ln 2, normalized with peer / ln C.
No counterpart in either peer: ratio, variation_ratios, expected_gradient_length, random.
baal takes [N, C] or [N, C, T] (classes on axis 1, samples last); modAL's committee functions
take a real modAL Committee of ActiveLearners, each wrapping a small fitted classifier whose
predict_proba reads its member's rows from a fixed table (X holds row numbers).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pytest
import torch
from baal.active.heuristics import BALD, Certainty, Entropy, Margin
from modAL.disagreement import KL_max_disagreement, consensus_entropy, vote_entropy
from modAL.models import ActiveLearner, Committee
from modAL.uncertainty import classifier_entropy, classifier_margin, classifier_uncertainty
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin

from poolscore.server.backends.torch.scorer import Scorer
from poolscore.server.strategies import STRATEGIES, ScoreOptions

Peer = Callable[[np.ndarray], np.ndarray]  # float64 probabilities in poolscore's layout → [N] scores
TOL = {np.float32: (1e-4, 1e-6), np.float64: (1e-9, 1e-12)}  # (rtol, atol)
FLAT = [(0, (64, 2)), (1, (64, 10)), (2, (32, 50)), (3, (1, 3))]  # (seed, [N, C])
STACKED = [(10, (32, 8, 2)), (11, (32, 20, 10)), (12, (16, 10, 50)), (13, (5, 1, 4))]  # [N, T|M, C]


class TableClassifier(ClassifierMixin, BaseEstimator):
    """A fitted classifier whose predict_proba returns rows of a fixed probability table."""

    def __init__(self, table: np.ndarray | None = None) -> None:
        self.table = table

    def fit(self, X: np.ndarray, y: np.ndarray) -> TableClassifier:
        """Learn the class labels only: the probabilities are the table's."""
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """The table's rows named by X[:, 0]."""
        return self.table[np.asarray(X)[:, 0].astype(int)]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The most probable class of each row."""
        return self.classes_[self.predict_proba(X).argmax(1)]


def _learner(table: np.ndarray) -> ActiveLearner:
    """A modAL ActiveLearner over a TableClassifier fitted on every class label."""
    c = table.shape[-1]
    return ActiveLearner(estimator=TableClassifier(table), X_training=np.zeros((c, 1)), y_training=np.arange(c))


def _committee(p: np.ndarray) -> Committee:
    """A modAL Committee whose member m predicts p[:, m, :]."""
    return Committee(learner_list=[_learner(p[:, m]) for m in range(p.shape[1])])


def _rows(p: np.ndarray) -> np.ndarray:
    """The X modAL is called with: row numbers, one feature."""
    return np.arange(p.shape[0])[:, None]


def _baal(heuristic: Certainty | Margin | Entropy | BALD, p: np.ndarray) -> np.ndarray:
    """baal's per-item scores; [N, T, C] becomes baal's [N, C, T] (iterations last)."""
    return heuristic.get_uncertainties(np.moveaxis(p, 1, -1) if p.ndim == 3 else p)


def _kl_mean_modal(p: np.ndarray) -> np.ndarray:
    """mean_m KL(p_m‖p̄) = H(p̄) - mean_m H(p_m): modAL's consensus entropy minus its members' mean entropy."""
    committee, x = _committee(p), _rows(p)
    members = np.stack([classifier_entropy(learner, x) for learner in committee], 1)
    return consensus_entropy(committee, x) - members.mean(1)


PAIRS: list[tuple[str, str, Peer]] = [
    # baal's Certainty scores max p and ranks ascending: poolscore's score is 1 - that.
    ("least_confidence", "baal.Certainty", lambda p: 1 - _baal(Certainty(), p)),
    ("least_confidence", "modAL.classifier_uncertainty", lambda p: classifier_uncertainty(_learner(p), _rows(p))),
    # Both peers score the margin p(1) - p(2) itself (small = informative): poolscore's is 1 - margin.
    ("margin", "baal.Margin", lambda p: 1 - _baal(Margin(), p)),
    ("margin", "modAL.classifier_margin", lambda p: 1 - classifier_margin(_learner(p), _rows(p))),
    ("entropy", "baal.Entropy", lambda p: _baal(Entropy(), p)),
    ("entropy", "modAL.classifier_entropy", lambda p: classifier_entropy(_learner(p), _rows(p))),
    ("predictive_entropy", "baal.Entropy", lambda p: _baal(Entropy(), p)),
    ("predictive_entropy", "modAL.consensus_entropy", lambda p: consensus_entropy(_committee(p), _rows(p))),
    ("bald", "baal.BALD", lambda p: _baal(BALD(), p)),
    ("vote_entropy", "modAL.vote_entropy", lambda p: vote_entropy(_committee(p), _rows(p))),
    ("kl_max_disagreement", "modAL.KL_max_disagreement", lambda p: KL_max_disagreement(_committee(p), _rows(p))),
    ("kl_disagreement", "modAL.consensus_entropy-classifier_entropy", _kl_mean_modal),
]


def _cases(shapes_for: Callable[[str], list[tuple[int, tuple[int, ...]]]], entropic_only: bool = False) -> list:
    """pytest params (strategy, peer, seed, shape) for every pair and the shapes its rank takes."""
    return [pytest.param(name, fn, seed, shape, id=f"{name}-{peer}-{'x'.join(map(str, shape))}")
            for name, peer, fn in PAIRS if STRATEGIES[name].entropic or not entropic_only
            for seed, shape in shapes_for(name)]


def _all_shapes(name: str) -> list[tuple[int, tuple[int, ...]]]:
    """Every shape of the strategy's rank."""
    return FLAT if STRATEGIES[name].rank == 2 else STACKED


def _two_shapes(name: str) -> list[tuple[int, tuple[int, ...]]]:
    """C=2 and C=50 only, for the option sweeps."""
    shapes = FLAT if STRATEGIES[name].rank == 2 else STACKED
    return [shapes[0], shapes[2]]


def _logits(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """Seeded float64 logits; along T/M the rows share an item-level mean, so members half agree."""
    rng = np.random.default_rng(seed)
    item = rng.normal(0.0, 2.0, shape[:1] + (1,) * (len(shape) - 2) + shape[-1:])
    return item + rng.normal(0.0, 1.0, shape)


def _probabilities(seed: int, shape: tuple[int, ...], zeros: bool) -> np.ndarray:
    """Seeded float64 probabilities; with `zeros`, about a quarter of the non-top classes are exactly 0."""
    z = _logits(seed, shape)
    if zeros:
        mask = np.random.default_rng(seed + 1000).random(shape) < 0.25
        np.put_along_axis(mask, z.argmax(-1)[..., None], False, -1)
        z[mask] = -np.inf
    return softmax(z, axis=-1)


def _ours(scorer: Scorer, name: str, x: np.ndarray, **options: object) -> np.ndarray:
    """Poolscore's scores for x (any input kind), as float64 NumPy."""
    return scorer.score(name, torch.from_numpy(x), options=ScoreOptions(**options)).double().cpu().numpy()


def _check(ours: np.ndarray, peer: np.ndarray, dtype: type, shape: tuple[int, ...]) -> None:
    """Same [N] scores within the dtype's tolerance, and not vacuously (the peer's scores vary)."""
    rtol, atol = TOL[dtype]
    assert ours.shape == peer.shape == shape[:1]
    np.testing.assert_allclose(ours, peer, rtol=rtol, atol=atol)
    if shape[0] > 1 and (len(shape) == 2 or shape[1] > 1):
        assert np.ptp(peer) > 0


@pytest.mark.parametrize("zeros", [False, True], ids=["dense", "zeros"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name, peer, seed, shape", _cases(_all_shapes))
def test_probabilities_match_peer(scorer: Scorer, name: str, peer: Peer, seed: int,
                                  shape: tuple[int, ...], dtype: type, zeros: bool) -> None:
    """Poolscore on probabilities equals the peer on the very same (upcast) numbers."""
    p = _probabilities(seed, shape, zeros).astype(dtype)
    ours = _ours(scorer, name, p, input_kind="probabilities")
    _check(ours, peer(p.astype(np.float64)), dtype, shape)


@pytest.mark.parametrize("kind, temperature", [("logits", 1.0), ("logits", 2.5), ("log_probabilities", 0.5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name, peer, seed, shape", _cases(_two_shapes))
def test_logits_match_peer_on_scipy_softmax(scorer: Scorer, name: str, peer: Peer, seed: int, shape: tuple[int, ...],
                                            dtype: type, kind: str, temperature: float) -> None:
    """Poolscore on logits (or log-probabilities) equals the peer on scipy's float64 softmax(z / T)."""
    z = _logits(seed, shape)
    x = (log_softmax(z, axis=-1) if kind == "log_probabilities" else z).astype(dtype)
    p = softmax(x.astype(np.float64) / temperature, axis=-1)
    ours = _ours(scorer, name, x, input_kind=kind, temperature=temperature)
    _check(ours, peer(p), dtype, shape)


@pytest.mark.parametrize("option", ["base2", "normalized"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name, peer, seed, shape", _cases(_two_shapes, entropic_only=True))
def test_entropic_options_match_rescaled_peer(scorer: Scorer, name: str, peer: Peer, seed: int,
                                              shape: tuple[int, ...], dtype: type, option: str) -> None:
    """base=2 is the peer's nats ÷ ln 2; normalized is the peer's nats ÷ ln C."""
    p = _probabilities(seed, shape, zeros=False).astype(dtype)
    options = {"base": 2.0} if option == "base2" else {"normalized": True}
    ours = _ours(scorer, name, p, input_kind="probabilities", **options)
    # The peers report nats only: rescale their output the way the option defines the score.
    scale = math.log(2.0) if option == "base2" else math.log(shape[-1])
    _check(ours, peer(p.astype(np.float64)) / scale, dtype, shape)
