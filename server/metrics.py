"""Prometheus metrics on a registry passed in (never the global one), moved once per batch."""
from __future__ import annotations

import threading

import numpy as np
from prometheus_client import (
    GC_COLLECTOR, CollectorRegistry, Counter, Gauge, GCCollector, Histogram, Info, PlatformCollector, ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


# acquisition scores span [0, 1] (margin, ratio, variation ratios) to [0, log C] (entropies, BALD) and beyond (EGL)
SCORE_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 100.0)
SCORE_SAMPLE = 1024  # scores per batch that the histogram takes, evenly strided: O(1) per batch, whatever N


class ScoreHistogram(Collector):
    """poolscore_score_sample: the distribution of the acquisition scores themselves, by strategy,
    from an evenly strided sample of each batch (counted in bulk, never per item in Python),
    so a team sees its pool's uncertainty drift between rounds."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._bounds = np.asarray(SCORE_BUCKETS)
        self._by_strategy: dict[str, list] = {}  # strategy → [counts per bucket (+Inf last), sum]
        self._lock = threading.Lock()  # guards _by_strategy; held for a few array additions only
        registry.register(self)

    def observe(self, strategy: str, scores: np.ndarray) -> None:
        if not len(scores):
            return
        sample = np.asarray(scores[:: max(1, len(scores) // SCORE_SAMPLE)], np.float64)
        sample = sample[np.isfinite(sample)]
        counts = np.bincount(np.searchsorted(self._bounds, sample, side="left"), minlength=len(self._bounds) + 1)
        with self._lock:
            held = self._by_strategy.setdefault(strategy, [np.zeros(len(self._bounds) + 1, np.int64), 0.0])
            held[0] += counts
            held[1] += float(sample.sum())

    def collect(self):
        family = HistogramMetricFamily("poolscore_score_sample", "Acquisition scores, by strategy: an evenly strided "
                                       f"sample of up to {SCORE_SAMPLE} per batch.", labels=["strategy"])
        with self._lock:
            held = {k: (v[0].copy(), v[1]) for k, v in self._by_strategy.items()}
        for strategy, (counts, total) in held.items():
            cumulative = np.cumsum(counts)
            buckets = [(format(b, "g"), int(c)) for b, c in zip(SCORE_BUCKETS, cumulative)] + [("+Inf", int(cumulative[-1]))]
            family.add_metric([strategy], buckets, total)
        yield family


CLASS_SERIES = 50  # per strategy: the classes with the largest shares get a series each, the rest one "other"


class SelectedClasses(Collector):
    """poolscore_selected_class_share: the predicted-class shares of the last top-K each strategy
    answered (GetTopK, or a ScorePool's reply), so a team sees which classes its selection pulls
    from round to round. Replaced whole per answer: a class absent from it has no series."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._by_strategy: dict[str, list[tuple[str, float]]] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def observe(self, strategy: str, classes: np.ndarray) -> None:
        """`classes`: each selected item's predicted class, -1 where it is not known."""
        known = classes[classes >= 0]
        if not len(known):  # a selection made without predictions (embeddings alone): nothing to share
            return
        counts = np.bincount(known)
        present = np.flatnonzero(counts)
        top = present[np.lexsort((present, -counts[present]))][:CLASS_SERIES]
        shares = [(str(c), counts[c] / len(classes)) for c in top]
        if len(top) < len(present):
            shares.append(("other", (len(known) - counts[top].sum()) / len(classes)))
        if len(known) < len(classes):
            shares.append(("unknown", (len(classes) - len(known)) / len(classes)))
        with self._lock:
            self._by_strategy[strategy] = shares

    def collect(self):
        family = GaugeMetricFamily("poolscore_selected_class_share", "Predicted-class shares of the last top-K "
                                   f"answered, by strategy (the {CLASS_SERIES} largest; the rest as class=\"other\", "
                                   "items of unknown class as class=\"unknown\").", labels=["strategy", "class"])
        with self._lock:
            held = dict(self._by_strategy)
        for strategy, shares in held.items():
            for name, share in shares:
                family.add_metric([strategy, name], float(share))
        yield family


class GpuCollector(Collector):
    """poolscore_gpu_memory_used_bytes / _total_bytes and poolscore_gpu_utilization_ratio by
    device, read at scrape time from torch (utilisation needs pynvml; left out without it).
    Registered only when the backend runs on CUDA."""

    def __init__(self, cuda) -> None:
        self._cuda = cuda

    @classmethod
    def register(cls, registry: CollectorRegistry) -> None:
        try:
            import torch
        except ImportError:  # the ONNX backend on CUDA without torch: no GPU series
            return
        registry.register(cls(torch.cuda))

    def collect(self):
        used = GaugeMetricFamily("poolscore_gpu_memory_used_bytes", "GPU memory in use, all processes.", labels=["gpu"])
        total = GaugeMetricFamily("poolscore_gpu_memory_total_bytes", "GPU memory.", labels=["gpu"])
        util = GaugeMetricFamily("poolscore_gpu_utilization_ratio", "GPU busy share over the last sample period "
                                 "(NVML).", labels=["gpu"])
        for i in range(self._cuda.device_count()):
            free, whole = self._cuda.mem_get_info(i)
            used.add_metric([str(i)], whole - free)
            total.add_metric([str(i)], whole)
            try:
                util.add_metric([str(i)], self._cuda.utilization(i) / 100.0)
            except Exception:  # noqa: BLE001 - no pynvml / NVML: the memory series still serve
                pass
        yield from (used, total, util)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        ProcessCollector(registry=registry)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        PlatformCollector(registry=registry)  # python_info
        if GC_COLLECTOR is not None:
            GCCollector(registry=registry)  # python_gc_*
        self.build = Info("poolscore_build", "The server's version, backend and device.", registry=registry)
        self.requests = Counter("poolscore_requests", "RPCs finished, by RPC and gRPC code (OK included).",
                                ["rpc", "code"], registry=registry)
        self.request_seconds = Histogram("poolscore_request_duration_seconds",
                                         "Time from an RPC's start to its status (a stream: its whole life).",
                                         ["rpc"], buckets=_LATENCY, registry=registry)
        self.model_rows = Counter("poolscore_model_inference_rows", "Rows a hosted model ran on, by model.",
                                  ["model"], registry=registry)
        self.model_calls = Counter("poolscore_model_inference_requests", "Batches a hosted model ran on, by model.",
                                   ["model"], registry=registry)
        self.memory_reserved = Gauge("poolscore_session_memory_reserved_bytes",
                                     "Session memory reserved now, against --session-memory-mb.", registry=registry)
        self.memory_limit = Gauge("poolscore_session_memory_limit_bytes", "The session memory budget (--session-memory-mb).",
                                  registry=registry)
        self.items = Counter("poolscore_items_scored_total", "Items (rows) scored.",
                             ["strategy", "device"], registry=registry)
        self.bytes = Counter("poolscore_bytes_scored_total", "Tensor bytes received and scored.",
                             ["strategy", "device"], registry=registry)
        self.batch_seconds = Histogram("poolscore_batch_duration_seconds",
                                       "Time to decode, score and merge one batch.",
                                       ["rpc"], buckets=_LATENCY, registry=registry)
        self.queue_seconds = Histogram("poolscore_queue_duration_seconds",
                                       "Time a received batch waited (read ahead) before its scoring began.",
                                       buckets=_LATENCY, registry=registry)
        self.kernel_seconds = Histogram("poolscore_kernel_duration_seconds",
                                        "Time in the scoring kernel for one batch.",
                                        ["strategy"], buckets=_LATENCY, registry=registry)
        self.sessions = Gauge("poolscore_sessions_active", "Scoring sessions held.", registry=registry)
        self.errors = Counter("poolscore_errors_total", "RPCs that ended in an error, by gRPC code.",
                              ["code"], registry=registry)
        self.compiled = Gauge("poolscore_compiled_kernels", "Kernels compiled and serving.", registry=registry)
        self.score_sample = ScoreHistogram(registry)
        self.selected_classes = SelectedClasses(registry)
        self.shm_regions = Gauge("poolscore_shared_memory_regions", "Shared-memory regions mapped, all principals.",
                                 registry=registry)
        self.shm_mapped = Gauge("poolscore_shared_memory_mapped_bytes", "Bytes of shared-memory regions mapped "
                                "(against --shm-max-mb).", registry=registry)
        self.shm_tensor_bytes = Counter("poolscore_shared_memory_tensor_bytes", "Tensor bytes read from "
                                        "shared memory rather than from messages.", registry=registry)
        self.auth_failures = Counter("poolscore_auth_failures", "Calls refused UNAUTHENTICATED, by reason "
                                     "(bad_token, rate_limited: the peer failed too often).", ["reason"], registry=registry)
        self.checkpoint_seconds = Histogram("poolscore_checkpoint_duration_seconds",
                                            "Time to write one session's checkpoint (--state-dir), fsyncs included.",
                                            buckets=_LATENCY, registry=registry)
        self.checkpoint_bytes = Counter("poolscore_checkpoint_bytes", "Bytes of session checkpoints written.",
                                        registry=registry)

    def finished(self, rpc: str, code: str, seconds: float) -> None:
        self.requests.labels(rpc, code).inc()
        self.request_seconds.labels(rpc).observe(seconds)

    def inferred(self, model: str, rows: int) -> None:
        self.model_rows.labels(model).inc(rows)
        self.model_calls.labels(model).inc()

    def checkpointed(self, nbytes: int, seconds: float) -> None:
        self.checkpoint_seconds.observe(seconds)
        self.checkpoint_bytes.inc(nbytes)

    def scored(self, strategy: str, device: str, rows: int, nbytes: int) -> None:
        self.items.labels(strategy, device).inc(rows)
        self.bytes.labels(strategy, device).inc(nbytes)
