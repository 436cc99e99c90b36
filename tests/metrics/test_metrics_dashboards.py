"""The Grafana dashboard and the alert rules only use metrics and labels the engine exports, the
dashboard imports into Grafana, and the gauges they read behave as they assume (the reload
gauge holds while a load keeps failing; the stream gauges take what the consume loop reports)."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from metrics_support import INVALID
from prometheus_client import CollectorRegistry

from policy_engine import PolicyEngine, PolicyLoadError, Settings
from policy_engine.metrics import exported_metric_names, multiprocess_registry

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
    eng.metrics.report_stream("events", "source", 10, group="policy-engine", lag=2, pending=1)
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
        "policy_reload_failing",
        "policy_guardrail_store_up",
        "policy_guardrail_store_errors_total",
        "consume_stream_length",
        "consume_group_lag",
        "consume_group_pending",
    } <= used


def test_the_runbooks_panels_are_there():
    """The four panels the seed's runbook asks for, by title, read the metrics they name."""
    panels = {where: references(expr)[0] for where, expr in dashboard_exprs()}
    assert "schema_validations_total" in panels["panel 'Schema validation success rate'"]
    assert panels["panel 'DLQ depth'"] == {"consume_stream_length"}
    assert "dlq_messages_total" in panels["panel 'DLQ messages per schema and reason'"]
    assert "policy_canary_percent" in panels["panel 'Canary in force per schema/track'"]


def test_dashboard_imports_into_grafana():
    """Unique panel ids and titles, templated data sources, and no two panels on one spot."""
    data = json.loads((DOCS / "grafana-dashboard.json").read_text(encoding="utf-8"))
    panels = data["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    titles = [panel["title"] for panel in panels]
    assert len(titles) == len(set(titles))
    (source,) = (v for v in data["templating"]["list"] if v["type"] == "datasource")
    assert source["query"] == "prometheus"
    templated = {"type": "prometheus", "uid": f"${{{source['name']}}}"}
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"] == templated, panel["title"]
            for target in panel["targets"]:
                assert target["datasource"] == templated, panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
    for variable in data["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"] == templated


def test_alerts_cover_the_issue_list():
    """Reject-rate spike, failing reloads, a stale registry, tripped guardrails, a growing
    consumer lag and an unreachable guardrail store alert."""
    rules = {where: references(expr)[0] for where, expr in alert_exprs()}
    assert "schema_validations_total" in rules["alert PolicyEngineRejectRateSpike"]
    assert rules["alert PolicyEngineReloadFailing"] == {"policy_reload_failing"}
    assert rules["alert PolicyEngineConsumerLagGrowing"] == {"consume_group_lag"}
    assert rules["alert PolicyGuardrailStoreDown"] == {"policy_guardrail_store_up"}
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


# -- what the alerts and panels read behaves as they assume


def test_reload_failing_holds_from_a_failed_load_until_a_good_one(make_engine, policy_dir, value):
    """policy_reload_failing is 1 after a failed load, stays 1 while it keeps failing, and is 0
    after an unchanged or successful load."""
    eng = make_engine()
    good = (policy_dir / "rules.yaml").read_text(encoding="utf-8")
    assert value("policy_reload_failing") == 0
    (policy_dir / "rules.yaml").write_text("version: 2\n", encoding="utf-8")
    for _ in range(2):  # the watcher or SIGHUP tries again: the file is still broken
        with pytest.raises(PolicyLoadError):
            eng.reload()
        assert value("policy_reload_failing") == 1
    (policy_dir / "rules.yaml").write_text(good, encoding="utf-8")
    assert eng.reload() is False  # the good set is the one still in force: unchanged
    assert value("policy_reload_failing") == 0


def test_reload_failing_is_one_while_any_engine_of_the_registry_fails(
    make_engine, policy_dir, tmp_path, registry, value
):
    """Engines sharing a registry report 1 while any of them is stuck on a failed load."""
    broken_dir = tmp_path / "other"
    broken_dir.mkdir()
    (broken_dir / "rules.yaml").write_text(
        (policy_dir / "rules.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    make_engine()
    other = PolicyEngine(
        policies=str(broken_dir),
        registry=str(tmp_path / "schemas"),
        metrics_registry=registry,
        settings=Settings(policy_watch=False),
    )
    (broken_dir / "rules.yaml").write_text("version: 2\n", encoding="utf-8")
    with pytest.raises(PolicyLoadError):
        other.reload()
    assert value("policy_reload_failing") == 1
    other.close()


def test_report_stream_sets_the_stream_and_group_gauges(make_engine, value):
    """A source report sets length, lag and pending; output and DLQ reports set their length."""
    eng = make_engine()
    assert eng.metrics is not None
    eng.metrics.report_stream("events", "source", 1200, group="policy-engine", lag=40, pending=3)
    eng.metrics.report_stream("events:dlq", "dlq", 17)
    eng.metrics.report_stream("events.checked", "output", 1100)
    assert value("consume_stream_length", "events", "source") == 1200
    assert value("consume_stream_length", "events:dlq", "dlq") == 17
    assert value("consume_stream_length", "events.checked", "output") == 1100
    assert value("consume_group_lag", "events", "policy-engine") == 40
    assert value("consume_group_pending", "events", "policy-engine") == 3
    eng.metrics.report_stream("events", "source", 1300, group="policy-engine", lag=0, pending=0)
    assert value("consume_stream_length", "events", "source") == 1300
    assert value("consume_group_lag", "events", "policy-engine") == 0


def test_an_unknown_stream_value_reads_nan(make_engine, value):
    """``None`` (XINFO failed, or Redis reports no lag) shows as NaN, not as a stale number."""
    eng = make_engine()
    assert eng.metrics is not None
    eng.metrics.report_stream("events", "source", 1200, group="policy-engine", lag=40, pending=3)
    eng.metrics.report_stream("events", "source", None, group="policy-engine", lag=None)
    assert math.isnan(value("consume_stream_length", "events", "source"))
    assert math.isnan(value("consume_group_lag", "events", "policy-engine"))
    assert math.isnan(value("consume_group_pending", "events", "policy-engine"))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"role": "retry"}, "role"),
        ({"role": "output", "lag": 3}, "group"),
        ({"role": "dlq", "pending": 1}, "group"),
    ],
)
def test_report_stream_refuses_what_would_make_odd_labels(make_engine, call, message):
    """Only the three roles exist, and a group's lag or pending needs the group's name."""
    eng = make_engine()
    assert eng.metrics is not None
    with pytest.raises(ValueError, match=message):
        eng.metrics.report_stream("events", length=1, **call)


MULTIPROCESS_WORKER = textwrap.dedent(
    """
    import pathlib, sys
    from policy_engine import PolicyEngine, Settings
    from policy_engine.metrics import MultiprocessEngineMetrics

    policies, schemas, lag = sys.argv[1:]
    eng = PolicyEngine(policies=policies, registry=schemas, settings=Settings(policy_watch=False))
    assert isinstance(eng.metrics, MultiprocessEngineMetrics), type(eng.metrics)
    eng.metrics.report_stream("events", "source", 100, group="g", lag=int(lag), pending=2)
    eng.metrics.report_stream("events:dlq", "dlq", 7)
    if lag == "5":  # the second worker fails a reload
        pathlib.Path(policies, "rules.yaml").write_text("version: 2\\n", encoding="utf-8")
        try:
            eng.reload()
        except Exception:
            pass
    """
)


def test_multiprocess_mode_exports_the_new_gauges(tmp_path, policy_dir, schema_dir):
    """Across processes the latest stream report wins and a failing reload anywhere shows."""
    directory = tmp_path / "multiproc"
    directory.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    env.pop("prometheus_multiproc_dir", None)
    for lag in ("9", "5"):  # one after the other: the second report is the latest
        done = subprocess.run(
            [sys.executable, "-c", MULTIPROCESS_WORKER, str(policy_dir), str(schema_dir), lag],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    registry = multiprocess_registry(str(directory))
    stream = {"stream": "events", "group": "g"}
    assert registry.get_sample_value("consume_group_lag", stream) == 5
    assert registry.get_sample_value("consume_group_pending", stream) == 2
    length = {"stream": "events:dlq", "role": "dlq"}
    assert registry.get_sample_value("consume_stream_length", length) == 7
    assert registry.get_sample_value("policy_reload_failing") == 1  # livemax
