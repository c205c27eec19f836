"""torch.compile'd kernels that never make a request wait for a compilation.

A fused kernel runs 10-25x faster than eager torch on the CPU, but compiling one takes
seconds. So a kernel is compiled in a background thread on its first use (or at start-up,
by `warm`), the eager kernel serves meanwhile, and once compiled it is called in dynamo's
run-only mode: an input that misses the compiled guards runs eagerly instead of stalling
the request on a recompilation. Shapes are dynamic, so one compilation serves every N, T
and C of a (strategy, input kind, dtype, rank, device) key; inductor's on-disk cache makes
a restarted server's compilations cheap.
"""
from __future__ import annotations

import logging
import itertools
import math
import queue
import threading
import time
from concurrent.futures import CancelledError, Future
from typing import Callable, Literal

import torch

from poolscore.server.backends.torch.kernels import KERNELS, Kernel
from poolscore.server.strategies.registry import Strategy
from poolscore.server.backends.torch.columns import COLUMN_KERNELS
from poolscore.server.backends.native import library as native_library
from poolscore.server.backends.torch import native
from poolscore.server.backends.torch.relayout import Blocked, PerClassCount, Relayouts, RowsInnerKernel, rows_inner

log = logging.getLogger(__name__)

CompileMode = Literal["off", "background", "sync"]
Key = tuple[str, str, torch.dtype, int, str, "torch.dtype | None", int]
_CLASS_BUCKETS = (16, 256)
WARM_CLASSES = (10, 100, 1000)  # one class count in each bucket
DEMAND, WARM, TUNING = 0, 1, 2  # compile queue tiers: a request waits; speculative; a faster variant of a served kernel
IDLE_S = 0.5  # a tuning compilation waits until no kernel was asked for this long (compiling slows the pool beside it)
TUNE_AFTER_S = 5.0  # ... or until it has waited this long (a long pool then pays for it once)
_UNBOUNDED = 2**31 - 1
_REDUCED = 4096  # inductor guards a reduced axis at ≤ 4096: larger C or D run eagerly


def key_of(strategy: Strategy, kind: str, x: torch.Tensor, emb: torch.Tensor | None) -> Key:
    """What a compiled kernel is specific to. Shapes are dynamic, but a kernel compiled from a
    C = 10 example runs 4x slower at C = 100 than one compiled from C = 100: hence the bucket."""
    bucket = sum(x.shape[-1] > b for b in _CLASS_BUCKETS)
    return (strategy.name, kind, x.dtype, x.dim(), x.device.type, None if emb is None else emb.dtype, bucket)


class CompiledKernels:
    """Per-key compiled kernels; `kernel_for` always answers at once."""

    def __init__(self, mode: CompileMode = "background", on_ready: Callable[[int], None] | None = None) -> None:
        if mode not in ("off", "background", "sync"):
            raise ValueError(f"compile mode must be off, background or sync, got {mode!r}")
        self.mode, self._on_ready = mode, on_ready  # on_ready(number of kernels ready), e.g. a gauge
        self._ready: dict[Key, Kernel] = {}
        self._pending: dict[tuple, Future] = {}  # kernels' keys and relayouts' keys
        self._compiled: dict[Key, Callable] = {}
        per_c = self._submit_and_wait if mode == "sync" else self._submit_tuning  # sync: never serve the any-C code
        self._relayout = Relayouts(per_c)
        self._columns = {name: PerClassCount(fn, per_c, prepare=rows_inner) for name, fn in COLUMN_KERNELS.items()}
        self._lock = threading.Lock()  # guards the dicts; compilation runs outside it
        # (priority, order, job): a kernel a request waits for goes before speculative warm-ups
        self._jobs: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._warming: set[tuple] = set()  # keys queued by warm() that no request has asked for yet
        self._used = 0.0  # when a kernel was last asked for: tuning compilations wait for a pause
        self._worker: threading.Thread | None = None
        self._closed = False
        if mode != "off":  # every (kind, dtype, rank) variant shares one code object's cache
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)

    def kernel_for(self, strategy: Strategy, kind: str, x: torch.Tensor, emb: torch.Tensor | None) -> Kernel:
        """The compiled kernel when ready, else the eager one (and compilation is started)."""
        eager = KERNELS[strategy.name]
        if self.mode == "off":
            return eager
        self._used = time.monotonic()
        key = key_of(strategy, kind, x, emb)
        ready = self._ready.get(key)
        if ready is not None:
            return ready
        future = self._start(strategy, kind, x, emb, key)
        if self.mode == "sync":
            _wait(future)
            return self._ready.get(key, eager)
        return eager

    def warm(self, strategies: list[Strategy], kind: str, dtype: torch.dtype, device: torch.device,
             classes: int | tuple[int, ...] = WARM_CLASSES) -> list[Future]:
        """Queue compilations of these strategies for inputs of `kind` and `dtype`, for each of
        `classes` (a class count per bucket: a first pool of any C then finds its kernel). They
        run after any kernel a request waits for, the few classes first."""
        futures = []
        for c in (classes,) if isinstance(classes, int) else classes:
            for s in strategies:
                if s.scores_ids:
                    continue
                x = torch.zeros((64, 8, 16)[: s.rank - 1] + (c,), dtype=dtype, device=device)
                emb = torch.zeros(64, 16, dtype=dtype, device=device) if s.needs_embedding else None
                key = key_of(s, kind, x, emb)
                futures.append(self._start(s, kind, x, emb, key, warm=True))
                if _rows_inner_pays(key) and not _native_pays(key):  # and this C's own relayout and column kernel
                    futures.append(self._submit(("tuned",) + key + (c,), lambda s=s, x=x: self._tune(s, kind, x), WARM))
        return futures

    def _tune(self, strategy: Strategy, kind: str, x: torch.Tensor) -> None:
        self._relayout.one_c.compile_now(x)
        if strategy.name in self._columns:
            self._columns[strategy.name].compile_now(x, kind)

    def wait(self) -> None:
        """Block until every compilation started so far has finished (tests, benchmarks)."""
        for future in list(self._pending.values()):
            _wait(future)

    def ready_keys(self) -> list[Key]:
        return list(self._ready)

    def close(self, timeout: float = 300.0) -> None:
        """Cancel queued compilations and wait for the one in progress. Left running, the
        interpreter's exit would kill the compiler halfway and the process would abort
        ("terminate called without an active exception") after its work was done."""
        with self._lock:
            self._closed, worker = True, self._worker
        while True:
            try:
                item = self._jobs.get_nowait()[2]
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        if worker is not None:
            self._jobs.put((-1, next(self._order), None))  # the worker's signal to stop
            worker.join(timeout)
            if worker.is_alive():
                log.warning("a kernel compilation still runs after %.0f s; exiting without it", timeout)

    def _start(self, strategy: Strategy, kind: str, x: torch.Tensor, emb: torch.Tensor | None, key: Key,
               warm: bool = False) -> Future:
        ex = _example(x)
        example = (ex, None if emb is None else _example(emb, rows=ex.shape[0]))
        return self._submit(key, lambda: self._compile(strategy, kind, example, key), WARM if warm else DEMAND)

    def _submit_tuning(self, key: tuple, job: Callable[[], None]) -> Future:
        """A class count's own relayout or column kernel: the any-C code serves meanwhile, so it
        compiles once the pool that asked for it leaves the CPU idle (see IDLE_S)."""
        return self._submit(key, job, TUNING)

    def _submit(self, key: tuple, job: Callable[[], None], tier: int = DEMAND) -> Future:
        """Run `job` on the compile thread, once per key: in tier order (a request's kernel
        first; a warm-up a request then needs moves to the front)."""
        with self._lock:
            future = self._pending.get(key)
            if future is None and self._closed:  # closing: nothing new starts
                future = Future()
                future.cancel()
                return future
            if future is not None and tier == DEMAND and key in self._warming:
                self._warming.discard(key)
                self._jobs.put((DEMAND, next(self._order), (future, job, 0.0)))  # its warm entry is skipped then
            if future is None:
                future = Future()
                self._jobs.put((tier, next(self._order), (future, job, time.monotonic())))
                if tier == WARM:
                    self._warming.add(key)
                self._pending[key] = future
                if self._worker is None:
                    # a daemon: exiting never waits for a compilation nobody needs any more
                    self._worker = threading.Thread(target=self._work, name="poolscore-compile", daemon=True)
                    self._worker.start()
            return future

    def _submit_and_wait(self, key: tuple, job: Callable[[], None]) -> Future:
        future = self._submit(key, job)
        _wait(future)
        return future

    def _work(self) -> None:
        while True:
            tier, _, item = self._jobs.get()
            if item is None:
                break
            future, job, queued = item
            if future.running() or future.done():  # a warm-up moved to the front ran already
                continue
            if tier == TUNING and not self._closed and time.monotonic() - self._used < IDLE_S \
                    and time.monotonic() - queued < TUNE_AFTER_S:
                self._jobs.put((tier, next(self._order), item))  # later; anything of a lower tier goes first
                time.sleep(0.05)
                continue
            if future.set_running_or_notify_cancel():
                try:
                    job()
                except Exception:  # a job logs its own failures; this thread must outlive any
                    log.exception("compile job failed")
                finally:
                    future.set_result(None)

    def _compile(self, strategy: Strategy, kind: str, example: tuple, key: Key) -> None:
        library = native_library.load() if _native_pays(key) else None
        if library is not None and (key[-1] == 0 or strategy.name in native_library.POINTWISE):  # nearly
            # every shape the key admits fits the native scratch (C ≤ 16 with any T; [N, C] with C ≤
            # 65536); the rest run eagerly, as inductor's guard (C ≤ 4096) sent them before
            self._serve(key, native.NativeKernel(library, strategy.name, KERNELS[strategy.name]), "natively")
            return
        compiled = self._compiled.setdefault(key, torch.compile(KERNELS[strategy.name], dynamic=False))
        x, emb = example
        relaid = _rows_inner_pays(key)
        inv_t = torch.ones((), dtype=torch.float64, device=x.device)
        try:
            if relaid:  # the kernel is compiled for, and only ever sees, the rows-inner layout
                _mark_dynamic(x, None, key[-1])
                x = self._relayout.compile_any(x)
            _mark_dynamic(x, emb, key[-1])
            compiled(x, emb, inv_t, kind)
        except Exception:  # the eager kernel keeps serving; say why once
            log.exception("compiling %s for %s %s failed; it stays eager", strategy.name, kind, x.dtype)
            return
        kernel = torch._dynamo.run(compiled)
        if relaid:
            kernel = RowsInnerKernel(self._relayout, kernel, self._columns.get(strategy.name))
        elif x.device.type == "cpu":
            kernel = Blocked(kernel)
        if library is not None:  # the compiled kernel serves the rows too long for the native scratch
            kernel = native.NativeKernel(library, strategy.name, kernel)
        self._serve(key, kernel, "natively" if library is not None else "compiled")

    def _serve(self, key: Key, kernel: Kernel, how: str) -> None:
        with self._lock:
            self._ready[key] = kernel
            ready = len(self._ready)
        if self._on_ready is not None:
            self._on_ready(ready)
        log.info("%s serves %s for %s %s rank %d on %s", how, key[0], key[1], key[2], key[3], key[4])


def _wait(future: Future) -> None:
    """Wait for a compile job; one cancelled by close() (even while waited on) is no error:
    the caller goes on with the code that serves without it."""
    try:
        future.result()
    except CancelledError:
        pass


def _native_pays(key: Key) -> bool:
    """The native kernels (backends/native) where they serve the key and library.pays at the
    smallest C of its bucket (a sample-axis one up to C = 256, a pointwise one at any C). On 2
    threads: the sample-axis ones at [N, 20, 10] 4-10x the compiled ones, at C = 100 2-3x; the
    pointwise ones about 2x at C = 10, 1.5x at C = 100, 1.0-1.7x at C = 300-4000."""
    smallest = ((0,) + _CLASS_BUCKETS)[key[-1]] + 1
    return native.serves(key[0], key[1], key[2], key[3], key[4]) and native_library.pays(key[0], smallest)


def _rows_inner_pays(key: Key) -> bool:
    """Few classes (the first bucket) on the CPU: see relayout.py."""
    return key[4] == "cpu" and key[-1] == 0


def _mark_dynamic(x: torch.Tensor, emb: torch.Tensor | None, bucket: int) -> None:
    """Every axis symbolic, the class axis within its bucket: the guards then send each C to
    the graph compiled for its bucket (dynamo keeps all graphs of a kernel on one code object).
    (mark_dynamic needs both bounds when given one.)"""
    torch._dynamo.mark_dynamic(x, 0, min=2, max=_UNBOUNDED)
    for axis in range(1, x.dim() - 1):  # T or M: inductor guards these at ≤ 4096, and vote_entropy's
        torch._dynamo.mark_dynamic(x, axis, min=2, max=_REDUCED - 1)  # M + 1 vote counts at ≤ 4096 too
    bounds = (1,) + _CLASS_BUCKETS + (_REDUCED,)
    torch._dynamo.mark_dynamic(x, x.dim() - 1, min=max(2, bounds[bucket] + 1), max=bounds[bucket + 1])
    if emb is not None:
        torch._dynamo.mark_dynamic(emb, 0, min=2, max=_UNBOUNDED)
        torch._dynamo.mark_dynamic(emb, 1, min=2, max=_REDUCED)


def _example(x: torch.Tensor, rows: int | None = None) -> torch.Tensor:
    """A stand-in of the same dtype, rank, device and class count for compiling.

    No axis of size 0 or 1 (dynamo would specialise them), and a realistic row count:
    inductor picks threading and tiling from the example's sizes.
    """
    inner = [min(max(n, 2), _REDUCED) for n in x.shape[1:]]
    inner[:-1] = [min(n, 16) for n in inner[:-1]]  # sample axes
    rows = rows or max(2, min(16384, 2**22 // max(1, math.prod(inner))))
    return torch.rand([rows, *inner], device=x.device).to(x.dtype) + 0.5
