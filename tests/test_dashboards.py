"""deploy/: the alert rules pass `promtool check rules`, and every series the Grafana dashboard
and the rules query is one the server exports (so a rename cannot leave a panel empty)."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from poolscore.server.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "base"
SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_info", "_created")
PROMETHEUS_OWN = {"up"}  # scraped-target health: Prometheus makes it, not the server


def exported() -> set[str]:
    """Every sample name the server's registry can expose (a family is listed before it has children)."""
    families = re.findall(r"^# TYPE (\S+) (\S+)$", generate_latest(Metrics(CollectorRegistry()).registry).decode(), re.M)
    names = set()
    for name, kind in families:
        names.add(name)
        if kind == "histogram":
            names |= {name + s for s in ("_bucket", "_sum", "_count")}
        if kind == "counter" and not name.endswith("_total"):
            names.add(name + "_total")
    return names


def series_in(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers followed by a selector, a range or an operator,
    less functions, keywords and label names."""
    text = re.sub(r'"[^"]*"', '""', expr)  # label values
    text = re.sub(r"\{[^}]*\}", "{}", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)  # grouping labels
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text))
    functions = set(re.findall(r"([a-zA-Z_]+)\s*\(", text))
    keywords = {"sum", "rate", "increase", "histogram_quantile", "clamp_min", "max", "count", "and", "or", "unless",
                "le", "e", "s", "m", "h"}
    return {w for w in words - functions - keywords if not re.fullmatch(r"\d+[smh]?", w)}


def dashboard_exprs() -> list[str]:
    dash = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def rule_exprs() -> list[str]:
    return re.findall(r"expr: \|?\s*\n?((?:.*\n)*?)\s*(?:for:|labels:)", (DEPLOY / "alerts.yaml").read_text())


def test_the_alert_rules_pass_promtool() -> None:
    done = subprocess.run(["promtool", "check", "rules", str(DEPLOY / "alerts.yaml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 8 rules found" in done.stdout


def test_every_dashboard_and_alert_query_names_a_series_the_server_exports() -> None:
    names = exported()
    queried = {expr: series_in(expr) for expr in dashboard_exprs() + rule_exprs()}
    assert len(queried) >= 25 and all(queried.values())
    missing = {expr: sorted(s - names - PROMETHEUS_OWN) for expr, s in queried.items() if s - names - PROMETHEUS_OWN}
    assert missing == {}
    print(f"\n{len(queried)} queries over {len(set().union(*queried.values()))} series, all exported")


def test_the_check_can_fail() -> None:
    assert series_in('sum by (rpc) (rate(poolscore_request_total{code="OK"}[5m]))') == {"poolscore_request_total"}
    assert "poolscore_request_total" not in exported()  # a misspelt series would be caught
