"""Policy, registry, DLQ and guardrail metrics, and several engines on one registry."""

from __future__ import annotations

import pytest
from metrics_support import INVALID, T0, VALID

from policy_engine import PolicyEngine, PolicyLoadError, load_policy_set
from policy_engine.hooks import TIMING_SAMPLE

RAMP = """\
version: 1
schemas:
  shop.Order:
    mode: warn
    tracks:
      v2:
        mode: strict
        canary: 5
        ramp:
          - {at: 2026-06-02T00:00:00Z, canary: 25}
          - {at: 2026-06-03T00:00:00Z, canary: 100}
  "shop.*":
    mode: warn
    canary: 12.5
"""


def test_initial_load_counts_a_successful_reload(make_engine, value, clock):
    """The constructor's load counts as result=success, with its time and checksum."""
    eng = make_engine()
    assert value("policy_reloads_total", "success") == 1
    assert value("policy_last_reload_success_timestamp_seconds") == clock.now
    assert value("policy_info", eng.checksum) == 1


def test_reload_results_are_counted(make_engine, policy_dir, value, clock):
    """unchanged, success and error reloads each count; a failure keeps the last good set."""
    eng = make_engine()
    first = eng.checksum
    clock.advance(60)
    assert eng.reload() is False
    assert value("policy_reloads_total", "unchanged") == 1
    assert value("policy_last_reload_success_timestamp_seconds") == T0 + 60

    clock.advance(60)
    (policy_dir / "rules.yaml").write_text("version: 2\n", encoding="utf-8")
    with pytest.raises(PolicyLoadError):
        eng.reload()
    assert value("policy_reloads_total", "error") == 1
    assert value("policy_last_reload_success_timestamp_seconds") == T0 + 60
    assert value("policy_info", first) == 1

    clock.advance(60)
    (policy_dir / "rules.yaml").write_text(RAMP, encoding="utf-8")
    assert eng.reload() is True
    assert value("policy_reloads_total", "success") == 2
    assert value("policy_last_reload_success_timestamp_seconds") == T0 + 180
    assert value("policy_info", eng.checksum) == 1
    assert value("policy_info", first) is None  # only the set in force is reported


def test_canary_percent_follows_rules_and_ramps(make_engine, value, clock):
    """policy_canary_percent shows the canary in force per schema/track, moving with the ramp."""
    make_engine(RAMP)
    assert value("policy_canary_percent", "shop.Order", "v2") == 5
    assert value("policy_canary_percent", "shop.Order", "v1") == 100
    assert value("policy_canary_percent", "shop.Off", "v1") == 12.5  # the glob's rule
    clock.now = T0 + 86_400
    assert value("policy_canary_percent", "shop.Order", "v2") == 25
    clock.now = T0 + 2 * 86_400
    assert value("policy_canary_percent", "shop.Order", "v2") == 100


def test_schemas_without_a_rule_report_no_canary(make_engine, value):
    """A schema only the global default governs has no policy_canary_percent series."""
    make_engine("version: 1\nschemas:\n  shop.Off:\n    mode: warn\n")
    assert value("policy_canary_percent", "shop.Order", "v2") is None
    assert value("policy_canary_percent", "shop.Off", "v1") == 100


def test_engine_from_a_policy_set_reports_its_checksum(registry, schema_dir, policy_dir):
    """An engine built from a PolicySet (no reload) still reports policy_info and canaries."""
    policy_set = load_policy_set([policy_dir])
    eng = PolicyEngine(policy_set, registry=str(schema_dir), metrics_registry=registry)
    assert registry.get_sample_value("policy_info", {"checksum": policy_set.checksum}) == 1
    assert registry.get_sample_value("policy_reloads_total", {"result": "success"}) is None
    assert registry.get_sample_value("policy_last_reload_success_timestamp_seconds") is None
    labels = {"schema": "shop.Gone", "track": "v2"}
    assert registry.get_sample_value("policy_canary_percent", labels) == 100
    eng.close()


def test_registry_observer_counts(make_engine, value):
    """Sources report registry requests and cache lookups through ``registry_observers``."""
    eng = make_engine()
    assert eng.metrics in eng.registry_observers
    for observer in eng.registry_observers:
        observer.registry_request("ok")
        observer.registry_request("ok")
        observer.registry_request("timeout")
        observer.registry_cache("hit")
        observer.registry_cache("stale")
    assert value("schema_registry_requests_total", "ok") == 2
    assert value("schema_registry_requests_total", "timeout") == 1
    assert value("schema_registry_cache_total", "hit") == 1
    assert value("schema_registry_cache_total", "stale") == 1


def test_dlq_messages_are_counted_with_folded_schemas(make_engine, value):
    """``count_dlq`` counts per schema and reason; invented names fold to unknown."""
    eng = make_engine()
    assert eng.metrics is not None
    eng.metrics.count_dlq("shop.Order", "rejected")
    eng.metrics.count_dlq("shop.Order", "rejected", 2)
    eng.metrics.count_dlq("x.Invented", "bad_envelope")
    assert value("dlq_messages_total", "shop.Order", "rejected") == 3
    assert value("dlq_messages_total", "unknown", "bad_envelope") == 1


def test_guardrail_gauge_is_set_and_cleared(make_engine, value):
    """``set_guardrail_tripped`` sets policy_guardrail_tripped to 1, then back to 0."""
    eng = make_engine()
    assert eng.metrics is not None
    eng.metrics.set_guardrail_tripped("shop.Order", "v2", True)
    assert value("policy_guardrail_tripped", "shop.Order", "v2") == 1
    eng.metrics.set_guardrail_tripped("shop.Order", "v2", False)
    assert value("policy_guardrail_tripped", "shop.Order", "v2") == 0


def test_two_engines_share_one_registry(make_engine, value):
    """Two engines on one registry register once and add up their counts."""
    first = make_engine()
    second = make_engine()
    first.evaluate("shop.Order", INVALID, track="v1")
    second.evaluate("shop.Order", INVALID, track="v1")
    second.evaluate("shop.Order", VALID, track="v1")
    assert value("schema_validations_total", "shop.Order", "v1", "warn", "logged") == 2
    assert value("schema_validation_failures_total", "shop.Order", "warn") == 2
    # Each engine times its first evaluation, which stands for TIMING_SAMPLE of them.
    assert value("schema_validation_duration_seconds_count") == 2 * TIMING_SAMPLE
    assert value("policy_reloads_total", "success") == 2
    assert value("policy_info", first.checksum) == 1


def test_a_closed_and_collected_engine_keeps_its_counts(registry, schema_dir, policy_dir):
    """Counts outlive the engine that made them (counters never go back)."""
    import gc

    eng = PolicyEngine(str(policy_dir), registry=str(schema_dir), metrics_registry=registry)
    eng.evaluate("shop.Order", VALID, track="v1")
    checksum = eng.checksum
    eng.close()
    del eng
    gc.collect()
    labels = {"schema": "shop.Order", "track": "v1", "mode": "warn", "action": "accepted"}
    assert registry.get_sample_value("schema_validations_total", labels) == 1
    assert registry.get_sample_value("policy_info", {"checksum": checksum}) is None
