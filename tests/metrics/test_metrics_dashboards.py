"""The Grafana dashboard and the alert rules only use metrics and labels the engine exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from metrics_support import INVALID
from prometheus_client import CollectorRegistry

from policy_engine.metrics import exported_metric_names

DOCS = Path(__file__).resolve().parents[2] / "docs" / "observability"

#: PromQL words that are not metric names (keywords, aggregations, functions without a call).
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
#: Labels Prometheus attaches to every scraped series.
TARGET_LABELS = {"job", "instance"}

SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:e[+-]?\d+)?")
TOKEN = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


def dashboard_exprs() -> Iterator[tuple[str, str]]:
    """(where, expr) of every query of the dashboard: panels, variables, annotations."""
    data = json.loads((DOCS / "grafana-dashboard.json").read_text(encoding="utf-8"))

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(data["panels"]):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r}", target["expr"]
    for variable in data["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            match = re.fullmatch(r"label_values\((.*),\s*\w+\)", query["query"])
            assert match, query
            yield f"variable {variable['name']}", match.group(1)
    for annotation in data["annotations"]["list"]:
        yield f"annotation {annotation['name']!r}", annotation["expr"]


def alert_exprs() -> Iterator[tuple[str, str]]:
    """(where, expr) of every alerting rule."""
    data = yaml.safe_load((DOCS / "alerts.yaml").read_text(encoding="utf-8"))
    for group in data["groups"]:
        for rule in group["rules"]:
            yield f"alert {rule['alert']}", rule["expr"]


def references(expr: str) -> tuple[set[str], list[tuple[str, str]]]:
    """Metric names an expression reads, and (metric, label) of every label matcher."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    labels: list[tuple[str, str]] = []
    names: set[str] = set()
    for match in SELECTOR.finditer(text):
        metric = match.group(1) or ""
        names.add(metric)
        labels.extend((metric, label) for label in MATCHER.findall(match.group(2)))
    text = SELECTOR.sub(" ", text)
    text = GROUPING.sub(" ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\$\w+", " ", text)
    text = NUMBER.sub(" ", text)
    names.update(
        token
        for token, call in TOKEN.findall(text)
        if not call and token.lower() not in PROMQL_WORDS  # a call is a function
    )
    names.discard("")
    return names, labels


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """Sample name -> label names, from a scrape of a registry where every metric moved."""
    from policy_engine import PolicyEngine

    root = Path(__file__).resolve().parents[2]
    registry = CollectorRegistry()
    eng = PolicyEngine(
        policies=str(root / "policies"), registry=str(root / "schemas"), metrics_registry=registry
    )
    eng.evaluate("marketdata.TradeEvent", INVALID, track="v2")
    assert eng.metrics is not None
    eng.metrics.count_dlq("marketdata.TradeEvent", "rejected")
    eng.metrics.set_guardrail_tripped("marketdata.TradeEvent", "v2", True)
    eng.metrics.registry_request("ok")
    eng.metrics.registry_cache("hit")
    eng.metrics.set_guardrail_store(False, "unreachable")
    samples: dict[str, set[str]] = {}
    for family in registry.collect():
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    eng.close()
    # every metric of the module is in the scrape, and nothing else
    assert set(samples) == exported_metric_names()
    return samples


@pytest.mark.parametrize(
    ("where", "expr"), [*dashboard_exprs(), *alert_exprs()], ids=lambda v: str(v)[:60]
)
def test_queries_use_exported_metrics_and_labels(where, expr, exported):
    """Every metric a query reads is exported, and every label it matches on exists there."""
    names, labels = references(expr)
    assert names, f"{where}: no metric found in {expr!r}"
    unknown = names - set(exported)
    assert not unknown, f"{where}: {sorted(unknown)} not exported"
    for metric, label in labels:
        assert label in exported[metric] | TARGET_LABELS, f"{where}: {metric} has no {label}"


def test_dashboard_covers_what_an_on_call_engineer_needs():
    """Rollout, outcomes, actions, failing paths, DLQ, reloads and registry each have a panel."""
    used: set[str] = set()
    for _, expr in dashboard_exprs():
        used |= references(expr)[0]
    assert {
        "policy_canary_percent",
        "schema_validations_total",
        "schema_enforcement_actions_total",
        "schema_validation_failures_total",
        "schema_violations_total",
        "dlq_messages_total",
        "policy_reloads_total",
        "policy_last_reload_success_timestamp_seconds",
        "policy_info",
        "schema_registry_requests_total",
        "schema_registry_cache_total",
        "policy_guardrail_tripped",
        "schema_validation_duration_seconds_bucket",
    } <= used


def test_alerts_cover_the_issue_list():
    """Reject-rate spike, failing reloads, a stale registry and tripped guardrails alert."""
    rules = {where: references(expr)[0] for where, expr in alert_exprs()}
    assert "schema_validations_total" in rules["alert PolicyEngineRejectRateSpike"]
    assert "policy_reloads_total" in rules["alert PolicyEngineReloadFailing"]
    assert "schema_registry_cache_total" in rules["alert SchemaRegistryStale"]
    assert "policy_guardrail_tripped" in rules["alert PolicyGuardrailTripped"]
    for rule in yaml.safe_load((DOCS / "alerts.yaml").read_text())["groups"][0]["rules"]:
        assert rule["labels"]["severity"] in {"page", "ticket"}
        assert rule["annotations"]["summary"]


def test_the_reference_parser_catches_a_typo():
    """The checker is not vacuous: a misspelt metric or label is reported."""
    names, labels = references('sum by (schema) (rate(schema_validation_total{mode="x"}[5m]))')
    assert names == {"schema_validation_total"}
    assert labels == [("schema_validation_total", "mode")]
    names, _ = references("histogram_quantile(0.99, sum by (le) (rate(foo_bucket[5m]))) > 1e-3")
    assert names == {"foo_bucket"}
