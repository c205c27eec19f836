"""poolscore server: scoring kernels, streaming top-K and the gRPC service."""
try:
    import torch  # noqa: F401  (the server's one hard extra: fail early with the fix)
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "poolscore.server needs the server extra: pip install 'poolscore[server]'"
    ) from err
