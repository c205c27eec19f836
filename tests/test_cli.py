"""The `poolscore` command: serve in a subprocess, score every pool format, info, errors."""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import reference as ref
from poolscore.client import Client

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
import make_pool  # noqa: E402  (the documented generator of example pools)

POOLSCORE = [sys.executable, "-m", "poolscore.client.cli"]


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*POOLSCORE, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def expected_top(ids: np.ndarray, logits: np.ndarray, k: int) -> list[int]:
    scores = ref.margin(ref.probs(logits))
    return ids[np.lexsort((ids, -scores))[:k]].tolist()


@pytest.fixture(scope="module")
def served():
    """`poolscore serve --port 0` in a subprocess; the port is read from its "listening on" line."""
    proc = subprocess.Popen([*POOLSCORE, "serve", "--port", "0", "--metrics-port", "-1", "--compile", "off"],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "POOLSCORE_MAX_K": "77"})
    try:
        line = ""
        for line in proc.stderr:
            if "listening on" in line:
                break
        port = re.search(r"listening on [\d.]+:(\d+)", line)
        assert port, f"no 'listening on' line; last line: {line!r}"
        target = f"127.0.0.1:{port.group(1)}"
        with Client(target) as c:
            c.wait_ready(timeout=60)
        yield target
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0, "SIGTERM is a clean shutdown"


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".parquet", ".arrow"])
def test_score_each_format_with_the_embedded_server(tmp_path: Path, suffix: str) -> None:
    ids, logits = make_pool.make(3000, 7, seed=4)
    pool = tmp_path / f"pool{suffix}"
    make_pool.write(pool, ids, logits)
    out = run("score", str(pool), "--strategy", "margin", "-k", "15", "--out", str(tmp_path / "top.jsonl"))
    assert out.returncode == 0, out.stderr
    got = [json.loads(line)["id"] for line in (tmp_path / "top.jsonl").read_text().splitlines()]
    want_ids = np.arange(3000) if suffix == ".npy" else ids  # .npy carries no ids: rows are numbered
    assert got == expected_top(want_ids, logits, 15)


def test_score_against_a_served_target_to_csv_and_parquet(served: str, tmp_path: Path) -> None:
    ids, logits = make_pool.make(2000, 5, seed=9)
    pool = tmp_path / "pool.parquet"
    make_pool.write(pool, ids, logits)
    for out in (tmp_path / "top.csv", tmp_path / "top.parquet"):
        res = run("score", str(pool), "--target", served, "--strategy", "margin", "-k", "9", "--out", str(out))
        assert res.returncode == 0, res.stderr
        rows = list(csv.DictReader(out.open())) if out.suffix == ".csv" else pq.read_table(out).to_pylist()
        assert [int(r["id"]) for r in rows] == expected_top(ids, logits, 9)


def test_table_output_of_the_shipped_sample_pool() -> None:
    res = run("score", str(ROOT / "examples" / "sample_pool.npz"), "-k", "4")
    assert res.returncode == 0, res.stderr
    assert "(top 4 of 5000 items)" in res.stdout and len(re.findall(r"^\s+\d\s+1\d{5}\s", res.stdout, re.M)) == 4


def test_info_shows_env_configured_limits(served: str) -> None:
    res = run("info", "--target", served)
    assert res.returncode == 0, res.stderr
    assert "k ≤ 77" in res.stdout and re.search(r"^\s+bald\s+\[N, T, C\]", res.stdout, re.M)


def test_errors_are_one_clear_line() -> None:
    res = run("score", "no/such/pool.npz")
    assert res.returncode == 2 and res.stderr.strip() == "poolscore score: pool file no/such/pool.npz does not exist"
    bad = run("serve", "--port", "x")
    assert bad.returncode == 2 and "invalid int value: 'x'" in bad.stderr
    env = run("serve", env={"POOLSCORE_PORT": "nope"})
    assert env.returncode == 2 and "POOLSCORE_PORT='nope'" in env.stderr


def test_server_errors_are_one_line_too(served: str) -> None:
    sample = str(ROOT / "examples" / "sample_pool.npz")
    over = run("score", sample, "--target", served, "-k", "78")  # the served limit is 77
    assert over.returncode == 2 and "Traceback" not in over.stderr and "k: 78 is over" in over.stderr
    unknown = run("score", sample, "--strategy", "entropi", "--no-progress", "--target", served)
    assert unknown.returncode == 2 and "--strategy 'entropi' is not a strategy; did you mean 'entropy'?" in unknown.stderr


def test_what_can_be_checked_fails_before_a_server_starts(tmp_path: Path) -> None:
    sample = str(ROOT / "examples" / "sample_pool.npz")
    (tmp_path / "pool.csv").write_text("a,b\n1,2\n")
    cases = {("score", str(tmp_path / "pool.csv")): "unknown pool format '.csv'",
             ("score", sample, "--logits-column", "nope"): "npz pool has no 'nope' array (it has ['ids', 'logits'])",
             ("score", sample, "--strategy", "entropi"): "did you mean 'entropy'?",
             ("score", sample, "--out", str(tmp_path / "top.txt")): "unknown format '.txt'",
             ("score", sample, "--out", str(tmp_path / "no" / "top.csv")): "does not exist",
             ("score", sample, "--target", "127.0.0.1:1", "--wait-s", "0.5"): "127.0.0.1:1 not serving after 0.5s"}
    for args, want in cases.items():
        res = run(*args)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1 and want in lines[0], (args, res.stderr)


def test_a_hosted_model_scores_raw_inputs_from_the_cli(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from modelzoo import digits, make_repo

    make_repo(tmp_path / "models")
    x = digits()[:300]
    np.save(tmp_path / "features.npy", x)
    proc = subprocess.Popen([*POOLSCORE, "serve", "--port", "0", "--metrics-port", "-1", "--compile", "off",
                             "--model-repo", str(tmp_path / "models")], stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if "listening on" in line:
                break
        target = "127.0.0.1:" + re.search(r"listening on [\d.]+:(\d+)", line).group(1)
        out = run("score", str(tmp_path / "features.npy"), "--target", target, "--model", "digits_ts", "-k", "5",
                  "--strategy", "bald", "--samples", "8", "--out", str(tmp_path / "top.csv"))
        assert out.returncode == 0, out.stderr
        with Client(target) as c:
            want = c.score_pool(x, "bald", k=5, model="digits_ts", samples=8)
        with open(tmp_path / "top.csv") as f:
            assert [int(r["id"]) for r in csv.DictReader(f)] == list(want.ids)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_export_scorer_writes_a_graph_that_scores_like_the_kernel(tmp_path: Path) -> None:
    import onnxruntime as ort
    import torch

    from poolscore.server.backends.torch.scorer import Scorer
    from poolscore.server.strategies import ScoreOptions

    out = tmp_path / "margin.onnx"
    res = run("export-scorer", "--strategy", "entropy", "--classes", "7", "--base", "2", "-o", str(out))
    assert res.returncode == 0, res.stderr
    logits = np.random.default_rng(3).normal(size=(40, 7)).astype(np.float32)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(["scores"], {"logits": logits})[0]
    want = Scorer("cpu", compile="off").score("entropy", torch.from_numpy(logits), options=ScoreOptions(base=2))
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5)


def test_fuse_scorer_appends_scores_to_a_model(tmp_path: Path) -> None:
    import onnxruntime as ort
    import torch

    import modelzoo
    from poolscore.server.backends.torch.scorer import Scorer

    net = modelzoo.train(0, steps=5)
    modelzoo.write_onnx(net, tmp_path / "model.onnx", mc=False)
    res = run("fuse-scorer", str(tmp_path / "model.onnx"), "--strategy", "least_confidence", "--logits-output", "logits",
              "-o", str(tmp_path / "scored.onnx"))
    assert res.returncode == 0, res.stderr
    x = modelzoo.digits()[:64]
    session = ort.InferenceSession(str(tmp_path / "scored.onnx"), providers=["CPUExecutionProvider"])
    assert {o.name for o in session.get_outputs()} == {"hidden", "scores"}  # the logits stay inside the graph
    scores = session.run(["scores"], {"x": x})[0]
    with torch.no_grad():
        want = Scorer("cpu", compile="off").score("least_confidence", net(torch.from_numpy(x))[0]).numpy()
    np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-7)


# A client-only install (`pip install poolscore`, no extras): the server, torch, onnxruntime and
# prometheus-client cannot be imported at all.
CLIENT_ONLY = [sys.executable, "-c", "import sys\n"
               "for m in ('torch', 'onnxruntime', 'onnx', 'prometheus_client', 'grpc_reflection'):\n"
               "    sys.modules[m] = None  # import fails, as where the package is not installed\n"
               "from poolscore.client.cli import main\n"
               "sys.exit(main(sys.argv[1:]))"]


def test_a_client_only_install_scores_against_a_server_and_prints_info(served: str, tmp_path: Path) -> None:
    ids, logits = make_pool.make(2000, 5, seed=9)
    make_pool.write(tmp_path / "pool.npz", ids, logits)
    done = subprocess.run([*CLIENT_ONLY, "score", str(tmp_path / "pool.npz"), "--strategy", "margin", "-k", "4",
                           "--target", served, "--out", str(tmp_path / "top.csv")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with (tmp_path / "top.csv").open() as f:
        assert [int(r["id"]) for r in csv.DictReader(f)] == expected_top(ids, logits, 4)
    info = subprocess.run([*CLIENT_ONLY, "info", "--target", served], capture_output=True, text=True, timeout=60)
    assert info.returncode == 0 and "margin" in info.stdout, info.stderr


def test_a_client_only_install_says_what_the_server_commands_need(tmp_path: Path) -> None:
    serve = subprocess.run([*CLIENT_ONLY, "serve", "--port", "0"], capture_output=True, text=True, timeout=60)
    assert serve.returncode == 2 and "poolscore serve:" in serve.stderr and "pip install 'poolscore[server]'" in serve.stderr
    ids, logits = make_pool.make(10, 3, seed=1)
    make_pool.write(tmp_path / "pool.npz", ids, logits)
    embedded = subprocess.run([*CLIENT_ONLY, "score", str(tmp_path / "pool.npz")], capture_output=True, text=True, timeout=60)
    assert embedded.returncode == 2, embedded.stderr
    assert "no --target given, and an embedded server needs the server extra" in embedded.stderr
    assert "pip install 'poolscore[server]'" in embedded.stderr


@pytest.mark.parametrize("flags, options", [
    (["--strategy", "stochastic", "--pre-score", "entropy", "--beta", "3", "--sampling", "power", "--seed", "4"],
     dict(pre_score="entropy", beta=3.0, sampling="power", seed=4)),
    (["--strategy", "class_balanced", "--class-priors", "0.4,0.3,0.2,0.05,0.05"], dict(class_priors=[0.4, 0.3, 0.2, 0.05, 0.05])),
])
def test_selection_strategies_and_their_flags(served: str, tmp_path: Path, flags: list[str], options: dict) -> None:
    ids, logits = make_pool.make(3000, 5, seed=2)
    make_pool.write(tmp_path / "pool.npz", ids, logits)
    done = run("score", str(tmp_path / "pool.npz"), "-k", "30", *flags, "--target", served, "--out", str(tmp_path / "top.csv"))
    assert done.returncode == 0, done.stderr
    with (tmp_path / "top.csv").open() as f:
        got = [int(r["id"]) for r in csv.DictReader(f)]
    with Client(served) as c:
        want = c.score_pool([(ids, logits)], flags[1], 30, **options).ids.tolist()
    assert got == want and len(got) == 30


@pytest.mark.parametrize("flags, options", [
    (["--strategy", "coreset", "--candidates", "500"], dict(candidates=500)),
    (["--strategy", "expected_error_reduction", "--reference", "200", "--eta", "0.5", "--loss", "zero_one"],
     dict(reference=200, eta=0.5, loss="zero_one")),
])
def test_set_level_strategies_and_their_flags(served: str, tmp_path: Path, flags: list[str], options: dict) -> None:
    rng = np.random.default_rng(5)
    ids, logits = make_pool.make(1500, 5, seed=3)
    embedding = rng.normal(size=(1500, 6)).astype(np.float32)
    np.savez(tmp_path / "pool.npz", ids=ids, logits=logits, embedding=embedding)
    labeled = rng.normal(size=(40, 6)).astype(np.float32)
    np.save(tmp_path / "labeled.npy", labeled)
    extra = ["--labeled", str(tmp_path / "labeled.npy")] if flags[1] == "coreset" else []
    done = run("score", str(tmp_path / "pool.npz"), "-k", "12", *flags, *extra, "--target", served,
               "--out", str(tmp_path / "top.csv"))
    assert done.returncode == 0, done.stderr
    with (tmp_path / "top.csv").open() as f:
        got = [int(r["id"]) for r in csv.DictReader(f)]
    with Client(served) as c:
        want = c.score_pool([(ids, logits, embedding)], flags[1], 12, labeled=labeled if extra else None,
                            **options).ids.tolist()
    assert got == want and len(got) == 12
