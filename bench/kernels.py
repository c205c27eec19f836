"""Acquisition-kernel throughput beside the limit (memcpy) and the peers (baal, modAL), in one run.

    python bench/kernels.py              # the issue's sizes: N = 1M rows (fewer at C=1000 and for [N, T, C])
    python bench/kernels.py --quick      # 2% of the rows and fewer repeats: checks that it works
    python bench/kernels.py --rows 0.25 --device cuda

Throughput is the best of a few runs of `Scorer.score` on the input already on the device;
GB/s counts the input's bytes. Kernels are compiled with compile="sync" before they are
timed, and each compilation is timed once, from an empty inductor cache (what a new
deployment pays; --warm-cache uses yours). It is a report: a missed target prints MISS and
the exit status stays 0.
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import tempfile
import warnings
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Callable

import numpy as np
import torch

from peers import PeerInput, peers_for
from timing import best_of, once
from poolscore.server.backends.torch.device import choose, describe
from poolscore.server.backends.torch.scorer import Scorer
from poolscore.server.strategies import STRATEGIES
from poolscore.server.backends.torch.backend import empty_top

POINTWISE = ["least_confidence", "margin", "ratio", "entropy", "expected_gradient_length"]
BAYESIAN = ["bald", "predictive_entropy", "variation_ratios"]
COMMITTEE = ["vote_entropy", "kl_disagreement", "kl_max_disagreement"]
EMBEDDING_DIM = 128
SEED = 20240601


@dataclass(frozen=True)
class Config:
    device: torch.device
    scale: float  # multiplies every row count
    repeats: int  # ours, eager and memcpy: best of this many
    peer_repeats: int  # baal and modAL are slow: best of fewer
    topk_total: int

    def rows(self, n: int) -> int:
        return max(int(n * self.scale), 1000)


@dataclass
class Result:
    strategy: str
    label: str  # the input's shape, e.g. "N=1M C=100"
    classes: int
    nbytes: int
    rows: int
    ours_s: float
    eager_s: float
    copy_s: float  # copying the same bytes: the limit
    peers: dict[str, float] = field(default_factory=dict)  # peer name → seconds

    def gbps(self, seconds: float) -> float:
        return self.nbytes / seconds / 1e9


class Bench:
    """The two scorers, the compile times seen so far, and every result, printed as measured."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.compiled = Scorer(cfg.device, compile="sync")
        self.eager = Scorer(cfg.device, compile="off")
        self.compile_s: dict[str, float] = {}
        self.results: list[Result] = []

    def measure(self, name: str, label: str, x: torch.Tensor | None, emb: torch.Tensor | None,
                ids: torch.Tensor | None, peer_in: PeerInput, copy_s: float) -> None:
        """Time one strategy (compiled, eager) and its peers on one input; print the row."""
        cfg = self.cfg

        def call(sc: Scorer) -> Callable[[], torch.Tensor]:
            return lambda: sc.score(name, x, embedding=emb, ids=ids)

        if not STRATEGIES[name].scores_ids and name not in self.compile_s:
            self.compile_s[name] = once(call(self.compiled), cfg.device)  # compile + one run
        call(self.compiled)()  # a class count seen first: its relayout compiles in the background
        self.compiled.kernels.wait()
        ours = best_of(call(self.compiled), cfg.repeats, cfg.device)
        eager = best_of(call(self.eager), cfg.repeats, cfg.device)
        peers = {p: best_of(lambda: fn(peer_in), cfg.peer_repeats) for p, fn in peers_for(name).items()}
        src = x if x is not None else ids
        nbytes = sum(t.numel() * t.element_size() for t in (src, emb) if t is not None)
        r = Result(name, label, src.shape[-1] if src.dim() > 1 else 0, nbytes, src.shape[0],
                   ours, eager, copy_s, peers)
        self.results.append(r)
        print(row(r), flush=True)


def count(n: int) -> str:
    """1000000 → 1M, 20000 → 20k."""
    return f"{n // 10**6}M" if n % 10**6 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


def header(limit: str) -> str:
    peers = "".join(f" | {p + ' GB/s':>11} {'×' + p:>7}" for p in ("baal", "modAL"))
    return (f"{'strategy':<25}{'input':<22}{'ms':>8}{'Mrows/s':>9}{'GB/s':>7}{'eager':>7}{'×eager':>7}"
            f"{limit + ' GB/s':>13}{'%lim':>6}{peers}")


def row(r: Result) -> str:
    """One table line; a peer without this score shows '-'."""
    peers = ""
    for p in ("baal", "modAL"):
        s = r.peers.get(p)
        peers += f" | {'-':>11} {'-':>7}" if s is None else f" | {r.gbps(s):>11.3f} {s / r.ours_s:>6.1f}×"
    return (f"{r.strategy:<25}{r.label:<22}{r.ours_s * 1e3:>8.1f}{r.rows / r.ours_s / 1e6:>9.1f}"
            f"{r.gbps(r.ours_s):>7.2f}{r.gbps(r.eager_s):>7.2f}{r.eager_s / r.ours_s:>6.1f}×"
            f"{r.gbps(r.copy_s):>13.2f}{r.copy_s / r.ours_s:>6.0%}{peers}")


def copy_seconds(tensors: list[torch.Tensor], cfg: Config) -> float:
    """Best time to copy these tensors' bytes into preallocated ones: np.copyto (copy_ on CUDA)."""
    if cfg.device.type == "cuda":
        pairs = [(torch.empty_like(t), t) for t in tensors]
        return best_of(lambda: [d.copy_(s) for d, s in pairs], cfg.repeats, cfg.device)
    arrays = [(np.empty_like(a), a) for a in (t.numpy() for t in tensors)]
    return best_of(lambda: [np.copyto(d, s) for d, s in arrays], cfg.repeats)


def logits(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """float32 logits N(0, 3²): softmaxes neither flat nor one-hot."""
    x = rng.standard_normal(shape, dtype=np.float32)
    x *= np.float32(3.0)
    return x


def bench_shape(b: Bench, names: list[str], axes: str, shape: tuple[int, ...]) -> None:
    """Generate one seeded input of `shape`, run `names` on it, free it."""
    rng = np.random.default_rng([SEED, *shape])
    x_np = logits(rng, shape)
    wants_emb = any(STRATEGIES[n].needs_embedding for n in names)
    emb_np = rng.standard_normal((shape[0], EMBEDDING_DIM), dtype=np.float32) if wants_emb else None
    baal_mc = any("baal" in peers_for(n) for n in names) and x_np.ndim == 3
    peer_in = PeerInput(x_np, np.arange(shape[0]), np.ascontiguousarray(x_np.transpose(0, 2, 1)) if baal_mc else None)
    x = torch.from_numpy(x_np).to(b.cfg.device)
    emb = None if emb_np is None else torch.from_numpy(emb_np).to(b.cfg.device)
    copy_x = copy_seconds([x], b.cfg)
    copy_emb = 0.0 if emb is None else copy_seconds([emb], b.cfg)
    label = " ".join(f"{a}={count(n) if i == 0 else n}" for i, (a, n) in enumerate(zip(axes, shape)))
    for name in names:
        e = emb if STRATEGIES[name].needs_embedding else None
        b.measure(name, label + (f" D={EMBEDDING_DIM}" if e is not None else ""), x, e, None,
                  peer_in, copy_x + (copy_emb if e is not None else 0.0))
    del x, emb, x_np, emb_np, peer_in
    gc.collect()


def bench_random(b: Bench, n: int) -> None:
    """`random` scores int64 ids: its input is the ids' bytes."""
    ids_np = np.arange(n, dtype=np.int64)
    ids = torch.from_numpy(ids_np).to(b.cfg.device)
    b.measure("random", f"N={count(n)} ids", None, None, ids, PeerInput(ids_np[:, None], ids_np),
              copy_seconds([ids], b.cfg))


def bench_topk(cfg: Config, k: int = 1000, chunk: int = 65536) -> tuple[float, float]:
    """Seconds for the server's top-K (NumPy's on the CPU, torch's on CUDA) streaming over
    64k-score chunks, and for one np.argpartition."""
    scores_np = np.random.default_rng(SEED).random(cfg.topk_total, dtype=np.float32)
    scores = torch.from_numpy(scores_np).to(cfg.device)
    ids = torch.arange(cfg.topk_total, device=cfg.device)

    def stream():
        top = empty_top(k, cfg.device)
        for start in range(0, cfg.topk_total, chunk):
            top = top.merged(scores[start:start + chunk], ids[start:start + chunk])
        return top

    cut = cfg.topk_total - k
    stream_s = best_of(stream, cfg.repeats, cfg.device)
    argpartition_s = best_of(lambda: np.argpartition(scores_np, cut)[cut:], cfg.repeats)
    return stream_s, argpartition_s


def machine(cfg: Config) -> str:
    """CPU model, threads, device and library versions."""
    cpu = platform.processor() or "cpu"
    if os.path.exists("/proc/cpuinfo"):
        names = [ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    return (f"machine: {cpu}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}; torch {torch.__version__} "
            f"with {torch.get_num_threads()} threads; scoring device {describe(cfg.device)}\n"
            f"numpy {np.__version__}, baal {version('baal')}, modAL {version('modAL-python')}")


def verdict(ok: bool, what: str, figure: str, target: str) -> str:
    return f"{'PASS' if ok else 'MISS'}  {what:<48} {figure:>9}   (target {target})"


def summary(results: list[Result], topk: tuple[float, float]) -> list[str]:
    """The issue's targets, one PASS/MISS line each, with the measured figure."""
    lines = []
    for c, speedup, fraction in ((100, 20, 0.5), (10, 10, 0.2)):
        for r in (r for r in results if r.classes == c and r.strategy in ("entropy", "margin", "least_confidence")):
            for p, s in r.peers.items():
                lines.append(verdict(s / r.ours_s >= speedup, f"{r.strategy} C={c} vs {p}", f"{s / r.ours_s:.1f}x", f"≥ {speedup}x"))
            lines.append(verdict(r.copy_s / r.ours_s >= fraction, f"{r.strategy} C={c} of memcpy",
                                 f"{r.copy_s / r.ours_s:.0%}", f"≥ {fraction:.0%}"))
    for r in (r for r in results if r.strategy in ["bald"] + COMMITTEE):
        for p, s in r.peers.items():
            lines.append(verdict(s / r.ours_s >= 5, f"{r.strategy} {r.label} vs {p}", f"{s / r.ours_s:.1f}x", "≥ 5x"))
    for r in (r for r in results if r.strategy in BAYESIAN + COMMITTEE + ["expected_gradient_length"]):
        lines.append(verdict(r.copy_s / r.ours_s >= 0.3, f"{r.strategy} {r.label} of memcpy",
                             f"{r.copy_s / r.ours_s:.0%}", "≥ 30%"))  # #17: sample-axis and gradient kernels
    stream_s, argpartition_s = topk
    lines.append(verdict(stream_s / argpartition_s <= 1.0, "top-K stream / argpartition",
                         f"{stream_s / argpartition_s:.2f}x", "≤ 1.0x"))
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=float, default=1.0, help="scale factor on every row count (default 1)")
    ap.add_argument("--quick", action="store_true", help="2%% of the rows, fewer repeats")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: torch's own)")
    ap.add_argument("--warm-cache", action="store_true", help="compile with your inductor cache, not an empty one")
    return ap.parse_args(argv)


def run(cfg: Config) -> None:
    """Every section, the compile times and the summary."""
    b = Bench(cfg)
    limit = "memcpy" if cfg.device.type == "cpu" else "d2d copy"
    print(machine(cfg))
    print(f"\nours: Scorer.score best of {cfg.repeats} (compiled; 'eager' = compile=\"off\"); "
          f"{limit}: best of {cfg.repeats}; peers: best of {cfg.peer_repeats}, NumPy on the CPU; "
          f"×peer = peer time / ours\n")
    print(header(limit))
    for n, c in ((1_000_000, 10), (1_000_000, 100), (100_000, 1000)):
        bench_shape(b, POINTWISE, "NC", (cfg.rows(n), c))
    for names, axes in ((BAYESIAN, "NTC"), (COMMITTEE, "NMC")):
        for c in (10, 100):
            bench_shape(b, names, axes, (cfg.rows(100_000), 20 if axes == "NTC" else 10, c))
    bench_random(b, cfg.rows(1_000_000))
    stream_s, argpartition_s = bench_topk(cfg)
    print(f"\ntop-K k=1000 of {count(cfg.topk_total)} float32 scores: the server's top-K merging 64k chunks "
          f"{stream_s * 1e3:.1f} ms, np.argpartition of all {argpartition_s * 1e3:.1f} ms, "
          f"ratio {stream_s / argpartition_s:.2f}x")
    print("\ncompile time (compile=\"sync\", first call incl. one run; the first also starts inductor):")
    for name, s in b.compile_s.items():
        print(f"  {name:<25}{s:>7.1f} s")
    print(f"\ntargets (load now {os.getloadavg()[0]:.2f}; a busy machine lowers every figure):")
    print("\n".join(summary(b.results, (stream_s, argpartition_s))))
    b.compiled.close()
    b.eager.close()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    scale = args.rows * (0.02 if args.quick else 1.0)
    cfg = Config(choose(args.device), scale, 3 if args.quick else 5, 1 if args.quick else 2,
                 max(int(10_000_000 * scale), 100_000))
    if args.warm_cache:
        run(cfg)
        return
    with tempfile.TemporaryDirectory(prefix="poolscore-bench-inductor-") as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
        run(cfg)


if __name__ == "__main__":
    main()
