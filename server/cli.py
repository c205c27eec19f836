"""`poolscore`: serve, score a pool file (with an embedded server when no --target), info."""
from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Iterator, Sequence

from poolscore.client.errors import PoolscoreError
from poolscore.server.config import ServeConfig, add_flags, from_args

log = logging.getLogger("poolscore")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="poolscore", description="Active-learning pool scoring service.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_flags(sub.add_parser("serve", help="run the gRPC server and /metrics"))
    _score_flags(sub.add_parser("score", help="score a pool file and print or write its top-K"))
    info = sub.add_parser("info", help="print a server's version, device, strategies, models and limits")
    info.add_argument("--target", required=True, help="host:port of a running server")
    _token_flag(info)
    _export_flags(sub.add_parser("export-scorer", help="write a strategy's kernel as an ONNX graph (logits in, scores out)"))
    _fuse_flags(sub.add_parser("fuse-scorer", help="append a scorer graph to an ONNX model's logits output"))
    args = parser.parse_args(argv)
    try:
        return {"serve": _serve, "score": _score, "info": _info, "export-scorer": _export,
                "fuse-scorer": _fuse}[args.command](args)
    except (FileNotFoundError, ValueError, OSError, PoolscoreError) as err:  # the message says it all
        print(f"poolscore {args.command}: {err}", file=sys.stderr)
        return 2


def _serve(args: argparse.Namespace) -> int:
    from poolscore.server.app import build_server

    config = from_args(args)
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = build_server(config).start()
    metrics = f", metrics on http://{config.host}:{app.metrics_port}/metrics" if app.metrics_port else ""
    print(f"poolscore listening on {config.host}:{app.port}{metrics}", file=sys.stderr, flush=True)
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    signal.signal(signal.SIGHUP, lambda *_: app.models.reload())  # as the ReloadModels RPC does
    stopped.wait()
    log.info("shutting down: finishing calls in flight (10 s grace)")
    app.stop(grace=10.0)
    return 0


def _score_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("pool", type=Path, help="a .npy, .npz, .parquet or .arrow pool file")
    p.add_argument("--strategy", default="entropy")
    p.add_argument("-k", "--k", type=int, default=100, help="how many items to select (default 100)")
    p.add_argument("--target", help="host:port of a server; without it an embedded one runs on loopback")
    _token_flag(p)
    p.add_argument("--out", type=Path, help="write the top-K to .csv, .jsonl or .parquet instead of a table")
    p.add_argument("--input-kind", default="logits", choices=["logits", "probabilities", "log_probabilities"])
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--base", type=float, default=0.0, help="log base of entropies (2: bits; default e)")
    p.add_argument("--normalized", action="store_true", help="entropies ÷ log C")
    p.add_argument("--seed", type=int, default=0, help="seed of the random strategy")
    p.add_argument("--logits-column", default="logits")
    p.add_argument("--id-column", default="id")
    p.add_argument("--embedding-column", default="embedding")
    p.add_argument("--device", default="auto", help="embedded server's device (auto, cpu, cuda)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")


def _token_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--token", default=os.environ.get("POOLSCORE_TOKEN") or None,
                   help="the server's bearer token (env POOLSCORE_TOKEN)")


def _score(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from poolscore.client import Client
    from poolscore.client.pools import count_rows
    from poolscore.server import results

    if not args.pool.exists():
        raise FileNotFoundError(f"pool file {args.pool} does not exist")
    options = dict(input_kind=args.input_kind, temperature=args.temperature, base=args.base,
                   normalized=args.normalized, seed=args.seed)
    columns = dict(logits_column=args.logits_column, id_column=args.id_column, embedding_column=args.embedding_column)
    rows = count_rows(args.pool, args.logits_column)
    bar = tqdm(total=rows, unit="rows", unit_scale=True, desc=args.pool.name,
               disable=args.no_progress or not sys.stderr.isatty(), file=sys.stderr)
    with _target(args, rows) as target, Client(target, token=args.token if args.target else None) as client, bar:
        client.wait_ready(timeout=60)
        top = client.score_pool(str(args.pool), args.strategy, args.k, progress=bar.update, columns=columns, **options)
    if args.out:
        results.write(top, args.out)
        print(f"wrote the top {len(top)} of {top.items} items to {args.out}", file=sys.stderr)
    else:
        print(results.table(top))
    return 0


EAGER_ROWS = 1_000_000  # a known pool this small scores eagerly in less time than compiling takes


@contextlib.contextmanager
def _target(args: argparse.Namespace, rows: int | None = None) -> Iterator[str]:
    """The server to call: --target, or an embedded one on a free loopback port for this run.
    It compiles its kernels only for a pool of unknown or more than EAGER_ROWS rows: eager
    kernels score a million rows in about a second, and a compilation takes 4-15 s."""
    if args.target:
        yield args.target
        return
    from poolscore.server.app import build_server

    logging.basicConfig(level=logging.WARNING)
    from poolscore.server.scoring.registry import STRATEGIES

    # warm the kernel the run needs; an unknown strategy is the server's to refuse, by name
    warm = args.strategy if args.strategy in STRATEGIES and not STRATEGIES[args.strategy].scores_ids else ""
    compile = "off" if rows is not None and rows <= EAGER_ROWS else "background"
    app = build_server(ServeConfig(port=0, metrics_port=-1, device=args.device, warm=warm, compile=compile)).start()
    try:
        yield app.target
    finally:
        app.stop(grace=None)


def _scorer_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strategy", default="entropy")
    p.add_argument("--input-kind", default="logits", choices=["logits", "probabilities", "log_probabilities"])
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--base", type=float, default=0.0, help="log base of entropies (2: bits; default e)")
    p.add_argument("--normalized", action="store_true", help="entropies ÷ log C")
    p.add_argument("-o", "--out", type=Path, required=True)


def _export_flags(p: argparse.ArgumentParser) -> None:
    _scorer_options(p)
    p.add_argument("--classes", type=int, help="fix C in the graph (default: any C)")
    p.add_argument("--opset", type=int, default=17)


def _fuse_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, help="an ONNX model whose output holds logits")
    _scorer_options(p)
    p.add_argument("--logits-output", help="the model output to score (default: its first output)")
    p.add_argument("--embedding-output", help="the model output feeding expected_gradient_length")


def _graph(args: argparse.Namespace, opset: int, classes: int | None = None):
    from poolscore.server.onnx_scorer import scorer_graph

    return scorer_graph(args.strategy, classes=classes, input_kind=args.input_kind, temperature=args.temperature,
                        base=args.base or math.e, normalized=args.normalized, opset=opset)


def _export(args: argparse.Namespace) -> int:
    import onnx

    onnx.save(_graph(args, args.opset, args.classes), args.out)
    print(f"wrote the {args.strategy} scorer to {args.out}", file=sys.stderr)
    return 0


def _fuse(args: argparse.Namespace) -> int:
    import onnx

    from poolscore.server.onnx_scorer import fuse

    model = onnx.load(args.model)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    fused = fuse(model, _graph(args, max(opset, 13)), args.logits_output, embedding_output=args.embedding_output)
    onnx.save(fused, args.out)
    print(f"wrote {args.model.name} + the {args.strategy} scorer to {args.out} (output: scores)", file=sys.stderr)
    return 0


def _info(args: argparse.Namespace) -> int:
    from poolscore.client import Client

    with Client(args.target, timeout=10, token=args.token) as client:
        info = client.info()
    print(f"poolscore {info.version} on {info.device}")
    print(f"limits: k ≤ {info.limits.max_k}, {info.limits.max_sessions} sessions, "
          f"messages ≤ {info.limits.max_message_bytes} bytes")
    for s in info.strategies:
        print(f"  {s.name:<26} {s.input_shape:<10} {s.summary}")
    for m in info.models:
        print(f"model {m.name} ({m.platform}): input {m.input.name or '?'} {list(m.input.shape)}, "
              f"default {m.default_strategy}{', MC dropout' if m.mc_dropout else ''}")
    for name, error in info.model_errors.items():
        print(f"model {name} NOT SERVED: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
