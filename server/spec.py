"""A request's StrategySpec → the registry's Strategy and ScoreOptions; back for replies."""
from __future__ import annotations

import math
from dataclasses import dataclass

from poolscore.server.errors import BadInput, OverLimit
from poolscore.server.scoring import STRATEGIES, ScoreOptions, Strategy, strategy_named
from poolscore.v1 import scoring_pb2 as pb

_KINDS = {pb.LOGITS: "logits", pb.PROBABILITIES: "probabilities", pb.LOG_PROBABILITIES: "log_probabilities"}


@dataclass(frozen=True)
class Spec:
    strategy: Strategy
    options: ScoreOptions
    wire: pb.StrategySpec  # as the caller sent it, for GetSession


def parse(spec: pb.StrategySpec) -> Spec:
    if not spec.name:
        raise BadInput("strategy.name", f"missing; one of {', '.join(sorted(STRATEGIES))}")
    if spec.input_kind not in _KINDS:
        raise BadInput("strategy.input_kind", f"unknown value {spec.input_kind}")
    try:
        options = ScoreOptions(
            input_kind=_KINDS[spec.input_kind],
            temperature=spec.temperature or 1.0,
            base=spec.base or math.e,
            normalized=spec.normalized,
            seed=spec.seed,
        )
    except BadInput as err:  # named as the wire spells it: the options are StrategySpec's fields
        raise BadInput(err.field.replace("options.", "strategy.", 1), err.problem, err.row) from None
    return Spec(strategy_named(spec.name), options, spec)


@dataclass(frozen=True)
class Feed:
    """A hosted model that turns a batch's raw inputs into the strategy's logits."""
    model: object  # models.HostedModel or models.Committee
    samples: int
    seed: int
    wire: pb.ModelSpec


def feed_for(wire: pb.ModelSpec, spec: Spec, models) -> Feed | None:
    """Resolve and check the request's model against the strategy's input shape, or None."""
    if not wire.name:
        return None
    model = models.get(wire.name)
    committee = getattr(model.config, "committee", ())
    sampled = committee or wire.samples > 0
    if spec.strategy.rank == 3 and not sampled:
        raise BadInput("model.samples", f"strategy {spec.strategy.name} needs {spec.strategy.shape}: "
                                        f"set samples > 0 (MC dropout) or use a committee")
    if spec.strategy.rank == 2 and sampled:
        raise BadInput("model", f"strategy {spec.strategy.name} takes [N, C]; {wire.name} would give a sample axis")
    if wire.samples < 0:
        raise BadInput("model.samples", f"must be ≥ 0, got {wire.samples}")
    return Feed(model, wire.samples, wire.seed, wire)


def check_k(k: int, max_k: int) -> int:
    if k <= 0:
        raise BadInput("k", f"must be > 0, got {k}")
    if k > max_k:
        raise OverLimit(f"k: {k} is over this server's limit of {max_k}")
    return k
