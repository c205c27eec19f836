#!/usr/bin/env bash
# Sets up a fresh machine for poolscore's tests: Debian packages the tests use (a real
# Prometheus), then a virtualenv in .venv with the package, the server and the dev extras.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null || ! command -v openssl >/dev/null; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    # prometheus: the metrics tests' real Prometheus; openssl: the TLS tests make their certificates
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus openssl >/dev/null
    # the package starts a system Prometheus on :9090; the tests run their own
    $sudo systemctl disable --now prometheus >/dev/null 2>&1 || $sudo service prometheus stop >/dev/null 2>&1 || true
fi

# buf (lint and breaking-change checks of proto/, tests/test_buf.py), from the npm registry into .tools/
if [ ! -x .tools/node_modules/.bin/buf ]; then
    npm install --silent --no-audit --no-fund --prefix .tools @bufbuild/buf@1.75.0 >/dev/null
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# constraints.txt pins torch to the CPU build; the package itself never pins it
.venv/bin/python -m pip install -q -c constraints.txt -e ".[server,dev]"
.venv/bin/python -c "import poolscore.server, poolscore.client, poolscore.v1; print('poolscore set up in .venv')"
