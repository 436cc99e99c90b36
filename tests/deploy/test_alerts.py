"""The alert rules' promtool tests cover every rule both ways, the dashboard queries they test are
the dashboard's, and the PrometheusRule shipped for Kubernetes holds exactly the same rules.

promtool itself runs in ``.ci/run`` (``promtool test rules tests/deploy/alerts.test.yaml``);
these tests keep that file honest about what it covers.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "docs" / "observability" / "alerts.yaml"
DASHBOARD = ROOT / "docs" / "observability" / "grafana-dashboard.json"
UNIT_TESTS = Path(__file__).with_name("alerts.test.yaml")
PROMETHEUS_RULE = ROOT / "deploy" / "kubernetes" / "base" / "prometheusrule.yaml"

#: Dashboard panels whose query promtool evaluates on sample data (alerts.test.yaml).
TESTED_PANELS = (
    "Processes per policy version",
    "Processes whose last reload failed",
    "Schema validation success rate",
    "DLQ depth",
    "Consumer group lag",
)
#: What Grafana puts in for the dashboard's variables, as the promtool tests write them.
VARIABLES = {
    "$__rate_interval": "5m",
    '"$schema"': '".*"',
    '"$track"': '".*"',
}


def alert_names() -> list[str]:
    """Every alerting rule of alerts.yaml."""
    data = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule["alert"] for group in data["groups"] for rule in group["rules"]]


def unit_tests() -> list[dict[str, Any]]:
    """The test groups of alerts.test.yaml."""
    data = yaml.safe_load(UNIT_TESTS.read_text(encoding="utf-8"))
    assert data["rule_files"] == ["../../docs/observability/alerts.yaml"]
    tests: list[dict[str, Any]] = data["tests"]
    return tests


def evaluations(alert: str) -> list[tuple[int, bool]]:
    """(minute, fires?) of every evaluation of ``alert`` in the promtool tests."""
    out = []
    for group in unit_tests():
        for case in group.get("alert_rule_test", []):
            if case["alertname"] == alert:
                minutes = int(re.fullmatch(r"(\d+)m", case["eval_time"]).group(1))
                out.append((minutes, bool(case["exp_alerts"])))
    return sorted(out)


def dashboard_query(title: str) -> str:
    """The query of the dashboard panel titled ``title``, with its variables filled in."""
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    (panel,) = (p for p in panels if p["title"] == title)
    (target,) = panel["targets"]
    expr: str = target["expr"]
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def load_generator() -> ModuleType:
    """deploy/kubernetes/prometheusrule.py, imported from its path (it is a script)."""
    path = ROOT / "deploy" / "kubernetes" / "prometheusrule.py"
    spec = importlib.util.spec_from_file_location("prometheusrule", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("alert", alert_names())
def test_every_alert_is_tested_firing_and_not_firing(alert):
    """Each alert rule has a promtool case where it fires and one where it stays silent."""
    fires = {firing for _, firing in evaluations(alert)}
    assert fires == {True, False}, f"{alert}: {evaluations(alert)}"


def test_reload_failing_is_tested_from_one_failure_until_a_good_reload():
    """The reload alert's cases fire on one failure, hold past 15 minutes, then clear."""
    evals = evaluations("PolicyEngineReloadFailing")
    firing = [minute for minute, fires in evals if fires]
    assert max(firing) - min(firing) > 60  # the old rule cleared 15 minutes after the failure
    assert any(minute > max(firing) and not fires for minute, fires in evals)
    # the input is a single failure: the error counter goes from absent to 1 once
    (group,) = (g for g in unit_tests() if "PolicyEngineReloadFailing" in str(g))
    errors = [s for s in group["input_series"] if 'result="error"' in s["series"]]
    assert [s["values"] for s in errors] == ["_x9 1x141"]


@pytest.mark.parametrize("title", TESTED_PANELS)
def test_dashboard_queries_are_the_ones_promtool_tests(title):
    """The promtool expression tests evaluate the dashboard's own queries, not old copies."""
    tested = {case["expr"] for g in unit_tests() for case in g.get("promql_expr_test", [])}
    assert dashboard_query(title) in tested


def test_processes_per_policy_version_counts_processes_by_checksum():
    """The panel counts the series of each checksum, not the number of checksums."""
    assert dashboard_query("Processes per policy version") == (
        "count by (checksum) (policy_info == 1)"
    )


def test_prometheus_rule_is_generated_from_the_alert_rules():
    """deploy/kubernetes/base/prometheusrule.yaml is what the generator makes of alerts.yaml."""
    generator = load_generator()
    regenerate = "python deploy/kubernetes/prometheusrule.py > " + str(PROMETHEUS_RULE)
    assert PROMETHEUS_RULE.read_text(encoding="utf-8") == generator.render(), regenerate
    shipped = yaml.safe_load(PROMETHEUS_RULE.read_text(encoding="utf-8"))
    assert shipped["spec"] == yaml.safe_load(ALERTS.read_text(encoding="utf-8"))


def test_prometheus_rule_generator_follows_a_changed_rule(tmp_path):
    """The comparison is not vacuous: a changed threshold gives a different PrometheusRule."""
    generator = load_generator()
    changed = tmp_path / "alerts.yaml"
    changed.write_text(ALERTS.read_text(encoding="utf-8").replace("> 0.05", "> 0.1"))
    assert generator.render(changed) != PROMETHEUS_RULE.read_text(encoding="utf-8")
    assert "> 0.1" in generator.render(changed)
