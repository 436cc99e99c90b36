"""The catalogue of exported metrics: names, kinds, labels and help texts (stable names).

Pure data, no prometheus-client: dashboards, alert rules and their tests read it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from policy_engine.hooks import TIMING_SAMPLE

#: Distinct ``path`` values kept per (schema, track) in ``schema_violations_total``.
MAX_PATHS_PER_SERIES = 50
#: Upper bounds of ``schema_validation_duration_seconds`` (an evaluate takes microseconds).
DURATION_BUCKETS: tuple[float, ...] = (
    0.000_001,
    0.000_002_5,
    0.000_005,
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.002_5,
    0.01,
    0.1,
    1.0,
)

MetricKind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One exported metric: its name as scraped, kind, label names and help text."""

    name: str
    kind: MetricKind
    labels: tuple[str, ...]
    help: str

    @property
    def sample_names(self) -> tuple[str, ...]:
        """The names its samples carry (``_bucket``/``_sum``/``_count`` for a histogram)."""
        if self.kind == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


#: Every metric the engine exports; names and labels are stable (dashboards depend on them).
METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "schema_validation_failures_total",
        "counter",
        ("schema", "mode"),
        "Payloads that failed validation, by enforcement mode (kept from the old pipeline).",
    ),
    MetricSpec(
        "schema_enforcement_actions_total",
        "counter",
        ("schema", "severity", "action"),
        "Enforcement actions taken: severity=warn/action=logged, severity=error/action=rejected "
        "(kept from the old pipeline).",
    ),
    MetricSpec(
        "schema_validations_total",
        "counter",
        ("schema", "track", "mode", "action"),
        "Payloads evaluated, by the mode they resolved to and the action taken.",
    ),
    MetricSpec(
        "schema_violations_total",
        "counter",
        ("schema", "track", "keyword", "path"),
        "Schema violations by keyword and JSON Pointer path (array indices folded to *; at "
        f"most {MAX_PATHS_PER_SERIES} paths per schema/track, the rest path=other).",
    ),
    MetricSpec(
        "schema_validation_duration_seconds",
        "histogram",
        (),
        "Time PolicyEngine.evaluate took per payload (resolution and validation); one "
        f"evaluation in {TIMING_SAMPLE} is timed and counts {TIMING_SAMPLE} times.",
    ),
    MetricSpec(
        "policy_reloads_total",
        "counter",
        ("result",),
        "Policy reload attempts: success (a new set serves), unchanged, error (the last good "
        "set keeps serving).",
    ),
    MetricSpec(
        "policy_last_reload_success_timestamp_seconds",
        "gauge",
        (),
        "When the policy files last loaded successfully (epoch seconds).",
    ),
    MetricSpec(
        "policy_reload_failing",
        "gauge",
        (),
        "1 while the latest policy load attempt failed (the last good set keeps serving), 0 "
        "once a load succeeds or finds the files unchanged.",
    ),
    MetricSpec(
        "policy_info",
        "gauge",
        ("checksum",),
        "The policy set in force: 1 for its checksum.",
    ),
    MetricSpec(
        "policy_canary_percent",
        "gauge",
        ("schema", "track"),
        "Canary in force (0-100): the share of keys that get the rule's mode, the rest get "
        "its baseline.",
    ),
    MetricSpec(
        "policy_guardrail_tripped",
        "gauge",
        ("schema", "track"),
        "1 while a guardrail holds the schema/track at its baseline, else 0.",
    ),
    MetricSpec(
        "policy_guardrail_store_up",
        "gauge",
        (),
        "1 while the shared guardrail store (GUARDRAIL_STORE) answers, 0 while this replica "
        "decides on its own window because it does not; absent without a store.",
    ),
    MetricSpec(
        "policy_guardrail_store_errors_total",
        "counter",
        (),
        "Times the shared guardrail store became unreachable.",
    ),
    MetricSpec(
        "schema_registry_requests_total",
        "counter",
        ("outcome",),
        "Requests to the schema registry by outcome (ok, not_found, error, timeout, ...).",
    ),
    MetricSpec(
        "schema_registry_cache_total",
        "counter",
        ("result",),
        "Schema cache lookups that decided whether to ask the registry (hit, miss, stale).",
    ),
    MetricSpec(
        "dlq_messages_total",
        "counter",
        ("schema", "reason"),
        "Messages written to the dead-letter queue, by reason.",
    ),
    MetricSpec(
        "consume_stream_length",
        "gauge",
        ("stream", "role"),
        "Entries in a Redis stream the consume loop reads (role=source) or writes (output, "
        "dlq: the DLQ depth), as XINFO last said; NaN while unknown.",
    ),
    MetricSpec(
        "consume_group_lag",
        "gauge",
        ("stream", "group"),
        "Entries of the stream not yet delivered to the consumer group (XINFO GROUPS lag); NaN "
        "while Redis cannot tell.",
    ),
    MetricSpec(
        "consume_group_pending",
        "gauge",
        ("stream", "group"),
        "Entries delivered to the consumer group and not yet acknowledged (XINFO GROUPS "
        "pending); NaN while unknown.",
    ),
)
SPECS = {spec.name: spec for spec in METRICS}

#: Counters fed by hook calls other than decisions (reloads, registry traffic, the DLQ).
HOOK_COUNTERS = frozenset(
    {
        "policy_guardrail_store_errors_total",
        "policy_reloads_total",
        "schema_registry_requests_total",
        "schema_registry_cache_total",
        "dlq_messages_total",
    }
)


#: Gauges set by hook calls rather than derived from the engines at scrape time.
HOOK_GAUGES = (
    "policy_guardrail_tripped",
    "policy_guardrail_store_up",
    "consume_stream_length",
    "consume_group_lag",
    "consume_group_pending",
)
#: ``role`` values of ``consume_stream_length``: what the loop does with the stream.
STREAM_ROLES = ("source", "output", "dlq")


def exported_metric_names() -> frozenset[str]:
    """Every sample name the engine exports (``_total``, ``_bucket``, ... included)."""
    return frozenset(name for spec in METRICS for name in spec.sample_names)


__all__ = [
    "DURATION_BUCKETS",
    "HOOK_COUNTERS",
    "HOOK_GAUGES",
    "MAX_PATHS_PER_SERIES",
    "METRICS",
    "SPECS",
    "STREAM_ROLES",
    "MetricKind",
    "MetricSpec",
    "exported_metric_names",
]
