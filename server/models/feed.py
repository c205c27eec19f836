"""A request's model: the hosted model that turns a batch's raw inputs into its logits."""
from __future__ import annotations

from dataclasses import dataclass

from poolscore.server.errors import BadInput
from poolscore.server.models.repository import Model, ModelRepository
from poolscore.server.strategies import Spec


@dataclass(frozen=True)
class Feed:
    model: Model
    samples: int  # T > 0: MC-dropout passes
    seed: int  # seeds the passes' dropout

    @property
    def key(self) -> tuple[str, int, int]:
        """What makes two sessions' models the same."""
        return self.model.name, self.samples, self.seed

    def describe(self) -> str:
        return f"model {self.model.name!r} ({self.samples} samples, seed {self.seed})"


def feed_for(name: str, samples: int, seed: int, spec: Spec, models: ModelRepository) -> Feed | None:
    """Resolve and check the request's model against the strategy's input shape; None for no model."""
    if not name:
        return None
    model = models.get(name)
    sampled = bool(model.config.committee) or samples > 0
    scored = spec.kernel  # a selection's pre_score says what shape the model must give
    if scored.rank == 3 and not sampled:
        raise BadInput("model.samples", f"strategy {scored.name} needs {scored.shape}: "
                                        f"set samples > 0 (MC dropout) or use a committee")
    if scored.rank == 2 and sampled:
        raise BadInput("model", f"strategy {scored.name} takes [N, C]; {name} would give a sample axis")
    if samples < 0:
        raise BadInput("model.samples", f"must be ≥ 0, got {samples}")
    return Feed(model, samples, seed)
