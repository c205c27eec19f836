"""Acquisition-score kernels: one fused pass over a batch, the same code on CUDA and CPU."""
from poolscore.server.scoring.options import InputKind, ScoreOptions
from poolscore.server.scoring.registry import STRATEGIES, Strategy, strategy_named
from poolscore.server.scoring.scorer import Scorer

__all__ = ["InputKind", "ScoreOptions", "STRATEGIES", "Strategy", "strategy_named", "Scorer"]
