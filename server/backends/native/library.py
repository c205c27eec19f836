"""The native kernels through ctypes: float32 [N, T, C] (or [N, C]) NumPy arrays in, [N] scores out.

ctypes releases the GIL for the call, so the rows are split over threads in Python (no
OpenMP runtime beside torch's): the calling thread scores one part, a pool the others.
"""
from __future__ import annotations

import ctypes
import logging
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from poolscore.server.backends.native.build import build

log = logging.getLogger(__name__)

SAMPLE_AXIS = {"bald": 0, "predictive_entropy": 1, "kl_disagreement": 2, "kl_max_disagreement": 3,
               "variation_ratios": 4, "vote_entropy": 5}  # kernels.cpp's enum Strategy: [N, T, C]
POINTWISE = {"least_confidence": 6, "margin": 7, "ratio": 8, "entropy": 9}  # [N, C]
STRATEGIES = SAMPLE_AXIS | POINTWISE
KINDS = {"logits": 0, "log_probabilities": 1, "probabilities": 2}  # its enum Kind
MAX_CLASSES = 256  # [N, T, C]: past it the native kernels only tie with inductor's and the ONNX graphs'
MAX_ROW_FLOATS = 1 << 16  # T * C: a thread's scratch (two [T, C, 16] float blocks) stays ≤ 8 MiB
_ROWS_PER_PART = 1024  # below this many rows a thread costs more than it saves
_LANES = 16  # kernels.cpp's L: parts are split at multiples of it
_CHUNK_BYTES = 1 << 20  # a share of a batch a thread takes at a time
_MAX_PARTS = max(2, os.cpu_count() or 1)  # a part per scoring thread, at most one per core


def pays(strategy: str, classes: int) -> bool:
    """Whether the native kernel beats the compiled ones at this C: a sample-axis one up to
    MAX_CLASSES; a pointwise one at every C its scratch holds (1.0-1.7x inductor's at C = 300
    to 4000 on 2 threads, where a kernel call is also one ctypes call, not dynamo's wrappers)."""
    return classes <= (MAX_ROW_FLOATS if strategy in POINTWISE else MAX_CLASSES)


class Library:
    """The loaded library; `score` is thread-safe (all state is per call)."""

    def __init__(self, path: str) -> None:
        lib = ctypes.CDLL(path)
        self._score = lib.poolscore_score
        self._score.restype = ctypes.c_int
        self._score.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                ctypes.c_int64, ctypes.c_float, ctypes.c_void_p]
        # one pool for the process's life (threads start as parts need them): replacing a pool
        # another caller still submits to would fail that caller's request
        self._pool = ThreadPoolExecutor(_MAX_PARTS - 1, thread_name_prefix="poolscore-native")

    @staticmethod
    def serves(strategy: str, kind: str, shape: tuple[int, ...]) -> bool:
        """Whether this strategy, input kind and shape ([N, T, C], or [N, C] for a pointwise one)
        have a native kernel."""
        rank = 2 if strategy in POINTWISE else 3
        return (strategy in STRATEGIES and kind in KINDS and len(shape) == rank
                and min(shape[1:]) >= 1 and math.prod(shape[1:]) <= MAX_ROW_FLOATS)

    def score(self, strategy: str, x: np.ndarray, inv_t: float, kind: str, threads: int = 1) -> np.ndarray:
        """Scores of x (float32 [N, T, C], or [N, C] for a pointwise strategy; C-contiguous), NaN
        for a bad row, on `threads` threads."""
        if x.dtype != np.float32 or not x.flags.c_contiguous or not self.serves(strategy, kind, x.shape):
            raise ValueError(f"no native {strategy} kernel for {kind} {x.dtype} {list(x.shape)} "
                             f"(C-contiguous float32 of the strategy's rank)")
        n, t, c = x.shape if x.ndim == 3 else (x.shape[0], 1, x.shape[1])
        out = np.empty(n, np.float32)
        parts = max(1, min(threads, _MAX_PARTS, n // _ROWS_PER_PART))
        args = (STRATEGIES[strategy], KINDS[kind], float(inv_t), t, c)
        if parts == 1:
            self._part(x, out, 0, n, *args)
            return out
        # chunks of ~1 MiB handed out as the threads free up: a thread slowed by the gRPC threads
        # beside it scores fewer, where equal halves had the caller waiting a sixth of a batch
        step = -(-min(max(1, _CHUNK_BYTES // (4 * t * c)), -(-n // parts)) // _LANES) * _LANES
        chunks = iter(range(0, n, step))  # next() is one C call under the GIL: each chunk goes to one thread
        jobs = [self._pool.submit(self._drain, chunks, step, x, out, args) for _ in range(parts - 1)]
        try:
            self._drain(chunks, step, x, out, args)
        finally:
            for job in jobs:
                job.result()
        return out

    def _drain(self, chunks, step: int, x: np.ndarray, out: np.ndarray, args: tuple) -> None:
        for lo in chunks:
            self._part(x, out, lo, min(len(out), lo + step), *args)

    def _part(self, x: np.ndarray, out: np.ndarray, lo: int, hi: int, strategy: int, kind: int, inv_t: float,
              t: int, c: int) -> None:
        if hi <= lo:
            return
        row = t * c * 4
        if self._score(strategy, kind, x.ctypes.data + lo * row, hi - lo, t, c, inv_t, out.ctypes.data + lo * 4):
            raise MemoryError(f"native kernel scratch for T = {t}, C = {c}")


_loaded: Library | None = None
_tried = False
_load_lock = threading.Lock()  # one build per process; held across it (callers wait for the same file)


def load() -> Library | None:
    """The library, built on the first call (0.3-1 s; None, logged once, where it cannot be)."""
    global _loaded, _tried
    with _load_lock:
        if not _tried:
            _tried = True
            _loaded = _open(build())
        return _loaded


def _open(path) -> Library | None:
    """The library at `path`; one that does not load (a corrupt cached file) is built again once."""
    for retry in (True, False):
        if path is None:
            return None
        try:
            return Library(str(path))
        except OSError as e:
            log.warning("loading the native kernels from %s failed: %s", path, e)
        try:
            path.unlink()  # never rewritten in place: a loaded library is mapped
        except OSError:
            return None
        path = build() if retry else None
    return None
