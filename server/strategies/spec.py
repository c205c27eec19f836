"""A strategy as a request asks for it: the registry's Strategy and its ScoreOptions."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from poolscore.server.errors import BadInput, OverLimit
from poolscore.server.strategies.options import ScoreOptions, options_from
from poolscore.server.strategies.registry import STRATEGIES, Strategy, strategy_named
from poolscore.server.strategies.selection import Selection, selection_for


@dataclass(frozen=True)
class Spec:
    strategy: Strategy  # as asked for
    options: ScoreOptions
    kernel: Strategy | None = None  # the pointwise strategy whose kernel runs (a selection's pre_score)
    selection: Selection = Selection()

    def __post_init__(self) -> None:
        if self.kernel is None:
            object.__setattr__(self, "kernel", self.strategy)

    def describe(self) -> str:
        o = self.options
        pre = f" over {self.kernel.name}" if self.kernel is not self.strategy else ""
        return (f"strategy {self.strategy.name}{pre} ({o.input_kind.value}, temperature {o.temperature:g}, "
                f"base {o.base:g}, normalized {o.normalized}, seed {o.seed}{self.selection.describe()})")


def parse_spec(name: str, options: Mapping[str, Any], prefix: str = "strategy") -> Spec:
    """The named strategy with these options; BadInput or UnknownStrategy name what is wrong."""
    if not name:
        raise BadInput(f"{prefix}.name", f"missing; one of {', '.join(sorted(STRATEGIES))}")
    strategy = strategy_named(name)
    kernel, selection = selection_for(strategy, options, prefix)
    return Spec(strategy, options_from(options, prefix), kernel, selection)


def check_k(k: int, max_k: int) -> int:
    if k <= 0:
        raise BadInput("k", f"must be > 0, got {k}")
    if k > max_k:
        raise OverLimit(f"k: {k} is over this server's limit of {max_k}")
    return k
