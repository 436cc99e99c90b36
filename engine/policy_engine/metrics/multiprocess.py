"""Metrics of several processes: prometheus-client's multiprocess mode.

Several processes (``PROMETHEUS_MULTIPROC_DIR`` set before prometheus-client is imported) cannot
share per-thread ints: there the hook writes to real prometheus-client metrics, which keep their
values in the shared directory's files, and ``serve_metrics`` serves them through a
``MultiProcessCollector``. That costs more per payload (one locked ``inc`` per metric).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from policy_engine.hooks import TIMING_SAMPLE, ReloadEvent
from policy_engine.metrics.catalogue import DURATION_BUCKETS, HOOK_COUNTERS, SPECS
from policy_engine.metrics.hook import MAX_CACHED_NAMES, EngineMetrics
from policy_engine.metrics.labels import UNKNOWN, PathBook
from policy_engine.modes import Mode

if TYPE_CHECKING:
    from policy_engine.core.route import Route
    from policy_engine.decision import Decision


def multiprocess_enabled() -> bool:
    """Whether prometheus-client writes metric values to ``PROMETHEUS_MULTIPROC_DIR`` files.

    prometheus-client decides this once, when it is first imported, from the environment.
    """
    from prometheus_client import values

    return bool(getattr(values.ValueClass, "_multiprocess", False))


def multiprocess_registry(path: str | None = None) -> CollectorRegistry:
    """A registry that sums every process's metrics from ``PROMETHEUS_MULTIPROC_DIR`` (or
    ``path``): serve this one, not the registries the processes count into."""
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return registry


class _Objects:
    """The prometheus-client metrics of this process in multiprocess mode (created once)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        def counter(name: str) -> Counter:
            spec = SPECS[name]
            return Counter(spec.name, spec.help, spec.labels, registry=None)

        self.failures = counter("schema_validation_failures_total")
        self.actions = counter("schema_enforcement_actions_total")
        self.validations = counter("schema_validations_total")
        self.violations = counter("schema_violations_total")
        spec = SPECS["schema_validation_duration_seconds"]
        self.duration = Histogram(spec.name, spec.help, buckets=DURATION_BUCKETS, registry=None)
        self.counters = {name: counter(name) for name in HOOK_COUNTERS}

        def gauge(name: str, mode: Any) -> Gauge:
            spec = SPECS[name]
            return Gauge(spec.name, spec.help, spec.labels, registry=None, multiprocess_mode=mode)

        # live*: the files of a dead process are dropped by mark_process_dead (see docs).
        self.info = gauge("policy_info", "livemax")
        self.last_success = gauge("policy_last_reload_success_timestamp_seconds", "livemin")
        self.canary = gauge("policy_canary_percent", "livemax")
        self.guardrail = gauge("policy_guardrail_tripped", "livemax")
        # livemin: 0 while any live process cannot reach the store.
        self.store_up = gauge("policy_guardrail_store_up", "livemin")
        # livemax: 1 while any live process is stuck on a failed load.
        self.reload_failing = gauge("policy_reload_failing", "livemax")
        # livemostrecent: every process samples the same streams; the latest XINFO is right.
        self.streams = {
            name: gauge(name, "livemostrecent")
            for name in ("consume_stream_length", "consume_group_lag", "consume_group_pending")
        }


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

    def __init__(self, schema: str, track: str, book: PathBook) -> None:
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
        *,
        clock: Callable[[], float] = time.time,
        known_tracks: Iterable[str] = ("v2", "v1"),
        default_mode: Mode = Mode.WARN,
    ) -> None:
        super().__init__(clock=clock, known_tracks=known_tracks, default_mode=default_mode)
        self._objects = _objects()
        self._cells: dict[tuple[str, str], _MpCell] = {}
        self._books: dict[tuple[str, str], PathBook] = {}
        self._lock = threading.Lock()
        self._next_canary = float("-inf")
        self._canary_labels: set[tuple[str, str]] = set()
        self._checksum: str | None = None

    def after_evaluation(self, decision: Decision, seconds: float | None) -> None:
        """Count one decision into the shared files (a locked ``inc`` per metric)."""
        if self.clock() >= self._next_canary:
            self._write_policy_gauges()
        route = decision._route
        cell = self._cells.get((route.schema, route.track))
        if cell is None:
            cell = self._cell(route, decision.valid)
        valid, mode, action = decision.valid, decision.mode.value, decision.action.value
        self._child(cell, "validations", (cell.schema, cell.track, mode, action)).inc()
        if seconds is not None:  # one evaluation in TIMING_SAMPLE is timed; it stands for all
            for _ in range(TIMING_SAMPLE):
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

    def _cell(self, route: Route[Any], valid: bool | None) -> _MpCell:
        schema, track = route.schema, route.track
        known = self._known
        if valid is not None:
            self._learn(schema, track)
        schema_label = schema if schema in known.schemas else UNKNOWN
        track_label = track if track in known.tracks else UNKNOWN
        with self._lock:
            book = self._books.setdefault((schema_label, track_label), PathBook())
        cell = _MpCell(schema_label, track_label, book)
        if schema_label is schema and track_label is track and len(self._cells) < MAX_CACHED_NAMES:
            self._cells[(schema, track)] = cell
        return cell

    def _forget_labels(self) -> None:
        self._cells = {}
        self._next_canary = float("-inf")

    def _write_policy_gauges(self) -> None:
        now = self.clock()
        known = self._known
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

    def after_reload(self, event: ReloadEvent) -> None:
        """Count the attempt and rewrite the policy gauges."""
        super().after_reload(event)
        if self.last_success is not None:
            self._objects.last_success.set(self.last_success)
        self._objects.reload_failing.set(1.0 if self.reload_failing else 0.0)
        self._write_policy_gauges()

    def _count(self, name: str, labels: tuple[str, ...], amount: float = 1.0) -> None:
        self._objects.counters[name].labels(*labels).inc(amount)

    def set_guardrail_tripped(self, schema: str, track: str, tripped: bool) -> None:
        """Report whether the guardrail of ``schema``/``track`` holds it at its baseline."""
        labels = (self.schema_label(schema), self.track_label(track))
        self._objects.guardrail.labels(*labels).set(1.0 if tripped else 0.0)

    def _set_gauge(self, name: str, labels: tuple[str, ...], value: float) -> None:
        gauge = {"policy_guardrail_store_up": self._objects.store_up, **self._objects.streams}[name]
        (gauge.labels(*labels) if labels else gauge).set(value)


__all__ = ["MultiprocessEngineMetrics", "multiprocess_enabled", "multiprocess_registry"]
