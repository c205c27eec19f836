# poolscore server, CPU build. For CUDA, start FROM a CUDA runtime image and install
# '.[gpu]' with a CUDA build of torch instead.
FROM python:3.11-slim
# g++: torch.compile builds its fused CPU kernels at run time (without it they stay eager)
RUN apt-get update && apt-get install -y --no-install-recommends g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY proto proto
COPY server server
COPY client client
RUN pip install --no-cache-dir -c constraints.txt ".[server]"
ENV POOLSCORE_HOST=0.0.0.0 POOLSCORE_PORT=50051 POOLSCORE_METRICS_PORT=9464
EXPOSE 50051 9464
USER 65534
ENTRYPOINT ["poolscore", "serve"]
