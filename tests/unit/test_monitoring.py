"""The ready-made monitoring: the alert rules pass ``promtool check rules`` and their unit
tests (``promtool test rules``, series written in conf/prometheus/hadirector-rules.test.yml),
every dashboard query parses (promtool, as recording rules), and every metric the rules and
the dashboard name is one the agent's metrics code writes. The same names are checked
against a running pair's endpoint in tests/netns/test_e2e_monitoring.py."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests import monitoring
from tests.monitoring import DASHBOARD, RULES, RULES_TEST
from tests.unit.metricskit import exported_page

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian's prometheus; tools/setup)"
)


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


@needs_promtool
def test_rules_pass_promtool_check() -> None:
    proc = promtool("check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(monitoring.rules())} rules found" in proc.stdout


@needs_promtool
def test_rules_unit_tests_pass() -> None:
    proc = promtool("test", "rules", RULES_TEST.name, cwd=RULES_TEST.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_rule_is_tested() -> None:
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULES_TEST.read_text())["tests"]
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert tested == {r["alert"] for r in monitoring.rules()}


@needs_promtool
def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    queries = monitoring.dashboard_queries()
    assert len(queries) >= 10
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query{i}", "expr": q} for i, q in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    proc = promtool("check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dashboard_is_grafana_json() -> None:
    dash = monitoring.dashboard()
    assert dash["uid"] == "hadirector"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        assert panel["targets"], panel["title"]
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
    assert DASHBOARD.read_text().endswith("\n")


def test_metric_names_of_a_query() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, service) (rate(a_bucket{job="x", s=~"b|c"}[5m])))'
        " > 1e3 and on (instance) b_total offset 5m"
    )
    assert monitoring.metric_names(expr) == {"a_bucket", "b_total"}


def test_rules_and_dashboard_name_only_metrics_the_agent_writes() -> None:
    exported = {
        s.name for fam in text_string_to_metric_families(exported_page()) for s in fam.samples
    }
    missing = monitoring.used_metric_names() - exported
    assert missing == set()
