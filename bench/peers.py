"""The peers: baal 2.x and modAL 0.4 computing poolscore's scores in-process on NumPy arrays.

Each peer is called through its own public code on the arrays its users would hold: baal's
heuristics on [N, C] or [N, C, T] (its axis layout), modAL's query functions on an
estimator or committee whose predictions are our data. When poolscore gets logits, the
softmax a peer needs is inside its timed call (baal's `to_prob` does it itself where the
heuristic accepts logits; otherwise scipy.special.softmax, the one baal uses).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
from baal.active.heuristics import BALD, Certainty, Entropy, Margin, Random
from modAL.disagreement import KL_max_disagreement, consensus_entropy, vote_entropy
from modAL.uncertainty import classifier_entropy, classifier_margin, classifier_uncertainty
from scipy.special import softmax


@dataclass
class PeerInput:
    """One shape's data as the peers take it (layouts made once, outside the timing)."""

    logits: np.ndarray  # poolscore's layout: [N, C] or [N, S, C] float32
    ids: np.ndarray  # [N] int64
    baal_mc: np.ndarray | None = None  # [N, C, T]: baal's MC-dropout layout of the same logits


Peer = Callable[[PeerInput], np.ndarray]


class SoftmaxClassifier:
    """A fitted classifier whose inputs are its logits: predict_proba is their softmax."""

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return softmax(X, axis=1)


class SoftmaxCommittee:
    """modAL's Committee interface over [N, M, C] logits: member m predicts X[:, m]."""

    def __init__(self, members: int, classes: int) -> None:
        self.members, self.classes_ = members, np.arange(classes)

    def __len__(self) -> int:
        return self.members

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.members))

    def vote(self, X: np.ndarray) -> np.ndarray:
        """Each learner's predict(): its argmax, as float like modAL's vote array (no softmax needed)."""
        return X.argmax(-1).astype(np.float64)

    def vote_proba(self, X: np.ndarray) -> np.ndarray:
        """Each learner's predict_proba(): [N, M, C]."""
        return softmax(X, axis=-1)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """The committee's consensus: the members' mean probabilities, [N, C]."""
        return self.vote_proba(X).mean(1)


def _committee(d: PeerInput) -> SoftmaxCommittee:
    return SoftmaxCommittee(d.logits.shape[1], d.logits.shape[2])


_CLF = SoftmaxClassifier()

PEERS: dict[str, dict[str, Peer]] = {
    "least_confidence": {
        # baal Certainty: max_c p (it takes no logits, so we softmax); lower = more informative
        "baal": lambda d: Certainty().get_uncertainties(softmax(d.logits, axis=1)),
        # modAL classifier_uncertainty: 1 - max predict_proba
        "modAL": lambda d: classifier_uncertainty(_CLF, d.logits),
    },
    "margin": {
        # baal Margin: to_prob softmax of the logits, full sort over C, p(1) - p(2)
        "baal": lambda d: Margin().get_uncertainties(d.logits),
        # modAL classifier_margin: np.partition of -predict_proba, p(1) - p(2)
        "modAL": lambda d: classifier_margin(_CLF, d.logits),
    },
    "entropy": {
        # baal Entropy: to_prob softmax of the logits, scipy.stats.entropy over C (nats)
        "baal": lambda d: Entropy().get_uncertainties(d.logits),
        # modAL classifier_entropy: scipy.stats.entropy of predict_proba (nats)
        "modAL": lambda d: classifier_entropy(_CLF, d.logits),
    },
    "bald": {
        # baal BALD on [N, C, T] logits: to_prob softmax over C, H(mean p) - mean H(p_t) with xlogy
        "baal": lambda d: BALD().get_uncertainties(d.baal_mc),
    },
    "predictive_entropy": {
        # baal Entropy on [N, C, T] probabilities: singlepass mean over T, then entropy
        # (it means before to_prob, so it must get probabilities: we softmax)
        "baal": lambda d: Entropy().get_uncertainties(softmax(d.baal_mc, axis=1)),
        # modAL consensus_entropy: entropy of the committee's mean predict_proba
        "modAL": lambda d: consensus_entropy(_committee(d), d.logits),
    },
    "vote_entropy": {
        # modAL vote_entropy: members' votes, a Python Counter per row, scipy entropy
        "modAL": lambda d: vote_entropy(_committee(d), d.logits),
    },
    "kl_max_disagreement": {
        # modAL KL_max_disagreement: scipy entropy(p_m, qk=mean p) per member, max over members
        "modAL": lambda d: KL_max_disagreement(_committee(d), d.logits),
    },
    "random": {
        # baal Random: rng.rand(N), a fresh draw per call (not a function of the ids)
        "baal": lambda d: Random(seed=0).get_uncertainties(d.ids),
    },
}


def peers_for(strategy: str) -> dict[str, Peer]:
    """The peers that compute `strategy`'s score (possibly none)."""
    return PEERS.get(strategy, {})
