"""poolscore.v1 messages ↔ the core's plain values: requests read, replies built, here only."""
from __future__ import annotations

import base64
from typing import Any, Mapping

import numpy as np

from poolscore.server.ingest.dtypes import wire_of
from poolscore.server.models.feed import Feed, feed_for
from poolscore.server.models.hosted import ModelInfo
from poolscore.server.models.repository import ModelRepository
from poolscore.server.sessions.session import Session, State
from poolscore.server.strategies import STRATEGIES, Spec, parse_spec
from poolscore.server.strategies.selection import CANDIDATES_PER_K
from poolscore.v1 import scoring_pb2 as pb

_KINDS = {pb.LOGITS: "logits", pb.PROBABILITIES: "probabilities", pb.LOG_PROBABILITIES: "log_probabilities"}
_WIRE_KINDS = {name: code for code, name in _KINDS.items()}


def spec_of(wire: pb.StrategySpec) -> Spec:
    """A StrategySpec as the core's Spec; errors name its fields (strategy.temperature)."""
    kind = _KINDS.get(wire.input_kind, str(wire.input_kind))  # an unknown enum value is named as sent
    return parse_spec(wire.name, {"input_kind": kind, "temperature": wire.temperature, "base": wire.base,
                                  "normalized": wire.normalized, "seed": wire.seed, "pre_score": wire.pre_score,
                                  "beta": wire.beta, "sampling": wire.sampling, "class_priors": list(wire.class_priors),
                                  "candidates": wire.candidates, "eta": wire.eta, "reference": wire.reference,
                                  "loss": wire.loss})


def spec_to_pb(spec: Spec) -> pb.StrategySpec:
    o, sel = spec.options, spec.selection
    selects = spec.strategy.selects
    return pb.StrategySpec(name=spec.strategy.name, input_kind=_WIRE_KINDS[o.input_kind.value], temperature=o.temperature,
                           base=o.base, normalized=o.normalized, seed=o.seed,
                           pre_score=spec.kernel.name if selects else "", beta=sel.beta if sel.kind in ("stochastic", "softrank") else 0.0,
                           sampling=sel.sampling if sel.kind in ("stochastic", "softrank") else "", class_priors=list(sel.priors),
                           candidates=sel.candidates, eta=sel.eta, reference=sel.reference, loss=sel.loss)


def feed_of(wire: pb.ModelSpec, spec: Spec, models: ModelRepository) -> Feed | None:
    return feed_for(wire.name, wire.samples, wire.seed, spec, models)


def tensor_to_pb(a: np.ndarray) -> pb.Tensor:
    a = np.ascontiguousarray(a)
    return pb.Tensor(dtype=pb.DataType.Value(wire_of(a)), shape=list(a.shape), data=a.tobytes())


def session_to_pb(s: Session) -> pb.Session:
    state = s.state
    model = pb.ModelSpec(name=s.feed.model.name, samples=s.feed.samples, seed=s.feed.seed) if s.feed else None
    return pb.Session(session_id=s.id, strategy=spec_to_pb(s.spec), k=s.k, next_seq=state.next_seq,
                      items=state.items, model=model, durable_seq=s.durable_seq)


def top_to_pb(state: State) -> pb.TopK:
    ids = state.top.ids.tolist()
    keys = [state.keys[i] for i in ids] if state.keyed else []
    return pb.TopK(ids=[] if state.keyed else ids, scores=state.top.scores.tolist(), keys=keys, items=state.items)


def ack(s: Session, state: State, seq: int, replayed: bool) -> pb.ScoreAck:
    return pb.ScoreAck(session_id=s.id, seq=state.next_seq - 1, items=state.items, acked_seq=seq, replayed=replayed,
                       durable_seq=s.durable_seq)


def session_header(s: Session) -> dict[str, Any]:
    """What a checkpoint file keeps of a session besides its state: its create request, on the wire."""
    model = pb.ModelSpec(name=s.feed.model.name, samples=s.feed.samples, seed=s.feed.seed) if s.feed else pb.ModelSpec()
    return {"k": s.k, "strategy": _b64(spec_to_pb(s.spec)), "model": _b64(model)}


def create_of(header: Mapping[str, Any]) -> tuple[pb.StrategySpec, int, pb.ModelSpec]:
    """A checkpoint header's create request (strategy, k, model), as session_header wrote it."""
    strategy, model = (message.FromString(base64.b64decode(header[name], validate=True))
                       for message, name in ((pb.StrategySpec, "strategy"), (pb.ModelSpec, "model")))
    return strategy, int(header["k"]), model


def _b64(message) -> str:
    return base64.b64encode(message.SerializeToString()).decode()


def model_info_to_pb(m: ModelInfo) -> pb.ModelInfo:
    return pb.ModelInfo(name=m.name, platform=m.platform, default_strategy=m.default_strategy,
                        input=pb.TensorSignature(name=m.input_name, dtype=m.input_dtype, shape=m.input_shape),
                        logits_output=m.logits_output, embedding_output=m.embedding_output,
                        mc_dropout=m.mc_dropout, members=list(m.members))


def strategies_to_pb() -> list[pb.StrategyInfo]:
    return [pb.StrategyInfo(name=s.name, input_shape=s.shape, summary=s.summary, needs_embedding=s.needs_embedding,
                            entropic=s.entropic, set_level=s.set_level,
                            default_pre_score=s.default_pre_score if s.selects else "",
                            candidates_per_k=CANDIDATES_PER_K if s.set_level or s.name == "stochastic" else 0) for s in STRATEGIES.values()]


def region_to_pb(region) -> pb.SharedMemoryRegion:
    return pb.SharedMemoryRegion(name=region.name, key=region.key, byte_size=region.size, idle_s=region.idle_s)
