"""Triton's extensions to the Open Inference Protocol that tools call: a model's config, the
repository index and inference statistics (tritonclient's get_model_config,
get_model_repository_index, get_inference_statistics; Triton's HTTP paths too)."""
from __future__ import annotations

import threading
import time

from poolscore.server.errors import ModelNotFound
from poolscore.server.models.repository import ModelRepository
from poolscore.server.strategies import STRATEGIES
from poolscore.v1.oip import inference_pb2 as oip

_TYPES = {"float16": oip.TYPE_FP16, "bfloat16": oip.TYPE_BF16, "float32": oip.TYPE_FP32, "float64": oip.TYPE_FP64,
          "int32": oip.TYPE_INT32, "int64": oip.TYPE_INT64}


class Statistics:
    """Per model: requests and rows inferred, successes and failures with their time."""

    def __init__(self) -> None:
        self._by_model: dict[str, list[int]] = {}  # name → [rows, requests, ok, ok ns, failed, failed ns, last ms]
        self._lock = threading.Lock()  # guards _by_model; held for a few additions only

    def record(self, name: str, rows: int, ok: bool, ns: int) -> None:
        with self._lock:
            s = self._by_model.setdefault(name, [0] * 7)
            if ok:
                s[0] += rows
                s[1] += 1
                s[2] += 1
                s[3] += ns
            else:
                s[4] += 1
                s[5] += ns
            s[6] = int(time.time() * 1000)

    def reply(self, names: list[str]) -> oip.ModelStatisticsResponse:
        with self._lock:
            held = {n: list(self._by_model.get(n, [0] * 7)) for n in names}
        duration = oip.StatisticDuration
        return oip.ModelStatisticsResponse(model_stats=[oip.ModelStatistics(
            name=n, version="1", last_inference=s[6], inference_count=s[0], execution_count=s[1],
            inference_stats=oip.InferStatistics(success=duration(count=s[2], ns=s[3]), fail=duration(count=s[4], ns=s[5])))
            for n, s in held.items()])

    def used(self) -> list[str]:
        with self._lock:
            return sorted(self._by_model)


def model_config(name: str, models: ModelRepository, is_scorer) -> oip.ModelConfigResponse:
    """A hosted model's or a scorer's config, as Triton would give it (dims without the batch axis)."""
    if name in models.models:
        model = models.models[name]
        c, first = model.config, model.input_config
        outputs = [oip.ModelOutput(name="logits", data_type=oip.TYPE_FP32, dims=[-1] if not c.committee else [-1, -1]),
                   oip.ModelOutput(name="scores", data_type=oip.TYPE_FP32, dims=[1])]
        if c.embedding_output:
            outputs.insert(1, oip.ModelOutput(name="embedding", data_type=oip.TYPE_FP32, dims=[-1]))
        config = oip.ModelConfig(name=c.name, platform=f"poolscore_{c.platform}", backend="poolscore",
                                 max_batch_size=c.max_batch_rows, output=outputs,
                                 input=[oip.ModelInput(name=first.input_name or "input",
                                                       data_type=_TYPES.get(first.input_dtype, oip.TYPE_INVALID),
                                                       dims=list(first.input_shape[1:]))])
        return oip.ModelConfigResponse(config=config)
    if not is_scorer(name):
        raise ModelNotFound(name)
    s = STRATEGIES[name]
    inputs = [oip.ModelInput(name="logits", data_type=oip.TYPE_FP32, dims=[-1] * (s.rank - 1))]
    if s.needs_embedding:
        inputs.append(oip.ModelInput(name="embedding", data_type=oip.TYPE_FP32, dims=[-1]))
    return oip.ModelConfigResponse(config=oip.ModelConfig(
        name=name, platform="poolscore_scorer", backend="poolscore", max_batch_size=2**31 - 1, input=inputs,
        output=[oip.ModelOutput(name="scores", data_type=oip.TYPE_FP32, dims=[1])]))


def repository_index(models: ModelRepository, scorers: list[str], ready_only: bool) -> oip.RepositoryIndexResponse:
    """Hosted models (and folders that did not load, with why), then the scorers."""
    index = oip.RepositoryIndexResponse.ModelIndex
    entries = [index(name=n, version="1", state="READY") for n in sorted(models.models)]
    if not ready_only:
        entries += [index(name=n, version="1", state="UNAVAILABLE", reason=why) for n, why in sorted(models.errors.items())]
    entries += [index(name=n, version="1", state="READY") for n in scorers if n not in models.models]
    return oip.RepositoryIndexResponse(models=entries)
