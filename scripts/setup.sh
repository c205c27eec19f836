#!/usr/bin/env bash
# Sets up a fresh machine for poolscore's tests: Debian packages the tests use (a real
# Prometheus), then a virtualenv in .venv with the package, the server and the dev extras.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null || ! command -v openssl >/dev/null \
        || ! command -v java >/dev/null || ! command -v g++ >/dev/null; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    # prometheus: the metrics tests' real Prometheus; openssl: the TLS tests make their certificates;
    # a Java 17 runtime: the Spark tests' local-mode JVM (Spark 4 needs 17 or later); g++: torch.compile's
    # CPU kernels and the native kernels (server/backends/native) are built with it at run time
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus openssl \
        openjdk-17-jre-headless g++ >/dev/null
    # the package starts a system Prometheus on :9090; the tests run their own
    $sudo systemctl disable --now prometheus >/dev/null 2>&1 || $sudo service prometheus stop >/dev/null 2>&1 || true
fi

# buf (lint and breaking-change checks of proto/, tests/test_buf.py), from the npm registry into .tools/
if [ ! -x .tools/node_modules/.bin/buf ]; then
    npm install --silent --no-audit --no-fund --prefix .tools @bufbuild/buf@1.75.0 >/dev/null
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# ray and spark: the pipeline-engine tests run both in local mode
# constraints.txt pins torch to the CPU build; the package itself never pins it
.venv/bin/python -m pip install -q -c constraints.txt -e ".[server,dev,ray,spark]"
.venv/bin/python -c "import poolscore.server, poolscore.client, poolscore.v1; print('poolscore set up in .venv')"
