"""A server on a free loopback port for one `poolscore score` run (no --target given)."""
from __future__ import annotations

import contextlib
import logging
from typing import Iterator

from poolscore.server.app import build_server
from poolscore.server.config import ServeConfig
from poolscore.server.strategies import STRATEGIES

EAGER_ROWS = 1_000_000  # a known pool this small scores eagerly in less time than compiling takes


@contextlib.contextmanager
def embedded_server(strategy: str, device: str = "auto", rows: int | None = None) -> Iterator[str]:
    """Yields the server's target. It compiles its kernels only for a pool of unknown or more
    than EAGER_ROWS rows: eager kernels score a million rows in about a second, and a
    compilation takes 4-15 s."""
    logging.basicConfig(level=logging.WARNING)
    # warm the kernel the run needs; an unknown strategy is the server's to refuse, by name
    known = STRATEGIES.get(strategy)
    warm = strategy if known is not None and known.pointwise and not known.scores_ids else ""
    compile = "off" if rows is not None and rows <= EAGER_ROWS else "background"
    app = build_server(ServeConfig(port=0, metrics_port=-1, device=device, warm=warm, compile=compile)).start()
    try:
        yield app.target
    finally:
        app.stop(grace=None)
