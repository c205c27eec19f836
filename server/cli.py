"""The server's commands of `poolscore`: serve, export-scorer, fuse-scorer.

The console script is client/cli.py's: it hands these commands here, so that a client-only
install runs `score --target` and `info` without importing the server."""
from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
from pathlib import Path
from typing import Sequence

from poolscore.client.cli import SERVER_COMMANDS as COMMANDS
from poolscore.server.config import add_flags, from_args

log = logging.getLogger("poolscore")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="poolscore", description="Active-learning pool scoring service.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_flags(sub.add_parser("serve", help=COMMANDS["serve"]))
    _export_flags(sub.add_parser("export-scorer", help=COMMANDS["export-scorer"]))
    _fuse_flags(sub.add_parser("fuse-scorer", help=COMMANDS["fuse-scorer"]))
    args = parser.parse_args(argv)
    try:
        return {"serve": _serve, "export-scorer": _export, "fuse-scorer": _fuse}[args.command](args)
    except (FileNotFoundError, ValueError, OSError) as err:  # the message says it all
        print(f"poolscore {args.command}: {err}", file=sys.stderr)
        return 2


def _serve(args: argparse.Namespace) -> int:
    from poolscore.server.app import build_server

    config = from_args(args)
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = build_server(config).start()
    metrics = f", metrics on http://{config.host}:{app.metrics_port}/metrics" if app.metrics_port else ""
    probes = f", plaintext health on {config.host}:{app.health_port}" if app.health_port else ""
    probes += f", KServe v2 REST on http://{config.host}:{app.http_port}/v2" if app.http_port else ""
    probes += f", and on unix:{config.uds}" if config.uds else ""
    print(f"poolscore listening on {config.host}:{app.port}{metrics}{probes}", file=sys.stderr, flush=True)
    if config.state_dir:
        store = app.scorer.sessions
        log.info("state dir %s: %d sessions restored, %d files refused (see ServerInfo.state_errors)",
                 config.state_dir, len(store), len(store.checkpoints.files.problems))
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    signal.signal(signal.SIGHUP, lambda *_: _reload(app))
    stopped.wait()
    log.info("draining: health NOT_SERVING, new calls refused, calls in flight finish (%g s grace)",
             config.drain_grace_s)
    app.drain(config.drain_grace_s)
    return 0


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
    from poolscore.server.backends.onnx.graphs import scorer_graph

    return scorer_graph(args.strategy, classes=classes, input_kind=args.input_kind, temperature=args.temperature,
                        base=args.base or math.e, normalized=args.normalized, opset=opset)


def _export(args: argparse.Namespace) -> int:
    import onnx

    onnx.save(_graph(args, args.opset, args.classes), args.out)
    print(f"wrote the {args.strategy} scorer to {args.out}", file=sys.stderr)
    return 0


def _fuse(args: argparse.Namespace) -> int:
    import onnx

    from poolscore.server.backends.onnx.fuse import fuse

    model = onnx.load(args.model)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    fused = fuse(model, _graph(args, max(opset, 13)), args.logits_output, embedding_output=args.embedding_output)
    onnx.save(fused, args.out)
    print(f"wrote {args.model.name} + the {args.strategy} scorer to {args.out} (output: scores)", file=sys.stderr)
    return 0


def _reload(app) -> None:
    """SIGHUP: the model repository (as the ReloadModels RPC does) and the tokens file."""
    app.models.reload()
    try:
        app.principals.reload()
    except (OSError, ValueError) as err:
        log.error("tokens file not reloaded, the old tokens stay: %s", err)


if __name__ == "__main__":
    sys.exit(main())

