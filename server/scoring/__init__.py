"""Acquisition scores: the strategy table (no torch), and the torch Scorer (imported lazily,
so the ONNX backend can use the table without importing torch)."""
from poolscore.server.scoring.options import InputKind, ScoreOptions
from poolscore.server.scoring.registry import STRATEGIES, Strategy, strategy_named

__all__ = ["InputKind", "ScoreOptions", "STRATEGIES", "Strategy", "strategy_named", "Scorer"]


def __getattr__(name: str):
    if name == "Scorer":
        from poolscore.server.scoring.scorer import Scorer
        return Scorer
    raise AttributeError(name)
