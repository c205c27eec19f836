"""Every strategy the service knows, with what it takes: one row of DESIGN.md's table each.

Metadata only, and no torch: the ONNX backend serves from this table too. Each backend
keys its implementations by these names (backends/torch/kernels.py, backends/onnx/graphs.py)
and declares nothing of its own about them: rank, classes, embedding and entropic are here.
"""
from __future__ import annotations

from dataclasses import dataclass

from poolscore.server.errors import UnknownStrategy


@dataclass(frozen=True)
class Strategy:
    name: str
    shape: str  # the input's axes, as ServerInfo shows them: "[N, C]", "[N, T, C]", "[N] ids"
    summary: str
    needs_embedding: bool = False
    min_classes: int = 1
    entropic: bool = False  # the score is an entropy: base and normalized options apply
    selects: bool = False  # a selection over another strategy's scores (its pre_score): no kernel of its own
    set_level: bool = False  # selects once, at finish, over a bounded candidate set (setlevel/)
    keeps: tuple[str, ...] = ()  # what each candidate holds beside its id: "embedding", "log_probs"
    default_pre_score: str = "margin"

    @property
    def pointwise(self) -> bool:
        """Has a kernel of its own: scores each row from its tensors alone."""
        return not self.selects

    @property
    def scores_ids(self) -> bool:
        """Scored from ids alone (random): no tensor of predictions."""
        return self.shape == "[N] ids"

    @property
    def rank(self) -> int:
        return 1 if self.scores_ids else self.shape.count(",") + 1

    @property
    def sample_axis(self) -> str | None:
        """The middle axis' name: "T" (MC-dropout passes), "M" (committee members), or None."""
        return self.shape.strip("[]").split(", ")[1] if self.rank == 3 else None


_ALL = [
    Strategy("least_confidence", "[N, C]", "1 - max p"),
    Strategy("margin", "[N, C]", "1 - (p(1) - p(2))", min_classes=2),
    Strategy("ratio", "[N, C]", "p(2) / p(1)", min_classes=2),
    Strategy("entropy", "[N, C]", "-sum p log p", entropic=True),
    Strategy("variation_ratios", "[N, T, C]", "1 - modal votes / T"),
    Strategy("predictive_entropy", "[N, T, C]", "H(mean_t p_t)", entropic=True),
    Strategy("bald", "[N, T, C]", "H(mean_t p_t) - mean_t H(p_t)", entropic=True),
    Strategy("vote_entropy", "[N, M, C]", "entropy of the members' votes", entropic=True),
    Strategy("kl_disagreement", "[N, M, C]", "mean_m KL(p_m || mean p)", entropic=True),
    Strategy("kl_max_disagreement", "[N, M, C]", "max_m KL(p_m || mean p)", entropic=True),
    Strategy("expected_gradient_length", "[N, C]", "|h| sum_c p_c |p - e_c| (embedding h [N, D])",
             needs_embedding=True),
    Strategy("random", "[N] ids", "uniform from a seeded hash of the id"),
    Strategy("stochastic", "as pre_score", "a sample of K without replacement, p ∝ exp(β·s) or s^β "
             "(Gumbel top-K over the pre_score s)", selects=True),
    Strategy("class_balanced", "as pre_score", "the best by pre_score within per-predicted-class quotas",
             selects=True),
    Strategy("coreset", "embedding [N, D]", "k-center greedy over the candidates' embeddings (Sener & Savarese 2018)",
             needs_embedding=True, selects=True, set_level=True, keeps=("embedding",), default_pre_score="random"),
    Strategy("badge", "[N, C] + embedding [N, D]", "k-means++ seeding over gradient embeddings (p - e_y) x h "
             "(Ash et al. 2020)", needs_embedding=True, selects=True, set_level=True,
             keeps=("embedding", "log_probs"), default_pre_score="random"),
    Strategy("cluster_margin", "[N, C] + embedding [N, D]", "average-linkage clusters of the lowest-margin "
             "candidates, round robin from the smallest (Citovsky et al. 2021)", needs_embedding=True, selects=True,
             set_level=True, keeps=("embedding",)),
    Strategy("batch_bald", "[N, T, C]", "greedy joint mutual information of the batch (Kirsch et al. 2019)",
             selects=True, set_level=True, keeps=("log_probs",), default_pre_score="bald"),
    Strategy("expected_error_reduction", "[N, C] + embedding [N, D]", "mean loss over a reference sample now minus "
             "its expectation after one last-layer step on the candidate (Roy & McCallum 2001)",
             needs_embedding=True, selects=True, set_level=True, keeps=("embedding", "log_probs")),
]

STRATEGIES: dict[str, Strategy] = {s.name: s for s in _ALL}
POINTWISE: dict[str, Strategy] = {s.name: s for s in _ALL if s.pointwise}  # each backend has a kernel for these


def strategy_named(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise UnknownStrategy(name, list(STRATEGIES)) from None
