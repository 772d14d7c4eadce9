"""The ready-made monitoring files (conf/prometheus, conf/grafana) and the metric names
their PromQL queries use, for the tests that check them against promtool and against what
the agent exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "conf" / "prometheus" / "hadirector-rules.yml"
RULES_TEST = REPO / "conf" / "prometheus" / "hadirector-rules.test.yml"
DASHBOARD = REPO / "conf" / "grafana" / "hadirector.json"

# Metric names Prometheus makes itself (not the agent's).
PROMETHEUS_OWN = {"up"}
# What only an agent on a kernel with IPVS exports (its traffic counters): checked on the
# VM's agent (tests/vm/test_lvs_traffic.py), not in the namespaces' (no IPVS there).
IPVS_TRAFFIC_PREFIXES = ("hadirector_ipvs_service_", "hadirector_ipvs_dest_")

_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "inf", "nan",
}  # fmt: skip
_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS_RE = re.compile(r"\{[^}]*\}")
_GROUPING_RE = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
_RANGE_RE = re.compile(r"\[[^\]]*\]")
_NAME_RE = re.compile(r"(?<![\w:.$])[a-zA-Z_:][a-zA-Z0-9_:]*")
_CALL_RE = re.compile(r"\s*\(")


def grafana_to_promql(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced by values PromQL accepts."""
    return expr.replace("$__rate_interval", "5m").replace("$job", "hadirector")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    text = _STRING_RE.sub('""', expr)
    text = _MATCHERS_RE.sub("", text)
    text = _GROUPING_RE.sub("", text)
    text = _RANGE_RE.sub("", text)
    names = set()
    for m in _NAME_RE.finditer(text):
        word = m.group(0)
        if word.lower() in _KEYWORDS or _CALL_RE.match(text, m.end()):
            continue  # a keyword or a function
        names.add(word)
    return names


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def dashboard_queries() -> list[str]:
    """Every PromQL query of the dashboard (panel targets), variables replaced."""
    return [
        grafana_to_promql(t["expr"]) for p in dashboard()["panels"] for t in p.get("targets", [])
    ]


def template_metric_names() -> set[str]:
    """Metrics the dashboard's variables query (label_values(metric, label))."""
    out = set()
    for var in dashboard()["templating"]["list"]:
        m = re.fullmatch(r"label_values\((\w+),\s*\w+\)", str(var.get("query", "")))
        if m:
            out.add(m.group(1))
    return out


def used_metric_names() -> set[str]:
    """Every agent metric the rules and the dashboard use (histogram series included)."""
    names = set(template_metric_names())
    for q in dashboard_queries():
        names |= metric_names(q)
    for rule in rules():
        names |= metric_names(str(rule["expr"]))
    return names - PROMETHEUS_OWN
