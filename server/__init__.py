"""poolscore server: scoring kernels, streaming top-K and the gRPC service.

No torch here: the ONNX backend (`--backend onnx`) serves without importing it."""
try:
    import grpc_health  # noqa: F401  (the server extra: fail early, with the fix)
    import onnxruntime  # noqa: F401
    import prometheus_client  # noqa: F401
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "poolscore.server needs the server extra: pip install 'poolscore[server]'"
    ) from err
