"""Prometheus metrics of the engine, wired in as a hook.

``PolicyEngine`` registers an ``EngineMetrics`` hook on the ``CollectorRegistry`` you pass as
``metrics_registry`` (default: prometheus-client's global ``REGISTRY``; ``metrics=False`` turns
metrics off). The package's parts:

- ``catalogue``: every exported metric, its kind, labels and help (``METRICS``);
- ``labels``: label values that stay bounded whatever producers send (``fold_path``, ``unknown``);
- ``store``: the counting store, plain per-thread ints summed at scrape time;
- ``hook``: ``EngineMetrics``, fed by the engine's hook calls only;
- ``multiprocess``: prometheus-client's multiprocess mode for several processes;
- ``serve``: ``serve_metrics``: ``/metrics``, ``/healthz``, ``/readyz`` and ``/status`` over HTTP.

>>> from prometheus_client import CollectorRegistry
>>> from policy_engine import PolicyEngine
>>> registry = CollectorRegistry()
>>> eng = PolicyEngine(policies=[], registry="schemas", metrics_registry=registry)
>>> _ = eng.evaluate("nobody.Knows", {}, track="v1")
>>> labels = {"schema": "unknown", "track": "v1", "mode": "warn", "action": "skipped"}
>>> registry.get_sample_value("schema_validations_total", labels)
1.0
"""

from policy_engine.metrics.catalogue import (
    DURATION_BUCKETS,
    MAX_PATHS_PER_SERIES,
    METRICS,
    MetricSpec,
    exported_metric_names,
)
from policy_engine.metrics.hook import EngineMetrics, FastEngineMetrics
from policy_engine.metrics.labels import OTHER_PATH, ROOT_PATH, UNKNOWN, fold_path
from policy_engine.metrics.multiprocess import (
    MultiprocessEngineMetrics,
    multiprocess_enabled,
    multiprocess_registry,
)
from policy_engine.metrics.serve import Health, serve_metrics

__all__ = [
    "DURATION_BUCKETS",
    "MAX_PATHS_PER_SERIES",
    "METRICS",
    "OTHER_PATH",
    "ROOT_PATH",
    "UNKNOWN",
    "EngineMetrics",
    "FastEngineMetrics",
    "Health",
    "MetricSpec",
    "MultiprocessEngineMetrics",
    "exported_metric_names",
    "fold_path",
    "multiprocess_enabled",
    "multiprocess_registry",
    "serve_metrics",
]
