"""The strategies' contract, without torch: the registry, the options, validation.

Backends key their implementations by the registry's names; transports parse requests
into a Spec. Set-level strategies (core-set, BADGE, ...) will live here too."""
from poolscore.server.strategies.options import InputKind, ScoreOptions, options_from
from poolscore.server.strategies.registry import POINTWISE, STRATEGIES, Strategy, strategy_named
from poolscore.server.strategies.spec import Spec, check_k, parse_spec

__all__ = ["InputKind", "ScoreOptions", "options_from", "POINTWISE", "STRATEGIES", "Strategy", "strategy_named", "Spec",
           "check_k", "parse_spec"]
