"""Decision metrics: what each action moves, with SPEC §8's exact names and labels."""

from __future__ import annotations

import pytest
from metrics_support import INVALID, SCHEMAS, VALID
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from policy_engine import Action, ConfigError, PolicyEngine, SchemaValidationError
from policy_engine.hooks import TIMING_SAMPLE
from policy_engine.metrics import METRICS, EngineMetrics, FastEngineMetrics

VALIDATIONS = "schema_validations_total"
FAILURES = "schema_validation_failures_total"
ACTIONS = "schema_enforcement_actions_total"
VIOLATIONS = "schema_violations_total"
DURATION = "schema_validation_duration_seconds"


def test_accepted_moves_validations_and_duration_only(make_engine, value):
    """A valid strict payload counts one accepted validation and its timed duration (the first
    evaluation is timed and stands for TIMING_SAMPLE), no failure."""
    eng = make_engine()
    assert eng.evaluate("shop.Order", VALID, track="v2").action is Action.ACCEPTED
    assert value(VALIDATIONS, "shop.Order", "v2", "strict", "accepted") == 1
    assert value(f"{DURATION}_count") == TIMING_SAMPLE
    assert value(f"{DURATION}_sum") > 0
    assert value(FAILURES, "shop.Order", "strict") is None
    assert value(ACTIONS, "shop.Order", "error", "rejected") is None


def test_logged_moves_the_old_pipeline_counters(make_engine, value):
    """A warn-mode failure counts failures{mode=warn} and actions{severity=warn,action=logged}."""
    eng = make_engine()
    for _ in range(3):
        assert eng.evaluate("shop.Order", INVALID, track="v1").action is Action.LOGGED
    assert value(FAILURES, "shop.Order", "warn") == 3
    assert value(ACTIONS, "shop.Order", "warn", "logged") == 3
    assert value(VALIDATIONS, "shop.Order", "v1", "warn", "logged") == 3
    assert value(VIOLATIONS, "shop.Order", "v1", "minimum", "/price") == 3
    assert value(FAILURES, "shop.Order", "strict") is None


def test_rejected_moves_the_error_counters(make_engine, value):
    """A strict failure counts failures{mode=strict} and actions{severity=error,action=rejected}."""
    eng = make_engine()
    assert eng.evaluate("shop.Order", INVALID, track="v2").action is Action.REJECTED
    assert value(FAILURES, "shop.Order", "strict") == 1
    assert value(ACTIONS, "shop.Order", "error", "rejected") == 1
    assert value(VALIDATIONS, "shop.Order", "v2", "strict", "rejected") == 1
    assert value(VIOLATIONS, "shop.Order", "v2", "minimum", "/price") == 1
    assert value(ACTIONS, "shop.Order", "warn", "logged") is None


def test_skipped_off_counts_a_validation_and_nothing_else(make_engine, value):
    """Mode off counts validations{mode=off,action=skipped} and no failure or action."""
    eng = make_engine()
    assert eng.evaluate("shop.Off", INVALID, track="v1").action is Action.SKIPPED
    assert value(VALIDATIONS, "shop.Off", "v1", "off", "skipped") == 1
    assert value(FAILURES, "shop.Off", "off") is None
    assert value(f"{DURATION}_count") == TIMING_SAMPLE


def test_registry_rejection_is_an_action_not_a_failure(make_engine, value):
    """No schema with on_registry_error=reject is a rejection, but not a validation failure."""
    eng = make_engine()
    decision = eng.evaluate("shop.Gone", VALID, track="v2")
    assert (decision.action, decision.valid) == (Action.REJECTED, None)
    assert value(VALIDATIONS, "shop.Gone", "v2", "strict", "rejected") == 1
    assert value(ACTIONS, "shop.Gone", "error", "rejected") == 1
    assert value(FAILURES, "shop.Gone", "strict") is None
    assert value(VIOLATIONS, "shop.Gone", "v2", "registry", "(root)") is None


def test_skipped_without_schema_counts_under_unknown(make_engine, value):
    """A schema nobody knows is skipped (allow) and counted under schema=unknown."""
    eng = make_engine()
    assert eng.evaluate("shop.Nobody", VALID, track="v1").action is Action.SKIPPED
    assert value(VALIDATIONS, "unknown", "v1", "warn", "skipped") == 1


def test_enforce_counts_once(make_engine, value):
    """``enforce`` counts the payload once, also when it raises."""
    eng = make_engine()
    with pytest.raises(SchemaValidationError):
        eng.enforce("shop.Order", INVALID, track="v2")
    assert value(VALIDATIONS, "shop.Order", "v2", "strict", "rejected") == 1


def test_duration_buckets_use_le_semantics(registry, value):
    """A duration counts in every bucket whose bound is at or above it, a bound included; each
    timed evaluation counts TIMING_SAMPLE times (it stands for the untimed ones)."""
    eng = PolicyEngine(policies=[], registry=SCHEMAS, metrics=False)
    decision = eng.evaluate("nobody.Knows", {}, track="v1")
    hook = EngineMetrics.create(registry)
    for seconds in (0.000_003, 0.001, 0.001_000_1, 5.0, None):
        hook.after_evaluation(decision, seconds)
    bucket = f"{DURATION}_bucket"
    n = TIMING_SAMPLE
    assert value(bucket, le="2.5e-06") == 0
    assert value(bucket, le="5e-06") == 1 * n
    assert value(bucket, le="0.001") == 2 * n
    assert value(bucket, le="0.0025") == 3 * n
    assert value(bucket, le="1.0") == 3 * n
    assert value(bucket, le="+Inf") == 4 * n
    assert value(f"{DURATION}_count") == 4 * n
    assert value(f"{DURATION}_sum") == pytest.approx(5.002_003_1 * n)
    assert value(VALIDATIONS, "unknown", "v1", "warn", "skipped") == 5
    eng.close()


def test_names_labels_and_kinds_are_spec_section_8():
    """Every metric keeps SPEC §8's name and label names (dashboards and alerts depend on it)."""
    spec = {m.name: (m.kind, m.labels) for m in METRICS}
    assert spec == {
        "schema_validation_failures_total": ("counter", ("schema", "mode")),
        "schema_enforcement_actions_total": ("counter", ("schema", "severity", "action")),
        "schema_validations_total": ("counter", ("schema", "track", "mode", "action")),
        "schema_violations_total": ("counter", ("schema", "track", "keyword", "path")),
        "schema_validation_duration_seconds": ("histogram", ()),
        "policy_reloads_total": ("counter", ("result",)),
        "policy_last_reload_success_timestamp_seconds": ("gauge", ()),
        "policy_reload_failing": ("gauge", ()),
        "policy_info": ("gauge", ("checksum",)),
        "policy_canary_percent": ("gauge", ("schema", "track")),
        "policy_guardrail_tripped": ("gauge", ("schema", "track")),
        "policy_guardrail_store_up": ("gauge", ()),
        "policy_guardrail_store_errors_total": ("counter", ()),
        "schema_registry_requests_total": ("counter", ("outcome",)),
        "schema_registry_cache_total": ("counter", ("result",)),
        "dlq_messages_total": ("counter", ("schema", "reason")),
        "consume_stream_length": ("gauge", ("stream", "role")),
        "consume_group_lag": ("gauge", ("stream", "group")),
        "consume_group_pending": ("gauge", ("stream", "group")),
    }


def test_scrape_matches_the_spec(make_engine, registry):
    """A scrape exposes every metric with its help text, kind and exactly its label names."""
    eng = make_engine()
    eng.evaluate("shop.Order", INVALID, track="v2")
    eng.evaluate("shop.Order", INVALID, track="v1")
    assert eng.metrics is not None
    eng.metrics.count_dlq("shop.Order", "rejected")
    eng.metrics.set_guardrail_tripped("shop.Order", "v2", True)
    eng.metrics.registry_request("ok")
    eng.metrics.registry_cache("hit")
    eng.metrics.set_guardrail_store(False, "unreachable")
    eng.metrics.report_stream("events", "source", 10, group="policy-engine", lag=2, pending=1)
    families = {family.name: family for family in registry.collect()}
    for spec in METRICS:
        family = families[spec.name.removesuffix("_total")]
        assert family.type == spec.kind
        assert family.documentation == spec.help
        assert family.samples, spec.name
        for sample in family.samples:
            assert sample.name in spec.sample_names
            assert set(sample.labels) - {"le"} == set(spec.labels)


def test_metrics_false_adds_no_hook(registry):
    """``metrics=False`` registers nothing and times nothing; a registry with it is an error."""
    eng = PolicyEngine(policies=[], registry=SCHEMAS, metrics=False)
    assert eng.metrics is None
    assert eng._observers == ()
    eng.close()
    with pytest.raises(ConfigError, match="metrics=False"):
        PolicyEngine(policies=[], registry=SCHEMAS, metrics=False, metrics_registry=registry)
    assert list(registry.collect()) == []


def test_default_registry_is_the_global_one():
    """Without ``metrics_registry`` the engine counts into prometheus-client's ``REGISTRY``."""
    eng = PolicyEngine(policies=[], registry=SCHEMAS)
    assert isinstance(eng.metrics, FastEngineMetrics)
    assert eng.metrics.registry is REGISTRY
    labels = {"schema": "unknown", "track": "v1", "mode": "warn", "action": "skipped"}
    before = REGISTRY.get_sample_value(VALIDATIONS, labels) or 0
    eng.evaluate("nobody.Knows", {}, track="v1")
    assert REGISTRY.get_sample_value(VALIDATIONS, labels) == before + 1
    eng.close()


def test_a_clashing_metric_on_the_registry_is_a_config_error():
    """A registry that already has a metric of the same name gets a clear ``ConfigError``."""
    registry = CollectorRegistry()
    Counter("schema_validations_total", "someone else's", registry=registry)
    with pytest.raises(ConfigError, match="already has a metric"):
        PolicyEngine(policies=[], registry=SCHEMAS, metrics_registry=registry)
