"""TLS and mTLS: certificates made with openssl at test time, a real server on a free port,
the client and the CLI; plaintext, a missing client certificate and another CA's are refused."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from poolscore.client import Client, NotFound, PoolscoreError
from poolscore.server.app import build_server
from poolscore.server.config import ServeConfig

EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d: Path, name: str) -> None:
    openssl("req", "-x509", *EC, "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj",
            f"/CN={name}", cwd=d)


def make_cert(d: Path, name: str, ca: str, ext: str) -> None:
    (d / f"{name}.ext").write_text(ext)
    openssl("req", *EC, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    make_cert(d, "server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    make_cert(d, "team-a", "ca", "extendedKeyUsage=clientAuth\n")
    make_cert(d, "team-b", "ca", "extendedKeyUsage=clientAuth\n")
    make_cert(d, "intruder", "other-ca", "extendedKeyUsage=clientAuth\n")
    return d


def serve(pki: Path, mtls: bool, **config):
    return build_server(ServeConfig(port=0, metrics_port=-1, device="cpu", compile="off",
                                    tls_cert=str(pki / "server.pem"), tls_key=str(pki / "server.key"),
                                    tls_client_ca=str(pki / "ca.pem") if mtls else "", **config)).start()


def as_team(app, pki: Path, team: str, **kw) -> Client:
    return Client(app.target, root_certificates=pem(pki, "ca.pem"), private_key=pem(pki, f"{team}.key"),
                  certificate_chain=pem(pki, f"{team}.pem"), timeout=10, **kw)


def pem(pki: Path, name: str) -> bytes:
    return (pki / name).read_bytes()


def test_tls_serves_a_client_that_trusts_its_ca_and_refuses_plaintext(pki):
    app = serve(pki, mtls=False)
    try:
        z = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
        with Client(app.target, root_certificates=pem(pki, "ca.pem"), timeout=10) as c:
            c.wait_ready(timeout=10)
            assert len(c.score_pool(z, "entropy", 5)) == 5
        with Client(app.target, timeout=5) as plain, pytest.raises(PoolscoreError):
            plain.info()
    finally:
        app.stop(grace=None)


def test_mtls_needs_a_client_certificate_from_its_ca(pki):
    app = serve(pki, mtls=True)
    try:
        ca = pem(pki, "ca.pem")
        with Client(app.target, root_certificates=ca, private_key=pem(pki, "team-a.key"),
                    certificate_chain=pem(pki, "team-a.pem"), timeout=10) as c:
            c.wait_ready(timeout=10)
            assert c.info().version
        refused = {}
        for who, key, cert in (("no certificate", None, None),
                               ("another CA's", pem(pki, "intruder.key"), pem(pki, "intruder.pem"))):
            with Client(app.target, root_certificates=ca, private_key=key, certificate_chain=cert, timeout=5) as c:
                with pytest.raises(PoolscoreError) as err:
                    c.info()
                refused[who] = type(err.value).__name__
        assert refused == {"no certificate": "Unavailable", "another CA's": "Unavailable"}, refused
        with Client(app.target, timeout=5) as plain, pytest.raises(PoolscoreError):
            plain.info()
        done = subprocess.run([sys.executable, "-m", "poolscore.client.cli", "info", "--target", app.target,
                               "--tls-ca", str(pki / "ca.pem"), "--tls-cert", str(pki / "team-a.pem"),
                               "--tls-key", str(pki / "team-a.key")], capture_output=True, text=True, timeout=120,
                              env={**os.environ})
        assert done.returncode == 0 and "poolscore" in done.stdout, done.stderr
    finally:
        app.stop(grace=None)


def test_tls_flags_go_together(pki):
    with pytest.raises(ValueError, match="--tls-cert and --tls-key go together"):
        build_server(ServeConfig(port=0, metrics_port=-1, device="cpu", compile="off", tls_cert=str(pki / "server.pem")))


def test_a_client_certificate_can_be_the_principal(pki):
    app = serve(pki, mtls=True, cert_principals=True)
    try:
        with as_team(app, pki, "team-a") as a, as_team(app, pki, "team-b") as b:
            a.session("entropy", k=3, session_id="nightly").score(np.ones((4, 3), np.float32))
            assert a.get_session("nightly").items == 4
            with pytest.raises(NotFound):
                b.get_session("nightly")  # team-b's certificate is another principal
            b.session("entropy", k=3, session_id="nightly")  # its own namespace
            assert a.get_session("nightly").items == 4 and b.get_session("nightly").items == 0
    finally:
        app.stop(grace=None)
    with pytest.raises(ValueError, match="--cert-principals needs --tls-client-ca"):
        serve(pki, mtls=False, cert_principals=True)


def test_a_plaintext_health_port_answers_probes_and_nothing_else(pki):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    app = serve(pki, mtls=True, health_port=0)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{app.health_port}") as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=60)
            # a kubelet's probe, no certificate: NOT_SERVING while the batch path is rehearsed, then SERVING
            assert health_pb2.HealthCheckResponse.SERVING in (reply.status for reply in watch)
            watch.cancel()
            with pytest.raises(grpc.RpcError) as err:
                channel.unary_unary("/poolscore.v1.PoolScorer/ServerInfo")(b"", timeout=10)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED  # nothing but health there
        with as_team(app, pki, "team-a") as a:
            assert a.info().version  # the TLS port serves as before
    finally:
        app.stop(grace=None)
