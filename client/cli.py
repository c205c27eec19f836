"""`poolscore`: score a pool file, info — and, with the server extra, serve, export-scorer, fuse-scorer.

The console script lives in the client, so that a client-only install (`pip install
poolscore`) scores against a running server (`--target`) and prints `info`. The server is
imported only for its own commands, or for an embedded server when `score` has no --target."""
from __future__ import annotations

import argparse
import contextlib
import difflib
import logging
import os
import sys
from pathlib import Path
from typing import Iterator, Sequence

from poolscore.client.errors import PoolscoreError

SERVER_COMMANDS = {"serve": "run the gRPC server and /metrics",
                   "export-scorer": "write a strategy's kernel as an ONNX graph (logits in, scores out)",
                   "fuse-scorer": "append a scorer graph to an ONNX model's logits output"}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "demo":  # its own flags: see poolscore demo --help
        return _demo(argv[1:])
    if argv and argv[0] in SERVER_COMMANDS:
        try:
            from poolscore.server.cli import main as server_main
        except ImportError as err:  # a client-only install: say how to get the server
            print(f"poolscore {argv[0]}: {err}", file=sys.stderr)
            return 2
        return server_main(argv)
    parser = argparse.ArgumentParser(prog="poolscore", description="Active-learning pool scoring service.")
    sub = parser.add_subparsers(dest="command", required=True)
    _score_flags(sub.add_parser("score", help="score a pool file and print or write its top-K"))
    info = sub.add_parser("info", help="print a server's version, device, strategies, models and limits")
    info.add_argument("--target", required=True, help="host:port of a running server")
    _token_flag(info)
    for name, text in SERVER_COMMANDS.items():  # listed here, parsed by the server's cli
        sub.add_parser(name, help=f"{text} (needs the server extra)")
    sub.add_parser("demo", help="the active-learning loop end to end on bundled data: learning curves against "
                                "random (needs the server and demo extras)")
    args = parser.parse_args(argv)
    try:
        return {"score": _score, "info": _info}[args.command](args)
    except (FileNotFoundError, ValueError, OSError, PoolscoreError) as err:  # the message says it all
        print(f"poolscore {args.command}: {err}", file=sys.stderr)
        return 2


def _demo(argv: list[str]) -> int:
    try:
        import matplotlib  # noqa: F401
        import sklearn  # noqa: F401
        import torch  # noqa: F401

        from poolscore.client.demo import main as demo_main
    except ImportError as err:
        print(f"poolscore demo: {err}; install with pip install 'poolscore[server,demo]'", file=sys.stderr)
        return 2
    return demo_main(argv)


def _score_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("pool", help="a .npy, .npz, .parquet or .arrow file; a folder or glob of Parquet files; a URI "
                                "(file://, s3://, gs://, an fsspec protocol); - for an Arrow IPC stream on stdin")
    p.add_argument("--strategy", default="entropy")
    p.add_argument("-k", "--k", type=int, default=100, help="how many items to select (default 100)")
    p.add_argument("--target", help="host:port of a server (several, comma-separated, or a dns:/// name: the pool is spread over the replicas); without it the pool is scored here")
    _token_flag(p)
    p.add_argument("--out", type=Path, help="write the top-K to .csv, .jsonl or .parquet instead of a table")
    p.add_argument("--input-kind", default="logits", choices=["logits", "probabilities", "log_probabilities"])
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--base", type=float, default=0.0, help="log base of entropies (2: bits; default e)")
    p.add_argument("--normalized", action="store_true", help="entropies ÷ log C")
    p.add_argument("--seed", type=int, default=0, help="seed of random, stochastic, badge and batch_bald")
    p.add_argument("--pre-score", default="", help="the pointwise strategy a selection selects by (default margin; random for "
                                                  "coreset and badge, bald for batch_bald)")
    p.add_argument("--beta", type=float, default=0.0, help="stochastic: sharpness of sampling (default 1)")
    p.add_argument("--sampling", default="", choices=["", "softmax", "power", "softrank"],
                   help="stochastic: p ∝ exp(β·s), s^β, or rank^-β among the candidates (softrank)")
    p.add_argument("--class-priors", type=_floats, default=(), help="class_balanced: quotas ∝ these, e.g. 0.5,0.3,0.2")
    p.add_argument("--candidates", type=int, default=0,
                   help="set-level strategies: the candidate set's size M (default 10·k)")
    p.add_argument("--eta", type=float, default=0.0, help="expected_error_reduction: step size (default 10 / mean |h|²)")
    p.add_argument("--reference", type=int, default=0, help="expected_error_reduction: reference sample size (default 1000)")
    p.add_argument("--loss", default="", choices=["", "entropy", "zero_one"], help="expected_error_reduction: the loss")
    p.add_argument("--labeled", type=Path, help="coreset: a .npy of labeled items' embeddings [L, D], the first centers")
    p.add_argument("--logits-column", default="logits")
    p.add_argument("--id-column", default="id")
    p.add_argument("--embedding-column", default="embedding")
    p.add_argument("--device", default="auto", help="embedded server's device (auto, cpu, cuda)")
    p.add_argument("--model", help="a hosted model the pool's rows are raw inputs for (the server's --model-repo)")
    p.add_argument("--samples", type=int, default=0, help="with --model: MC-dropout passes (bald and the [N, T, C] strategies)")
    p.add_argument("--model-seed", type=int, default=0, help="with --model: seeds the passes' dropout")
    p.add_argument("--wait-s", type=float, default=10.0, help="how long to wait for --target to answer (default 10)")
    p.add_argument("--embedded-server", action="store_true",
                   help="without --target: start a server on loopback (torch kernels) instead of scoring in this "
                        "process (the default, on the ONNX backend; --device cuda implies a server)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    p.add_argument("--no-shm", action="store_true", help="send the batches' bytes in the messages, not through shared "
                                                         "memory (used by itself when the server is on this host)")


def _local_strategies() -> list[str]:
    """The strategies an embedded server will know (the registry needs no torch), or [] when the
    server extra is missing (the embedded server then says so itself)."""
    try:
        from poolscore.server.strategies import STRATEGIES
    except ImportError:
        return []
    return list(STRATEGIES)


def _check_strategy(name: str, known: list[str]) -> None:
    if known and name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(known))}"
        raise ValueError(f"--strategy {name!r} is not a strategy{hint}")


def _labeled(path: Path):
    import numpy as np

    if not path.exists():
        raise FileNotFoundError(f"labeled file {path} does not exist")
    return np.load(path, allow_pickle=False)


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None


def _token_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--token", default=os.environ.get("POOLSCORE_TOKEN") or None,
                   help="the server's bearer token (env POOLSCORE_TOKEN)")
    p.add_argument("--tls-ca", type=Path, help="TLS: the PEM CA that signed the server's certificate "
                                               "(a grpcs:// target alone uses the system's roots)")
    p.add_argument("--tls-cert", type=Path, help="mTLS: this client's PEM certificate (with --tls-key)")
    p.add_argument("--tls-key", type=Path, help="mTLS: this client's PEM private key")


def _client_args(args: argparse.Namespace) -> dict:
    """The Client's token and TLS arguments from the flags (files read here: a missing one is named)."""
    def read(path: Path | None) -> bytes | None:
        if path is None:
            return None
        if not path.exists():
            raise FileNotFoundError(f"TLS file {path} does not exist")
        return path.read_bytes()

    return dict(token=args.token, root_certificates=read(args.tls_ca), certificate_chain=read(args.tls_cert),
                private_key=read(args.tls_key))


def _score(args: argparse.Namespace) -> int:
    from poolscore.client import results  # Client only past the in-process branch: it needs no channel
    from poolscore.client.pools import check_file, count_rows

    logging.getLogger("grpc._channel").setLevel(logging.CRITICAL)  # its "Exception iterating requests!" trace:
    # the pool reader's own error is raised here instead, as one line

    columns = dict(logits_column=args.logits_column, id_column=args.id_column, embedding_column=args.embedding_column)
    check_file(args.pool, **columns)  # everything that can be checked here, before a server starts
    if args.out:
        results.check_out(args.out)
    if not args.target:
        _check_strategy(args.strategy, _local_strategies())
    options = dict(input_kind=args.input_kind, temperature=args.temperature, base=args.base,
                   normalized=args.normalized, seed=args.seed, pre_score=args.pre_score, beta=args.beta,
                   sampling=args.sampling, class_priors=args.class_priors, candidates=args.candidates, eta=args.eta,
                   reference=args.reference, loss=args.loss)
    labeled = None if args.labeled is None else _labeled(args.labeled)
    rows = count_rows(args.pool, args.logits_column)
    bar = _bar(rows, Path(args.pool).name or args.pool, args.no_progress or not sys.stderr.isatty())
    if _in_process(args):  # no server: the pipeline here (server/inprocess.py), scored before one would start
        from poolscore.server import inprocess

        with bar:
            top = inprocess.score(args.pool, args.strategy, args.k, options=options, columns=columns, labeled=labeled,
                                  progress=bar.update)
        return _written(top, args)
    from poolscore.client import Client

    remote = _client_args(args) if args.target else {}
    shm = False if args.no_shm else None
    with _target(args, rows) as target, Client(target, shared_memory=shm, **remote) as client:
        # an embedded server is ready once its kernels are compiled: tens of seconds with a cold cache
        client.wait_ready(timeout=args.wait_s if args.target else 600.0)
        if args.target:
            _check_strategy(args.strategy, [s.name for s in client.info().strategies])
        with bar:  # opened once the server answers: its rate is the scoring's, not the start-up's
            top = client.score_pool(args.pool, args.strategy, args.k, progress=bar.update, columns=columns,
                                     labeled=labeled, model=args.model, samples=args.samples,
                                     model_seed=args.model_seed, **options)
    return _written(top, args)


class _NoBar(contextlib.nullcontext):
    def update(self, n: int) -> None:
        pass


def _bar(rows: int | None, name: str, off: bool):
    """tqdm's bar on a terminal; nothing (and no tqdm import) otherwise."""
    if off:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=rows, unit="rows", unit_scale=True, desc=name, file=sys.stderr)


def _written(top, args: argparse.Namespace) -> int:
    from poolscore.client import results

    if args.out:
        results.write(top, args.out)
        print(f"wrote the top {len(top)} of {top.items} items to {args.out}", file=sys.stderr)
    else:
        print(results.table(top))
    return 0


def _in_process(args: argparse.Namespace) -> bool:
    """No --target, no hosted model, not asked for CUDA, and the server extra with onnxruntime
    installed: then scoring here is faster than any server, embedded or not."""
    if args.target or args.model or args.device == "cuda" or args.embedded_server:
        return False
    from importlib.util import find_spec  # found, not imported: the scoring imports them once

    return find_spec("onnxruntime") is not None and find_spec("poolscore.server") is not None


@contextlib.contextmanager
def _target(args: argparse.Namespace, rows: int | None = None) -> Iterator[str]:
    """The server to call: --target, or an embedded one on a free loopback port for this run."""
    if args.target:
        yield args.target
        return
    try:
        from poolscore.server.embedded import embedded_server
    except ImportError as err:
        raise ValueError(f"no --target given, and an embedded server needs the server extra ({err})") from None
    with embedded_server(args.strategy, args.device, rows) as target:
        yield target


def _info(args: argparse.Namespace) -> int:
    from poolscore.client import Client

    with Client(args.target, timeout=10, **_client_args(args)) as client:
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
