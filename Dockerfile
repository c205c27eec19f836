# syntax=docker/dockerfile:1
# poolscore server images, three variants from one file (docker build --target ...):
#   cpu   torch from the PyTorch CPU wheel index (no CUDA wheels pulled), the default
#   onnx  the ONNX backend alone, no torch: the smallest image (--backend onnx)
#   cuda  a CUDA runtime base with a CUDA build of torch (--build-arg TORCH_INDEX=.../cu124)
# Bases are build arguments, pinned here; a runtime stage holds no compiler or build tools
# except g++ in cpu/cuda, which torch.compile needs to build its fused CPU kernels at run time.
ARG BASE=python:3.11.11-slim-bookworm
ARG CUDA_BASE=nvidia/cuda:12.4.1-runtime-ubuntu22.04

FROM ${BASE} AS build
WORKDIR /src
RUN pip install --no-cache-dir build==1.2.2.post1
COPY pyproject.toml constraints.txt README.md ./
COPY proto proto
COPY server server
COPY client client
RUN python -m build --wheel --outdir /wheels .

FROM ${BASE} AS runtime-base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    POOLSCORE_HOST=0.0.0.0 POOLSCORE_PORT=50051 POOLSCORE_METRICS_PORT=9464
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin poolscore
WORKDIR /app
COPY --from=build /wheels /wheels
EXPOSE 50051 9464
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "poolscore.client.probe", "127.0.0.1:50051"]

FROM runtime-base AS onnx
RUN pip install --no-cache-dir /wheels/*.whl onnxruntime==1.32.0 onnx==1.23.2 prometheus-client==0.26.0 \
        grpcio-health-checking==1.81.1 grpcio-reflection==1.81.1 scipy==1.17.1 && rm -rf /wheels
ENV POOLSCORE_BACKEND=onnx
USER 10001
ENTRYPOINT ["poolscore", "serve"]

FROM runtime-base AS cpu
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends g++ && rm -rf /var/lib/apt/lists/*
# torch first, from the CPU index: the server extra's torch>=2.2 is then satisfied, so no CUDA wheel is pulled
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX}" torch==2.13.0 \
    && pip install --no-cache-dir "$(ls /wheels/*.whl)[server]" && rm -rf /wheels
USER 10001
ENTRYPOINT ["poolscore", "serve"]

FROM ${CUDA_BASE} AS cuda
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu124
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    POOLSCORE_HOST=0.0.0.0 POOLSCORE_PORT=50051 POOLSCORE_METRICS_PORT=9464
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends python3.11 python3-pip g++ \
    && rm -rf /var/lib/apt/lists/* && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin poolscore
COPY --from=build /wheels /wheels
RUN python3.11 -m pip install --no-cache-dir --index-url "${TORCH_INDEX}" torch==2.13.0 \
    && python3.11 -m pip install --no-cache-dir "$(ls /wheels/*.whl)[gpu]" && rm -rf /wheels
EXPOSE 50051 9464
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3.11", "-m", "poolscore.client.probe", "127.0.0.1:50051"]
USER 10001
ENTRYPOINT ["poolscore", "serve"]

FROM cpu AS default
