"""The `--backend onnx` scorer: the registry's graphs run by onnxruntime, one session each.

No torch import here or in graphs.py (numpy, onnx and onnxruntime only). The ONNX backend
computes in float32 whatever the input's float dtype (torch keeps float64 in float64), and it
reports a bad row the way the torch kernels do: a NaN score in that row, for the caller to name.
"""
from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping

import numpy as np
import onnxruntime as ort

from poolscore.server.backends.native import library as native_library
from poolscore.server.backends.onnx.graphs import scorer_graph
from poolscore.server.strategies import POINTWISE as STRATEGIES, ScoreOptions, options_from
from poolscore.server.strategies.options import entropy_divisor
from poolscore.server.runtime.threads import kernel_threads


_MIN_SPLIT_ROWS = 4096  # a split smaller than this costs more in run overhead than it saves


def default_providers() -> list[str]:
    """CUDA first when this onnxruntime has it, then the CPU."""
    cuda = ["CUDAExecutionProvider"] if "CUDAExecutionProvider" in ort.get_available_providers() else []
    return cuda + ["CPUExecutionProvider"]


def first_bad_row(scores: np.ndarray) -> int | None:
    """The first row whose score is not finite (NaN marks a NaN/Inf input row), or None."""
    bad = np.flatnonzero(~np.isfinite(scores))
    return int(bad[0]) if bad.size else None


def _options(options: Mapping[str, Any] | ScoreOptions | None) -> ScoreOptions:
    """ScoreOptions as given, or parsed from a mapping of option names (missing: the defaults)."""
    return options if isinstance(options, ScoreOptions) else options_from(options or {})


class OnnxScorer:
    """Scores batches with onnxruntime: one cached session per (strategy, options, rank, classes).

    On the CPU each run is single-threaded, and `intra_op_threads` > 1 splits a batch's rows over
    that many runs at once. onnxruntime's own threads split an elementwise op's buffer where a
    vector's worth of elements may straddle two threads, and its Log computes those on another
    path: a row's score then depended on where the row sat (builder.py). Split by rows, each row
    is computed whole by one run, the same way wherever it sits."""

    def __init__(self, providers: list[str] | None = None, *, opset: int = 17,
                 intra_op_threads: int | None = None) -> None:
        self.providers = providers or default_providers()
        self.opset = opset
        self._session_options = ort.SessionOptions()
        on_cpu = self.providers[0] == "CPUExecutionProvider"
        self._splits = max(1, intra_op_threads or 1) if on_cpu else 1
        # the native kernels (backends/native) score what they hold: built now (once per machine,
        # 0.3-1 s; then 20 ms to find), so every batch is scored by the same code
        self._native = native_library.load() if on_cpu else None
        if on_cpu:
            self._session_options.intra_op_num_threads = 1
            self._session_options.inter_op_num_threads = 1
        self._pool = ThreadPoolExecutor(self._splits, thread_name_prefix="poolscore-onnx") if self._splits > 1 else None
        self._sessions: dict[tuple, ort.InferenceSession] = {}
        self._lock = threading.Lock()

    def session(self, strategy: str, *, classes: int | None = None,
                options: Mapping[str, Any] | ScoreOptions | None = None) -> ort.InferenceSession:
        """The cached session of this strategy's graph; options that do not apply stay out of the key."""
        o = _options(options)
        kind, temperature, base, normalized = o.input_kind.value, o.temperature, o.base, o.normalized
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy: unknown {strategy!r}; known: {', '.join(sorted(STRATEGIES))}")
        spec = STRATEGIES[strategy]
        if spec.scores_ids:  # random: ids and seed are inputs, no options apply
            kind, temperature, base, normalized, classes = "logits", 1.0, math.e, False, None
        elif not spec.entropic or normalized:
            base, normalized = math.e, normalized and spec.entropic
        key = (strategy, kind, temperature, base, normalized, spec.rank, classes)
        with self._lock:
            found = self._sessions.get(key)
            if found is None:
                graph = scorer_graph(strategy, classes=classes, input_kind=kind, temperature=temperature,
                                     base=base, normalized=normalized, opset=self.opset)
                found = ort.InferenceSession(graph.SerializeToString(), sess_options=self._session_options,
                                             providers=self.providers)
                self._sessions[key] = found
            return found

    def score(self, strategy: str, x: np.ndarray, *, embedding: np.ndarray | None = None,
              options: Mapping[str, Any] | ScoreOptions | None = None) -> np.ndarray:
        """Scores [N]: float32, NaN in rows of invalid input. For `random`, x is the int64 ids
        and the scores are float64 (as the torch backend). float16/float64 input is scored in float32."""
        if strategy == "random":
            ids = np.ascontiguousarray(x, dtype=np.int64).reshape(-1)
            seed = np.array(_options(options).seed, np.int64)
            return self.session("random").run(["scores"], {"ids": ids, "seed": seed})[0]
        spec = STRATEGIES.get(strategy)
        x = np.ascontiguousarray(x, dtype=np.float32)
        if spec is not None and x.ndim != spec.rank:
            raise ValueError(f"{strategy} needs a rank-{spec.rank} input, got shape {list(x.shape)}")
        if any(n == 0 for n in x.shape[1:]):
            raise ValueError(f"empty axis in shape {list(x.shape)}")
        o = _options(options)
        session = self.session(strategy, classes=x.shape[-1], options=o)  # also checks the options
        if x.shape[0] == 0:
            return np.empty(0, np.float32)
        if self._natively_scored(strategy, x, o):
            return self._natively(strategy, x, o)
        feeds = {"logits": x}
        if spec.needs_embedding:
            if embedding is None or np.ndim(embedding) != 2 or len(embedding) != len(x):
                raise ValueError(f"{strategy} needs an embedding [{len(x)}, D]")
            feeds["embedding"] = np.ascontiguousarray(embedding, dtype=np.float32)
        return self._run(session, feeds, len(x))

    def _natively_scored(self, strategy: str, x: np.ndarray, o: ScoreOptions) -> bool:
        """Whether the native kernel scores this (CPU, C ≤ its MAX_CLASSES, a strategy and shape
        it holds) rather than the graph. At C = 100 on one thread the graph scores entropy at
        0.74 GB/s, the native kernel at 5-6."""
        return (self._native is not None and native_library.pays(strategy, x.shape[-1])
                and self._native.serves(strategy, o.input_kind.value, x.shape))

    def _natively(self, strategy: str, x: np.ndarray, o: ScoreOptions) -> np.ndarray:
        """The native kernel's scores, rescaled as the graph rescales (÷ log C or ÷ log base)."""
        scores = self._native.score(strategy, x, 1.0 / o.temperature, o.input_kind.value,
                                     threads=kernel_threads(self._splits))
        divisor = entropy_divisor(STRATEGIES[strategy].entropic, o, x.shape[-1])
        if divisor is None:
            return scores * np.float32(0.0)  # NaN kept, as the graph's Mul
        return scores / np.float32(divisor) if divisor != 1.0 else scores

    def _run(self, session: ort.InferenceSession, feeds: dict[str, np.ndarray], rows: int) -> np.ndarray:
        """One run, or one per split of the rows at once (each a contiguous slice, no copy)."""
        if self._pool is None or rows < _MIN_SPLIT_ROWS * self._splits:
            return session.run(["scores"], feeds)[0]
        edges = np.linspace(0, rows, self._splits + 1).astype(int)
        parts = [{k: v[lo:hi] for k, v in feeds.items()} for lo, hi in zip(edges[:-1], edges[1:])]
        return np.concatenate(list(self._pool.map(lambda f: session.run(["scores"], f)[0], parts)))

    @property
    def cached(self) -> int:
        """How many sessions are cached."""
        return len(self._sessions)

    def close(self) -> None:
        with self._lock:
            self._sessions.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
