"""Rows-inner layout for kernels over few classes on the CPU.

A reduction over C ≤ 16 contiguous classes runs as one short, masked vector per row plus
a horizontal reduction per statistic: at C = 10, 3.4 ms for a 4 MiB batch. With the rows
innermost in memory, every statistic is a vertical op over 16 rows at a time, and a
compiled transpose (0.15 ms) plus the kernel (1.0 ms) are 3x faster than that. Once a
class count has its own compilations, the transpose is tiled for it and the uncertainty
strategies run in column form (columns.py): one fused loop, 0.8 ms.
"""
from __future__ import annotations

import logging
import types
from concurrent.futures import Future
from typing import Callable

import torch

log = logging.getLogger(__name__)

CHUNK_BYTES_PER_THREAD = 4 << 20  # the relayout's copy stays in cache; measured best of 1-64 MiB (one thread)
Submit = Callable[[tuple, Callable[[], None]], Future]  # run a job on the compile thread, once per key


def rows_inner(x: torch.Tensor) -> torch.Tensor:
    """The same logical [N, ..., C] tensor, laid out with the row axis innermost in memory."""
    last = x.dim() - 1
    return x.permute(*range(1, x.dim()), 0).contiguous().permute(last, *range(last))


# rows_inner as a second code object: dynamo keeps compiled graphs per code object, and
# each of this one's is for one class count (rows_inner's one is for any C ≤ 16)
_rows_inner_one_c = types.FunctionType(rows_inner.__code__.replace(co_name="rows_inner_one_c"), globals())


class PerClassCount:
    """`fn` compiled for one class count at a time, in the background: `ready` answers at
    once, and the first miss of a (dtype, rank, C, static args, device) queues its compilation.
    Dynamo keeps all of them as graphs of fn's one code object, told apart by its guards."""

    def __init__(self, fn: Callable, submit: Submit, prepare: Callable[[torch.Tensor], torch.Tensor] = lambda x: x) -> None:
        self._submit, self._prepare, self._name = submit, prepare, fn.__name__
        self._compiled = torch.compile(fn, dynamic=False)  # never dynamic: C stays a constant
        self.run = torch._dynamo.run(self._compiled)
        self._ready: set[tuple] = set()

    def ready(self, x: torch.Tensor, *static) -> bool:
        """Whether fn is compiled for x's class count (and `static`); if not, compile it."""
        key = (self._name, x.dtype, x.dim(), x.shape[-1], x.device.type, *static)
        if key in self._ready:
            return True
        self._submit(key, self._job(key, x.shape, x.dtype, x.device, static))  # once per key
        return key in self._ready  # a submit that waits (compile mode sync) may have compiled it

    def compile_now(self, x: torch.Tensor, *static) -> None:
        """Compile fn for x's class count (and `static`) in this thread: a warm-up, run on the
        compile thread, so a first pool of that class count finds it ready."""
        key = (self._name, x.dtype, x.dim(), x.shape[-1], x.device.type, *static)
        if key not in self._ready:
            self._job(key, x.shape, x.dtype, x.device, static)()

    def _job(self, key: tuple, shape: torch.Size, dtype: torch.dtype, device: torch.device,
             static: tuple) -> Callable[[], None]:
        def compile_one_c() -> None:
            example = self._prepare(_example_like(shape, dtype, device))
            for axis in range(example.dim() - 1):  # rows and samples dynamic, C fixed
                torch._dynamo.mark_dynamic(example, axis, min=2, max=2**31 - 1 if axis == 0 else 4096)
            try:
                self._compiled(example, *_args_like(static, device))
            except Exception:  # the any-C code keeps serving
                log.exception("compiling %s for %d classes failed", self._name, example.shape[-1])
                return
            self._ready.add(key)
        return compile_one_c


class Relayouts:
    """Compiled relayouts: one for any C ≤ 16 at once, then one per class count seen.
    A transpose tiled for its C runs 3-5x faster (0.15 against 0.8 ms a 4 MiB batch)."""

    def __init__(self, submit: Submit) -> None:
        self._any = torch.compile(rows_inner, dynamic=False)
        self._run_any = torch._dynamo.run(self._any)
        self.one_c = PerClassCount(_rows_inner_one_c, submit)

    def compile_any(self, example: torch.Tensor) -> torch.Tensor:
        """Compile the any-C relayout (example marked dynamic by the caller); its output."""
        return self._any(example)

    def tuned_for(self, x: torch.Tensor) -> bool:
        """Whether x's class count has its own compiled relayout yet (if not, it is queued)."""
        return self.one_c.ready(x)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.one_c.run(x) if self.one_c.ready(x) else self._run_any(x)


class RowsInnerKernel:
    """A compiled kernel fed through the compiled relayout: same inputs, same scores.

    With `columns` (a column-form kernel, columns.py), a class count that has its own
    compilation of it is scored by that, the any-C `kernel` serving meanwhile."""

    def __init__(self, relayout: Relayouts, kernel: Callable, columns: PerClassCount | None = None) -> None:
        self.relayout, self.kernel, self.columns = relayout, kernel, columns

    def __call__(self, x: torch.Tensor, emb: torch.Tensor | None, inv_t: torch.Tensor, kind: str) -> torch.Tensor:
        kernel = self.columns.run if self.columns is not None and self.columns.ready(x, kind) else self.kernel
        # the relayout's copy (and the any-C kernel's [C, rows] of exp) stay in cache
        return in_blocks(lambda part, e: kernel(self.relayout(part), e, inv_t, kind), x, emb)


class Blocked:
    """A compiled CPU kernel run over cache-sized blocks of rows: inductor materialises some
    [N, ..., C] intermediates (the exps a mean over samples reads again), and a block's stay
    in cache. bald at [100k, 20, 100] runs 3x faster (1.5 → 4.5 GB/s on one thread)."""

    def __init__(self, kernel: Callable) -> None:
        self.kernel = kernel

    def __call__(self, x: torch.Tensor, emb: torch.Tensor | None, inv_t: torch.Tensor, kind: str) -> torch.Tensor:
        return in_blocks(lambda part, e: self.kernel(part, e, inv_t, kind), x, emb)


def in_blocks(score: Callable, x: torch.Tensor, emb: torch.Tensor | None) -> torch.Tensor:
    """score(rows, their embeddings) over blocks of CHUNK_BYTES_PER_THREAD per thread; one call
    for a batch that small. Unblocked, a 40 MB batch runs at 40% of the speed."""
    row_bytes = max(1, x[0].numel() * x.element_size()) if x.shape[0] else 1
    chunks = -(-x.shape[0] * row_bytes // (CHUNK_BYTES_PER_THREAD * torch.get_num_threads()))
    if chunks <= 1:
        return score(x, emb)
    embs = [None] * chunks if emb is None else emb.tensor_split(chunks)
    return torch.cat([score(part, e) for part, e in zip(x.tensor_split(chunks), embs)])


def _example_like(shape: torch.Size, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A small stand-in with the batch's dtype, device, sample axes (≤ 16) and class count."""
    inner = [min(max(n, 2), 16) for n in shape[1:-1]] + [shape[-1]]
    return torch.zeros([4096, *inner], dtype=dtype, device=device)


def _args_like(static: tuple, device: torch.device) -> tuple:
    """A kernel's arguments after x for compiling: no embedding, 1/temperature, the input kind."""
    return (None, torch.ones((), dtype=torch.float64, device=device), *static) if static else ()
