"""Prometheus metrics of the engine (SPEC §8), wired in as a hook.

``PolicyEngine`` registers an ``EngineMetrics`` hook on the ``CollectorRegistry`` you pass as
``metrics_registry`` (default: prometheus-client's global ``REGISTRY``; ``metrics=False`` turns
metrics off). The hook is a ``DecisionObserver``, a ``ReloadObserver`` and a
``RegistryObserver``; the DLQ and guardrails report through ``count_dlq`` and
``set_guardrail_tripped``.

How counting stays cheap (the budget is 1 µs per payload, metrics and logs together):
prometheus-client's ``Counter.inc`` and ``Histogram.observe`` take a lock each (0.3 µs and
0.6 µs measured), so the hot path does not call them. Per payload the hook adds 1 to a plain
``int`` in a list that belongs to the calling thread (a per-thread *shard*), found through two
dict lookups by the schema and track strings, and bisects the duration into fixed buckets. A
custom ``Collector`` sums the shards when Prometheus scrapes. Each shard has one writer, so no
increment is ever lost without a lock, whatever the interpreter does between the read and the
write of ``+=`` (free-threaded builds included); a scrape may see a payload's count a moment
before its duration, never a wrong total.

Several processes (``PROMETHEUS_MULTIPROC_DIR`` set before prometheus-client is imported) cannot
share per-thread ints: there the hook writes to real prometheus-client metrics, which keep their
values in the shared directory's files, and ``serve_metrics`` serves them through a
``MultiProcessCollector``. That costs more per payload (one locked ``inc`` per metric).

Cardinality stays bounded whatever producers send: a schema name is a label value only if the
registry or the policy set knows it (else ``schema="unknown"``), a track only if some schema has
it (else ``track="unknown"``), and ``schema_violations_total`` keeps at most
``MAX_PATHS_PER_SERIES`` distinct paths per (schema, track), array indices folded to ``*``.

>>> from prometheus_client import CollectorRegistry
>>> from policy_engine import PolicyEngine
>>> registry = CollectorRegistry()
>>> eng = PolicyEngine(policies=[], registry="schemas", metrics_registry=registry)
>>> _ = eng.evaluate("nobody.Knows", {}, track="v1")
>>> labels = {"schema": "unknown", "track": "v1", "mode": "warn", "action": "skipped"}
>>> registry.get_sample_value("schema_validations_total", labels)
1.0
"""

from __future__ import annotations

import logging
import re
import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from policy_engine.decision import Action, Mode
from policy_engine.errors import ConfigError, RegistryError
from policy_engine.policy.resolve import EffectiveRule, rule_for

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from policy_engine.decision import Decision, RouteInfo
    from policy_engine.engine import PolicyEngine
    from policy_engine.policy.load import PolicySet

log = logging.getLogger("policy_engine.metrics")

#: The label value of a schema (or track) neither the registry nor the policies know.
UNKNOWN = "unknown"
#: The ``path`` label of violations past the per-(schema, track) cap.
OTHER_PATH = "other"
#: The ``path`` label of a violation of the payload itself (JSON Pointer ``""``).
ROOT_PATH = "(root)"
#: Distinct ``path`` values kept per (schema, track) in ``schema_violations_total``.
MAX_PATHS_PER_SERIES = 50
#: A ``path`` label longer than this is cut (a producer's key names are not bounded).
MAX_PATH_LABEL = 200
#: Schema names whose cells each thread remembers; names past it are looked up each time.
MAX_CACHED_NAMES = 4096
#: Raw paths remembered per (schema, track) with their label; others are folded each time.
MAX_CACHED_PATHS = 4096
#: Most ``policy_canary_percent`` series (one per known schema/track with a rule).
MAX_CANARY_SERIES = 5000
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


#: Every metric of SPEC §8, plus ``schema_violations_total``; names and labels are stable.
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
        "Time PolicyEngine.evaluate took per payload (resolution and validation).",
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
)
_SPEC = {spec.name: spec for spec in METRICS}

# The counts of one (schema, track) cell: MODE_OFFSET[mode] + ACTION_OFFSET.
_MODES = (Mode.OFF, Mode.WARN, Mode.STRICT)
_A_ACCEPTED, _A_LOGGED, _A_REJECTED, _A_SKIPPED, _A_UNVALIDATED_REJECT = range(5)
_ACTION_OF = (Action.ACCEPTED, Action.LOGGED, Action.REJECTED, Action.SKIPPED, Action.REJECTED)
_WIDTH = 5
_CELL_SIZE = _WIDTH * len(_MODES)
# Enum members bound once: comparing with ``is`` costs a few ns, hashing a StrEnum ~90 ns.
_OFF, _WARN, _STRICT = _MODES
_ACCEPTED, _LOGGED, _REJECTED = Action.ACCEPTED, Action.LOGGED, Action.REJECTED
_INDEX_SEGMENT = re.compile(r"(?<=/)(?:0|[1-9][0-9]*)(?=/|$)")
_BOUNDS = DURATION_BUCKETS
_LE: tuple[str, ...] = tuple(
    cast(Callable[[float], str], floatToGoString)(b) for b in (*_BOUNDS, float("inf"))
)


def fold_path(path: str) -> str:
    """The ``path`` label of a JSON Pointer: array indices as ``*``, the root as ``(root)``.

    >>> fold_path("/bars/3/close")
    '/bars/*/close'
    """
    if not path:
        return ROOT_PATH
    folded = _INDEX_SEGMENT.sub("*", path)
    if len(folded) > MAX_PATH_LABEL:
        folded = folded[: MAX_PATH_LABEL - 1] + "…"
    return folded


def multiprocess_enabled() -> bool:
    """Whether prometheus-client writes metric values to ``PROMETHEUS_MULTIPROC_DIR`` files.

    prometheus-client decides this once, when it is first imported, from the environment.
    """
    from prometheus_client import values

    return bool(getattr(values.ValueClass, "_multiprocess", False))


def serve_metrics(
    port: int, addr: str = "0.0.0.0", registry: CollectorRegistry | None = None
) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``/metrics`` over HTTP on ``port`` from a daemon thread; for embedders.

    ``registry`` defaults to the global one, or, in multiprocess mode, to a fresh registry
    reading every process's files through a ``MultiProcessCollector``. Returns the server and
    its thread (``server.shutdown()`` stops it; ``port=0`` picks a free port:
    ``server.server_port``).
    """
    if registry is None:
        registry = multiprocess_registry() if multiprocess_enabled() else REGISTRY
    return start_http_server(port, addr=addr, registry=registry)


def multiprocess_registry(path: str | None = None) -> CollectorRegistry:
    """A registry that sums every process's metrics from ``PROMETHEUS_MULTIPROC_DIR`` (or
    ``path``): serve this one, not the registries the processes count into."""
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return registry


# ---------------------------------------------------------------------------- label folding


class _PathBook:
    """The ``path`` labels of one (schema, track) series: at most ``MAX_PATHS_PER_SERIES``.

    ``labels`` maps raw JSON Pointers to their label; it is read without the lock (a dict read
    is atomic) and written by any thread, bounded by ``MAX_CACHED_PATHS``.
    """

    __slots__ = ("admitted", "labels", "lock")

    def __init__(self) -> None:
        self.admitted: set[str] = set()
        self.labels: dict[str, str] = {}
        self.lock = threading.Lock()

    def label(self, path: str) -> str:
        """The label of ``path``: folded, or ``other`` once the series has its 50 paths."""
        folded = fold_path(path)
        if folded not in self.admitted:
            with self.lock:
                if folded not in self.admitted:
                    if len(self.admitted) >= MAX_PATHS_PER_SERIES:
                        folded = OTHER_PATH
                    else:
                        self.admitted.add(folded)
        if len(self.labels) < MAX_CACHED_PATHS:
            self.labels[path] = folded
        return folded


class _Known:
    """What the registry and the policy set know, for label folding; replaced whole on reload.

    ``schemas``/``tracks`` also learn, at run time, any name the registry served a schema for.
    ``rules`` are the effective rules behind ``policy_canary_percent``.
    """

    __slots__ = ("checksum", "rules", "schemas", "tracks")

    def __init__(
        self,
        checksum: str | None,
        schemas: set[str],
        tracks: set[str],
        rules: tuple[EffectiveRule, ...],
    ) -> None:
        self.checksum = checksum
        self.schemas = schemas
        self.tracks = tracks
        self.rules = rules


def _known_from(
    policy_set: PolicySet | None,
    registry: Mapping[str, Iterable[str]],
    tracks: Iterable[str],
    default_mode: Mode,
) -> _Known:
    """Names to keep as labels, and the rules with a canary to report."""
    schemas = set(registry)
    all_tracks = set(tracks)
    for listed in registry.values():
        all_tracks.update(listed)
    rules: list[EffectiveRule] = []
    if policy_set is not None:
        schemas.update(policy_set.exact)
        for entry in policy_set.entries:
            all_tracks.update(entry.rule.tracks or ())
        preferred = next(iter(tracks), "v2")
        for name in sorted(schemas):
            match, _ = policy_set.match(name)
            if match is None:
                continue
            names = set(registry.get(name, ())) | set(match.rule.tracks or ())
            for track in sorted(names or {preferred}):
                rule, _ = rule_for(policy_set, name, track, default_mode)
                if rule.ref is not None:
                    rules.append(rule)
        if len(rules) > MAX_CANARY_SERIES:
            log.warning(
                "%d schema/track pairs have a policy rule; policy_canary_percent reports the "
                "first %d",
                len(rules),
                MAX_CANARY_SERIES,
            )
            del rules[MAX_CANARY_SERIES:]
    checksum = policy_set.checksum if policy_set is not None else None
    return _Known(checksum, schemas, all_tracks, tuple(rules))


# ---------------------------------------------------------------------------- the fast store


class _Cell:
    """The counts of one (schema label, track label) in one thread's shard.

    ``violations`` maps a path label to its counts per keyword; ``paths`` maps raw JSON
    Pointers to the same inner dicts, so a repeated path costs one lookup by the raw string
    (no label folding, no tuple built and hashed).
    """

    __slots__ = ("book", "counts", "paths", "violations")

    def __init__(self, book: _PathBook) -> None:
        self.book = book
        self.counts = [0] * _CELL_SIZE
        self.violations: dict[str, dict[str, int]] = {}
        self.paths: dict[str, dict[str, int]] = {}

    def keywords(self, path: str) -> dict[str, int]:
        """The keyword counts of a raw path not seen yet: fold it, remember it (bounded)."""
        label = self.book.labels.get(path) or self.book.label(path)
        counts = self.violations.get(label)
        if counts is None:
            counts = self.violations[label] = {}
        if len(self.paths) < MAX_CACHED_PATHS:
            self.paths[path] = counts
        return counts


class _Shard:
    """One hook's counts written by one thread; only that thread writes them.

    ``names`` is the fast path: raw schema name -> raw track -> cell (known names only).
    """

    __slots__ = ("buckets", "cells", "names", "owner", "thread", "total")

    def __init__(self, owner: EngineMetrics, thread: threading.Thread) -> None:
        self.owner = weakref.ref(owner)
        self.thread = thread
        self.names: dict[str, dict[str, _Cell]] = {}
        self.cells: dict[tuple[str, str], _Cell] = {}
        self.buckets = [0] * (len(_BOUNDS) + 1)
        self.total = 0.0

    @property
    def retired(self) -> bool:
        """No more writes can come: its thread ended or its hook is gone."""
        return self.owner() is None or not self.thread.is_alive()


_T = TypeVar("_T")


def _snapshot(items: Callable[[], Iterable[_T]]) -> list[_T]:
    # A dict another thread inserts into may change size while a free-threaded build copies
    # it; with the GIL list() is atomic and the first try always succeeds.
    for _ in range(100):
        try:
            return list(items())
        except RuntimeError:
            continue
    return []


class _Store(Collector):
    """Every count of one ``CollectorRegistry``, shared by the engines that report to it.

    It is the registry's collector: ``collect`` sums the shards into metric families.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.shards: list[_Shard] = []
        self.retired = _Shard.__new__(_Shard)  # the sum of shards nobody writes any more
        self.retired.cells, self.retired.names = {}, {}
        self.retired.buckets, self.retired.total = [0] * (len(_BOUNDS) + 1), 0.0
        self.books: dict[tuple[str, str], _PathBook] = {}
        self.hooks: weakref.WeakSet[EngineMetrics] = weakref.WeakSet()
        self.counts: dict[tuple[str, tuple[str, ...]], float] = {}
        self.gauges: dict[tuple[str, tuple[str, ...]], float] = {}

    # -- written by hooks

    def book(self, schema: str, track: str) -> _PathBook:
        """The path book of a (schema label, track label) series, shared by every thread."""
        book = self.books.get((schema, track))
        if book is None:
            with self.lock:
                book = self.books.setdefault((schema, track), _PathBook())
        return book

    def add_shard(self, shard: _Shard) -> None:
        """Start summing ``shard``; fold shards nobody writes any more into one."""
        with self.lock:
            self._retire()
            self.shards.append(shard)

    def inc(self, name: str, labels: tuple[str, ...], amount: float = 1.0) -> None:
        """Add to a counter that is not on the hot path (reloads, registry, DLQ)."""
        with self.lock:
            self.counts[(name, labels)] = self.counts.get((name, labels), 0.0) + amount

    def set(self, name: str, labels: tuple[str, ...], value: float) -> None:
        """Set a gauge that is not derived from the engines (guardrails)."""
        with self.lock:
            self.gauges[(name, labels)] = value

    def _retire(self) -> None:
        # Called with the lock held.
        keep: list[_Shard] = []
        for shard in self.shards:
            if shard.retired:
                _merge(self.retired, shard)
            else:
                keep.append(shard)
        self.shards = keep

    # -- read by the registry

    def describe(self) -> Iterator[Metric]:
        """Every family without samples, so the registry can refuse duplicated names."""
        for spec in METRICS:
            yield _family(spec)

    def collect(self) -> Iterator[Metric]:
        """Sum every shard into the metric families of SPEC §8."""
        with self.lock:
            self._retire()
            shards = [*self.shards, self.retired]
            counts = dict(self.counts)
            gauges = dict(self.gauges)
        cells: dict[tuple[str, str], list[int]] = {}
        violations: dict[tuple[str, str, str, str], int] = {}
        buckets = [0] * (len(_BOUNDS) + 1)
        total = 0.0
        for shard in shards:
            for label, cell in _snapshot(shard.cells.items):
                summed = cells.setdefault(label, [0] * _CELL_SIZE)
                for i, n in enumerate(cell.counts):
                    summed[i] += n
                for path, keywords in _snapshot(cell.violations.items):
                    for keyword, n in _snapshot(keywords.items):
                        key = (*label, keyword, path)
                        violations[key] = violations.get(key, 0) + n
            for i, n in enumerate(shard.buckets):
                buckets[i] += n
            total += shard.total
        yield from _cell_families(cells, violations)
        yield _histogram(buckets, total)
        hooks = list(self.hooks)
        yield from _policy_families(hooks)
        for spec in METRICS:
            if spec.name in _HOOK_COUNTERS:
                counter = _counter(spec.name)
                for (name, labels), value in sorted(counts.items()):
                    if name == spec.name:
                        counter.add_metric(labels, value)
                yield counter
        guardrails = _gauge("policy_guardrail_tripped")
        for (_, labels), value in sorted(gauges.items()):
            guardrails.add_metric(labels, value)
        yield guardrails


_HOOK_COUNTERS = frozenset(
    {
        "policy_reloads_total",
        "schema_registry_requests_total",
        "schema_registry_cache_total",
        "dlq_messages_total",
    }
)


def _merge(into: _Shard, shard: _Shard) -> None:
    for label, cell in _snapshot(shard.cells.items):
        target = into.cells.get(label)
        if target is None:
            target = into.cells[label] = _Cell(cell.book)
        for i, n in enumerate(cell.counts):
            target.counts[i] += n
        for path, keywords in _snapshot(cell.violations.items):
            into_keywords = target.violations.setdefault(path, {})
            for keyword, n in _snapshot(keywords.items):
                into_keywords[keyword] = into_keywords.get(keyword, 0) + n
    for i, n in enumerate(shard.buckets):
        into.buckets[i] += n
    into.total += shard.total


def _family(spec: MetricSpec) -> Metric:
    labels = list(spec.labels)
    if spec.kind == "counter":
        return CounterMetricFamily(spec.name, spec.help, labels=labels)
    if spec.kind == "gauge":
        return GaugeMetricFamily(spec.name, spec.help, labels=labels)
    return HistogramMetricFamily(spec.name, spec.help, labels=labels)


def _counter(name: str) -> CounterMetricFamily:
    spec = _SPEC[name]
    return CounterMetricFamily(spec.name, spec.help, labels=list(spec.labels))


def _gauge(name: str) -> GaugeMetricFamily:
    spec = _SPEC[name]
    return GaugeMetricFamily(spec.name, spec.help, labels=list(spec.labels))


def _cell_families(
    cells: Mapping[tuple[str, str], list[int]],
    violations: Mapping[tuple[str, str, str, str], int],
) -> Iterator[Metric]:
    validations = _counter("schema_validations_total")
    failures: dict[tuple[str, str], int] = {}
    actions: dict[tuple[str, str, str], int] = {}
    for (schema, track), counts in sorted(cells.items()):
        for m, mode in enumerate(_MODES):
            base = m * _WIDTH
            by_action: dict[Action, int] = {}
            for a, action in enumerate(_ACTION_OF):
                if counts[base + a]:
                    by_action[action] = by_action.get(action, 0) + counts[base + a]
            for action, n in by_action.items():
                validations.add_metric([schema, track, mode.value, action.value], float(n))
            invalid = counts[base + _A_LOGGED] + counts[base + _A_REJECTED]
            if invalid:
                key2 = (schema, mode.value)
                failures[key2] = failures.get(key2, 0) + invalid
            for severity, action_name, n in (
                ("warn", "logged", counts[base + _A_LOGGED]),
                (
                    "error",
                    "rejected",
                    counts[base + _A_REJECTED] + counts[base + _A_UNVALIDATED_REJECT],
                ),
            ):
                if n:
                    key3 = (schema, severity, action_name)
                    actions[key3] = actions.get(key3, 0) + n
    failure_family = _counter("schema_validation_failures_total")
    for labels2, n in sorted(failures.items()):
        failure_family.add_metric(labels2, float(n))
    action_family = _counter("schema_enforcement_actions_total")
    for labels3, n in sorted(actions.items()):
        action_family.add_metric(labels3, float(n))
    violation_family = _counter("schema_violations_total")
    for labels4, n in sorted(violations.items()):
        violation_family.add_metric(labels4, float(n))
    yield failure_family
    yield action_family
    yield validations
    yield violation_family


def _histogram(buckets: list[int], total: float) -> Metric:
    spec = _SPEC["schema_validation_duration_seconds"]
    family = HistogramMetricFamily(spec.name, spec.help)
    cumulative, rows = 0, []
    for le, n in zip(_LE, buckets, strict=True):
        cumulative += n
        rows.append((le, float(cumulative)))
    family.add_metric([], rows, sum_value=total)
    return family


def _policy_families(hooks: list[EngineMetrics]) -> Iterator[Metric]:
    info = _gauge("policy_info")
    stamp = _gauge("policy_last_reload_success_timestamp_seconds")
    canary = _gauge("policy_canary_percent")
    checksums: set[str] = set()
    last: float | None = None
    canaries: dict[tuple[str, str], float] = {}
    for hook in hooks:
        known = hook._known_now()
        if known.checksum is not None:
            checksums.add(known.checksum)
        if hook.last_success is not None:
            last = hook.last_success if last is None else max(last, hook.last_success)
        now = hook.clock()
        for rule in known.rules:
            canaries[(rule.schema, rule.track)] = rule.canary_at(now)
    for checksum in sorted(checksums):
        info.add_metric([checksum], 1.0)
    if last is not None:
        stamp.add_metric([], last)
    for labels, value in sorted(canaries.items()):
        canary.add_metric(labels, value)
    yield info
    yield stamp
    yield canary


_STORES: weakref.WeakKeyDictionary[CollectorRegistry, _Store] = weakref.WeakKeyDictionary()
_STORES_LOCK = threading.Lock()


def _store_for(registry: CollectorRegistry) -> _Store:
    """The store registered on ``registry``, registered once however many engines use it."""
    with _STORES_LOCK:
        store = _STORES.get(registry)
        if store is None:
            store = _Store()
            try:
                registry.register(store)
            except ValueError as exc:  # a metric of ours is registered there already
                raise ConfigError(
                    f"metrics_registry already has a metric named like the engine's: {exc}"
                ) from exc
            _STORES[registry] = store
        return store


# ---------------------------------------------------------------------------- the hooks


class EngineMetrics:
    """The metrics hook of one engine: counts decisions, reloads and registry traffic.

    Build it with ``EngineMetrics.create`` (``PolicyEngine`` does, unless ``metrics=False``).
    Engines that share a registry share its series; each engine folds labels with what its own
    registry and policies know.
    """

    def __init__(
        self,
        engine: PolicyEngine | None = None,
        *,
        clock: Callable[[], float] = time.time,
        known_tracks: Iterable[str] = ("v2", "v1"),
        default_mode: Mode = Mode.WARN,
    ) -> None:
        self._engine = weakref.ref(engine) if engine is not None else None
        self.clock = clock
        self._base_tracks = tuple(known_tracks)
        self._default_mode = default_mode
        self._known: _Known | None = None
        self._known_lock = threading.Lock()
        self._learned_schemas: set[str] = set()
        self._learned_tracks: set[str] = set()
        self._listed: Mapping[str, Iterable[str]] = {}
        #: When the policy files last loaded successfully (the hook's clock), or ``None``.
        self.last_success: float | None = None

    @staticmethod
    def create(
        engine: PolicyEngine | None = None,
        registry: CollectorRegistry | None = None,
        *,
        clock: Callable[[], float] = time.time,
        known_tracks: Iterable[str] = ("v2", "v1"),
        default_mode: Mode = Mode.WARN,
        multiprocess: bool | None = None,
    ) -> EngineMetrics:
        """The hook for ``registry`` (default the global one); a multiprocess one when
        prometheus-client runs in multiprocess mode (``multiprocess=None``: detect it)."""
        if multiprocess is None:
            multiprocess = multiprocess_enabled()
        if multiprocess:
            return MultiprocessEngineMetrics(
                engine, clock=clock, known_tracks=known_tracks, default_mode=default_mode
            )
        return FastEngineMetrics(
            engine,
            registry=registry,
            clock=clock,
            known_tracks=known_tracks,
            default_mode=default_mode,
        )

    # -- what is known (label folding, canaries)

    def _known_now(self) -> _Known:
        """What the registry and the policy set in force know (worked out on first use)."""
        known = self._known
        if known is None:
            engine = self._engine() if self._engine is not None else None
            if engine is not None and not hasattr(engine, "_state"):  # still being built
                return _known_from(None, {}, self._base_tracks, self._default_mode)
            known = self._refresh(engine.policy_set if engine is not None else None)
        return known

    def _refresh(self, policy_set: PolicySet | None) -> _Known:
        # A listing that fails keeps the last good one: a registry outage during a reload must
        # not turn every schema into "unknown".
        registry = self._listed
        engine = self._engine() if self._engine is not None else None
        listing = engine.registry_listing if engine is not None else None
        if listing is not None:
            # The reload that called us has just listed the registry (or kept its last good
            # listing when it could not): one GET /subjects per reload, not two.
            registry = self._listed = dict(listing)
        elif engine is not None and engine.settings.registry_enabled:
            try:
                registry = self._listed = dict(engine.source.known_schemas())
            except RegistryError as exc:
                log.warning("cannot list the registry's schemas for metric labels: %s", exc)
            except Exception:  # a broken source must not break a reload
                log.exception("listing the registry's schemas for metric labels failed")
        known = _known_from(policy_set, registry, self._base_tracks, self._default_mode)
        with self._known_lock:  # names learned at run time stay known
            known.schemas |= self._learned_schemas
            known.tracks |= self._learned_tracks
            self._known = known
        self._forget_labels()
        return known

    def _forget_labels(self) -> None:
        """Drop label decisions cached from the previous ``known`` (override to use)."""

    def schema_label(self, schema: str) -> str:
        """``schema`` if the registry or the policies know it, else ``unknown``."""
        return schema if schema in self._known_now().schemas else UNKNOWN

    def track_label(self, track: str) -> str:
        """``track`` if some known schema has it, else ``unknown``."""
        return track if track in self._known_now().tracks else UNKNOWN

    def _learn(self, schema: str, track: str) -> None:
        # The registry served a schema for it: it is known, whatever the listing said. Bounded
        # by what the registry holds, not by what producers send.
        known = self._known_now()
        with self._known_lock:
            self._learned_schemas.add(schema)
            self._learned_tracks.add(track)
            known.schemas.add(schema)
            known.tracks.add(track)

    # -- ReloadObserver

    def after_reload(
        self, result: str, policy_set: PolicySet | None, error: BaseException | None
    ) -> None:
        """Count the attempt; when the files loaded, note the time and list what is known again
        (the registry may have new schemas even when the policy files did not change)."""
        self._count("policy_reloads_total", (result,))
        if result in ("success", "unchanged"):
            self.last_success = self.clock()
            self._refresh(policy_set)

    # -- RegistryObserver

    def registry_request(self, outcome: str) -> None:
        """One request to the registry (``ok``, ``not_found``, ``error``, ``timeout``, ...)."""
        self._count("schema_registry_requests_total", (outcome,))

    def registry_cache(self, result: str) -> None:
        """One cache lookup that decided whether to ask the registry (``hit``, ``miss``,
        ``stale``)."""
        self._count("schema_registry_cache_total", (result,))

    # -- reported by the DLQ and guardrails

    def count_dlq(self, schema: str, reason: str, amount: int = 1) -> None:
        """``amount`` messages of ``schema`` went to the dead-letter queue because of ``reason``
        (a short fixed word such as ``rejected``; it becomes a label value)."""
        self._count("dlq_messages_total", (self.schema_label(schema), reason), amount)

    def set_guardrail_tripped(self, schema: str, track: str, tripped: bool) -> None:
        """Report whether the guardrail of ``schema``/``track`` holds it at its baseline."""
        raise NotImplementedError

    def _count(self, name: str, labels: tuple[str, ...], amount: float = 1.0) -> None:
        raise NotImplementedError

    # -- DecisionObserver

    def after_evaluation(self, decision: Decision, seconds: float) -> None:
        """Count one decision and its duration."""
        raise NotImplementedError


class FastEngineMetrics(EngineMetrics):
    """Counts into per-thread ints, summed by the registry's collector at scrape time."""

    def __init__(
        self,
        engine: PolicyEngine | None = None,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        known_tracks: Iterable[str] = ("v2", "v1"),
        default_mode: Mode = Mode.WARN,
    ) -> None:
        super().__init__(engine, clock=clock, known_tracks=known_tracks, default_mode=default_mode)
        #: The registry the counts are exported through.
        self.registry = REGISTRY if registry is None else registry
        self._store = _store_for(self.registry)
        self._local = threading.local()
        self._shards: list[_Shard] = []
        self._store.hooks.add(self)

    def after_evaluation(self, decision: Decision, seconds: float) -> None:
        """Count one decision: two dict lookups, a few ``is`` tests, ``+= 1``, a bisect."""
        try:
            shard: _Shard = self._local.shard
        except AttributeError:
            shard = self._new_shard()
        route = decision._route
        valid = decision.valid
        tracks = shard.names.get(route.schema)
        cell = tracks.get(route.track) if tracks is not None else None
        if cell is None:
            cell = self._cell(shard, route, valid)
        mode = decision.mode
        action = decision.action
        index = _WIDTH if mode is _WARN else (2 * _WIDTH if mode is _STRICT else 0)
        if action is _ACCEPTED:
            pass
        elif action is _LOGGED:
            index += _A_LOGGED
        elif action is _REJECTED:
            index += _A_REJECTED if valid is False else _A_UNVALIDATED_REJECT
        else:
            index += _A_SKIPPED
        cell.counts[index] += 1
        shard.buckets[bisect_left(_BOUNDS, seconds)] += 1
        shard.total += seconds
        if valid is False:  # inlined: one call less per invalid payload
            paths = cell.paths
            for violation in decision.violations:
                keywords = paths.get(violation.path)
                if keywords is None:
                    keywords = cell.keywords(violation.path)
                keyword = violation.keyword
                keywords[keyword] = keywords.get(keyword, 0) + 1

    def _new_shard(self) -> _Shard:
        shard = _Shard(self, threading.current_thread())
        self._local.shard = shard
        with self._known_lock:  # finished threads' shards now live on in the store only
            self._shards = [s for s in self._shards if s.thread.is_alive()]
            self._shards.append(shard)
        self._store.add_shard(shard)
        return shard

    def _cell(self, shard: _Shard, route: RouteInfo, valid: bool | None) -> _Cell:
        """The cell of a (schema, track) not cached yet: fold the labels, cache if known."""
        schema, track = route.schema, route.track
        known = self._known_now()
        if valid is not None and (schema not in known.schemas or track not in known.tracks):
            self._learn(schema, track)
        schema_label = schema if schema in known.schemas else UNKNOWN
        track_label = track if track in known.tracks else UNKNOWN
        cell = shard.cells.get((schema_label, track_label))
        if cell is None:
            cell = _Cell(self._store.book(schema_label, track_label))
            shard.cells[(schema_label, track_label)] = cell
        # Only names that keep their label are cached: an unknown name may be learned later,
        # and a flood of invented names must not grow memory.
        if schema_label is schema and track_label is track:
            tracks = shard.names.get(schema)
            if tracks is None:
                if len(shard.names) >= MAX_CACHED_NAMES:
                    return cell
                tracks = shard.names[schema] = {}
            tracks[track] = cell
        return cell

    def _forget_labels(self) -> None:
        # Another thread may be reading its names map: clear() is atomic, and a lookup that
        # misses just folds the labels again with the new ``known``.
        for shard in list(self._shards):
            shard.names.clear()

    def _count(self, name: str, labels: tuple[str, ...], amount: float = 1.0) -> None:
        self._store.inc(name, labels, amount)

    def set_guardrail_tripped(self, schema: str, track: str, tripped: bool) -> None:
        """Report whether the guardrail of ``schema``/``track`` holds it at its baseline."""
        labels = (self.schema_label(schema), self.track_label(track))
        self._store.set("policy_guardrail_tripped", labels, 1.0 if tripped else 0.0)


# ---------------------------------------------------------------------------- multiprocess


class _Objects:
    """The prometheus-client metrics of this process in multiprocess mode (created once)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        def counter(name: str) -> Counter:
            spec = _SPEC[name]
            return Counter(spec.name, spec.help, spec.labels, registry=None)

        self.failures = counter("schema_validation_failures_total")
        self.actions = counter("schema_enforcement_actions_total")
        self.validations = counter("schema_validations_total")
        self.violations = counter("schema_violations_total")
        spec = _SPEC["schema_validation_duration_seconds"]
        self.duration = Histogram(spec.name, spec.help, buckets=_BOUNDS, registry=None)
        self.counters = {name: counter(name) for name in _HOOK_COUNTERS}

        def gauge(name: str, mode: Any) -> Gauge:
            spec = _SPEC[name]
            return Gauge(spec.name, spec.help, spec.labels, registry=None, multiprocess_mode=mode)

        # live*: the files of a dead process are dropped by mark_process_dead (see docs).
        self.info = gauge("policy_info", "livemax")
        self.last_success = gauge("policy_last_reload_success_timestamp_seconds", "livemin")
        self.canary = gauge("policy_canary_percent", "livemax")
        self.guardrail = gauge("policy_guardrail_tripped", "livemax")


_OBJECTS: _Objects | None = None
_OBJECTS_LOCK = threading.Lock()


def _objects() -> _Objects:
    global _OBJECTS  # noqa: PLW0603 - one set of metrics per process, created on first use
    with _OBJECTS_LOCK:
        if _OBJECTS is None:
            _OBJECTS = _Objects()
        return _OBJECTS


class _MpCell:
    """Cached label children of one (schema label, track label) in multiprocess mode."""

    __slots__ = ("book", "children", "schema", "track")

    def __init__(self, schema: str, track: str, book: _PathBook) -> None:
        self.schema = schema
        self.track = track
        self.book = book
        self.children: dict[Any, Any] = {}


class MultiprocessEngineMetrics(EngineMetrics):
    """Writes to prometheus-client metrics, whose values live in ``PROMETHEUS_MULTIPROC_DIR``.

    Serve them with ``serve_metrics`` (or ``multiprocess_registry()``), which sums every
    process's files. ``policy_canary_percent`` is written on reload and whenever a ramp step
    passes (checked on each payload).
    """

    def __init__(
        self,
        engine: PolicyEngine | None = None,
        *,
        clock: Callable[[], float] = time.time,
        known_tracks: Iterable[str] = ("v2", "v1"),
        default_mode: Mode = Mode.WARN,
    ) -> None:
        super().__init__(engine, clock=clock, known_tracks=known_tracks, default_mode=default_mode)
        self._objects = _objects()
        self._cells: dict[tuple[str, str], _MpCell] = {}
        self._books: dict[tuple[str, str], _PathBook] = {}
        self._lock = threading.Lock()
        self._next_canary = float("-inf")
        self._canary_labels: set[tuple[str, str]] = set()
        self._checksum: str | None = None

    def after_evaluation(self, decision: Decision, seconds: float) -> None:
        """Count one decision into the shared files (a locked ``inc`` per metric)."""
        if self.clock() >= self._next_canary:
            self._write_policy_gauges()
        route = decision._route
        cell = self._cells.get((route.schema, route.track))
        if cell is None:
            cell = self._cell(route, decision.valid)
        valid, mode, action = decision.valid, decision.mode.value, decision.action.value
        self._child(cell, "validations", (cell.schema, cell.track, mode, action)).inc()
        self._objects.duration.observe(seconds)
        if valid is False:
            self._child(cell, "failures", (cell.schema, mode)).inc()
        if action == "logged":
            self._child(cell, "actions", (cell.schema, "warn", "logged")).inc()
        elif action == "rejected":
            self._child(cell, "actions", (cell.schema, "error", "rejected")).inc()
        if valid is False:
            book = cell.book
            for violation in decision.violations:
                path = book.labels.get(violation.path) or book.label(violation.path)
                labels = (cell.schema, cell.track, violation.keyword, path)
                self._child(cell, "violations", labels).inc()

    def _child(self, cell: _MpCell, metric: str, labels: tuple[str, ...]) -> Any:
        key = (metric, labels)
        child = cell.children.get(key)
        if child is None:
            child = cell.children[key] = getattr(self._objects, metric).labels(*labels)
        return child

    def _cell(self, route: RouteInfo, valid: bool | None) -> _MpCell:
        schema, track = route.schema, route.track
        known = self._known_now()
        if valid is not None:
            self._learn(schema, track)
        schema_label = schema if schema in known.schemas else UNKNOWN
        track_label = track if track in known.tracks else UNKNOWN
        with self._lock:
            book = self._books.setdefault((schema_label, track_label), _PathBook())
        cell = _MpCell(schema_label, track_label, book)
        if schema_label is schema and track_label is track and len(self._cells) < MAX_CACHED_NAMES:
            self._cells[(schema, track)] = cell
        return cell

    def _forget_labels(self) -> None:
        self._cells = {}
        self._next_canary = float("-inf")

    def _write_policy_gauges(self) -> None:
        now = self.clock()
        known = self._known_now()
        objects = self._objects
        if known.checksum != self._checksum:
            if self._checksum is not None:
                objects.info.labels(self._checksum).set(0)
            if known.checksum is not None:
                objects.info.labels(known.checksum).set(1)
            self._checksum = known.checksum
        written: set[tuple[str, str]] = set()
        upcoming = float("inf")
        for rule in known.rules:
            objects.canary.labels(rule.schema, rule.track).set(rule.canary_at(now))
            written.add((rule.schema, rule.track))
            for at in rule.ramp_times:
                if at > now:
                    upcoming = min(upcoming, at)
                    break
        for labels in self._canary_labels - written:  # a rule a reload removed
            objects.canary.labels(*labels).set(0)
        self._canary_labels = written
        self._next_canary = upcoming

    def after_reload(
        self, result: str, policy_set: PolicySet | None, error: BaseException | None
    ) -> None:
        """Count the attempt and rewrite the policy gauges."""
        super().after_reload(result, policy_set, error)
        if self.last_success is not None:
            self._objects.last_success.set(self.last_success)
        self._write_policy_gauges()

    def _count(self, name: str, labels: tuple[str, ...], amount: float = 1.0) -> None:
        self._objects.counters[name].labels(*labels).inc(amount)

    def set_guardrail_tripped(self, schema: str, track: str, tripped: bool) -> None:
        """Report whether the guardrail of ``schema``/``track`` holds it at its baseline."""
        labels = (self.schema_label(schema), self.track_label(track))
        self._objects.guardrail.labels(*labels).set(1.0 if tripped else 0.0)


def exported_metric_names() -> frozenset[str]:
    """Every sample name the engine exports (``_total``, ``_bucket``, ... included)."""
    return frozenset(name for spec in METRICS for name in spec.sample_names)


__all__ = [
    "DURATION_BUCKETS",
    "MAX_PATHS_PER_SERIES",
    "METRICS",
    "OTHER_PATH",
    "ROOT_PATH",
    "UNKNOWN",
    "EngineMetrics",
    "FastEngineMetrics",
    "MetricSpec",
    "MultiprocessEngineMetrics",
    "exported_metric_names",
    "fold_path",
    "multiprocess_enabled",
    "multiprocess_registry",
    "serve_metrics",
]
