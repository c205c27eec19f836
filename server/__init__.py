"""poolscore server: scoring kernels, streaming top-K and the gRPC service.

No torch here: the ONNX backend (`--backend onnx`) serves without importing it."""
from importlib.util import find_spec

# the server extra, checked by finding its packages (importing them here would cost every
# `poolscore score` a tenth of a second): fail early, with the fix
_missing = [name for name in ("grpc_health", "onnxruntime", "prometheus_client") if find_spec(name) is None]
if _missing:  # pragma: no cover - exercised only without the extra
    raise ImportError(f"poolscore.server needs the server extra ({', '.join(_missing)} missing): "
                      f"pip install 'poolscore[server]'")
