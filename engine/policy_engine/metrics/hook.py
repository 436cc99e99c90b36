"""The metrics hook of an engine: counts decisions, reloads, registry traffic and dead letters.

``EngineMetrics`` is a ``DecisionObserver``, a ``ReloadObserver`` and a ``RegistryObserver``
(``policy_engine.hooks``); the DLQ and guardrails report through ``count_dlq`` and
``set_guardrail_tripped``, the consume loop its Redis streams through ``report_stream``.
Everything it needs comes with those calls: the policy set and the registry's listing with each
``ReloadEvent``, the route and its outcome with each ``Decision``. It never holds or asks the
engine.

``FastEngineMetrics`` is also a ``DecisionCounter``: it hands the engine per-route cells of
per-thread ints (``metrics.store``) that the engine counts into itself;
``MultiprocessEngineMetrics`` (``metrics.multiprocess``) into prometheus-client's shared files.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry

from policy_engine.core.route import ANY_THREAD
from policy_engine.hooks import TIMING_SAMPLE, ReloadEvent, outcome_slot
from policy_engine.metrics.catalogue import STREAM_ROLES
from policy_engine.metrics.labels import UNKNOWN, Known, known_from
from policy_engine.metrics.store import Cell, Shard, store_for
from policy_engine.modes import Mode

if TYPE_CHECKING:
    from policy_engine.core.policy_set import PolicySet
    from policy_engine.core.route import Route, Tally
    from policy_engine.decision import Decision

_get_ident = threading.get_ident
#: Schema names whose cells each thread remembers; names past it are looked up each time.
MAX_CACHED_NAMES = 4096


class _Sentinel:
    """Lives in a thread's local storage only, so it dies when the thread does."""


def _add_violations(cell: Cell, decision: Decision) -> None:
    """Count a decision's violations by keyword and folded path into ``cell``."""
    paths = cell.paths
    for violation in decision.violations:
        keywords = paths.get(violation.path)
        if keywords is None:
            keywords = cell.keywords(violation.path)
        keyword = violation.keyword
        keywords[keyword] = keywords.get(keyword, 0) + 1


class EngineMetrics:
    """The metrics hook of one engine: counts decisions, reloads and registry traffic.

    Build it with ``EngineMetrics.create`` (``PolicyEngine`` does, unless ``metrics=False``).
    Engines that share a registry share its series; each engine folds labels with what its own
    registry and policies know (as its reload events told it).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        known_tracks: Iterable[str] = ("v2", "v1"),
        default_mode: Mode = Mode.WARN,
    ) -> None:
        self.clock = clock
        self._base_tracks = tuple(known_tracks)
        self._default_mode = default_mode
        self._known_lock = threading.Lock()
        self._learned_schemas: set[str] = set()
        self._learned_tracks: set[str] = set()
        self._listed: Mapping[str, Iterable[str]] = {}
        self._known: Known = known_from(None, {}, self._base_tracks, default_mode)
        #: When the policy files last loaded successfully (the hook's clock), or ``None``.
        self.last_success: float | None = None
        #: Whether the latest load attempt failed (``policy_reload_failing``).
        self.reload_failing = False

    @staticmethod
    def create(
        registry: CollectorRegistry | None = None,
        *,
        clock: Callable[[], float] = time.time,
        known_tracks: Iterable[str] = ("v2", "v1"),
        default_mode: Mode = Mode.WARN,
        multiprocess: bool | None = None,
    ) -> EngineMetrics:
        """The hook for ``registry`` (default the global one); a multiprocess one when
        prometheus-client runs in multiprocess mode (``multiprocess=None``: detect it)."""
        from policy_engine.metrics.multiprocess import (
            MultiprocessEngineMetrics,
            multiprocess_enabled,
        )

        if multiprocess is None:
            multiprocess = multiprocess_enabled()
        if multiprocess:
            return MultiprocessEngineMetrics(
                clock=clock, known_tracks=known_tracks, default_mode=default_mode
            )
        return FastEngineMetrics(
            registry=registry, clock=clock, known_tracks=known_tracks, default_mode=default_mode
        )

    # -- what is known (label folding, canaries)

    def known_now(self) -> Known:
        """What the registry and the policy set in force know, as the last reload told."""
        return self._known

    def _refresh(self, policy_set: PolicySet | None, listing: Mapping[str, Any] | None) -> None:
        # A listing that failed (None) keeps the last good one: a registry outage during a
        # reload must not turn every schema into "unknown".
        if listing is not None:
            self._listed = dict(listing)
        known = known_from(policy_set, self._listed, self._base_tracks, self._default_mode)
        with self._known_lock:  # names learned at run time stay known
            known.schemas |= self._learned_schemas
            known.tracks |= self._learned_tracks
            self._known = known
        self._forget_labels()

    def _forget_labels(self) -> None:
        """Drop label decisions cached from the previous ``known`` (override to use)."""

    def schema_label(self, schema: str) -> str:
        """``schema`` if the registry or the policies know it, else ``unknown``."""
        return schema if schema in self._known.schemas else UNKNOWN

    def track_label(self, track: str) -> str:
        """``track`` if some known schema has it, else ``unknown``."""
        return track if track in self._known.tracks else UNKNOWN

    def _learn(self, schema: str, track: str) -> None:
        # The registry served a schema for it: it is known, whatever the listing said. Bounded
        # by what the registry holds, not by what producers send.
        known = self._known
        with self._known_lock:
            self._learned_schemas.add(schema)
            self._learned_tracks.add(track)
            known.schemas.add(schema)
            known.tracks.add(track)

    # -- ReloadObserver

    def after_reload(self, event: ReloadEvent) -> None:
        """Count the attempt; when the files loaded, note the time and what is known now (the
        registry may have new schemas even when the policy files did not change)."""
        if event.result != "given":  # a set handed over was not loaded: no reload to count
            self._count("policy_reloads_total", (event.result,))
        if event.result in ("success", "unchanged"):
            self.last_success = self.clock()
        # Held until a load works: the broken files stay broken until someone changes them.
        self.reload_failing = event.result == "error"
        if event.result != "error":
            self._refresh(event.policy_set, event.registry)

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

    def set_guardrail_store(self, up: bool, error: str | None) -> None:
        """Report whether the shared guardrail store answers (a failure counts once)."""
        if not up:
            self._count("policy_guardrail_store_errors_total", ())
        self._set_gauge("policy_guardrail_store_up", (), 1.0 if up else 0.0)

    # -- reported by the consume loop

    def report_stream(
        self,
        stream: str,
        role: str,
        length: int | None,
        group: str | None = None,
        lag: int | None = None,
        pending: int | None = None,
    ) -> None:
        """Report what XINFO says of one Redis stream the consume loop reads or writes.

        Call it at most once a second per stream (the values are gauges: only the latest
        counts), never per message:

        - the source: ``report_stream(source, "source", XINFO STREAM's length, group=the
          consumer group, lag=XINFO GROUPS' "lag" of that group, pending=its "pending")``;
        - the output stream: ``report_stream(output, "output", length)``;
        - the dead-letter stream: ``report_stream(dlq, "dlq", length)`` (its length is the DLQ
          depth).

        ``length`` sets ``consume_stream_length{stream, role}``; with ``group``, ``lag`` and
        ``pending`` set ``consume_group_lag{stream, group}`` and
        ``consume_group_pending{stream, group}``. ``None`` means unknown now (the stream does
        not exist yet, XINFO failed, or Redis reports no lag, as it does after entries past the
        group's last delivered one were deleted): the gauge reads NaN, a gap on a graph that no
        alert fires on, rather than a stale number. Stream and group names become label values:
        pass the names from the operator's configuration (they are bounded), never anything
        read from a payload. ``role`` must be one of ``STREAM_ROLES``; ``lag`` or ``pending``
        without ``group`` is an error.

        >>> from prometheus_client import CollectorRegistry
        >>> hook = EngineMetrics.create(CollectorRegistry(), multiprocess=False)
        >>> hook.report_stream("events", "source", 1200, group="policy-engine", lag=40, pending=3)
        >>> hook.report_stream("events:dlq", "dlq", 17)
        """
        if role not in STREAM_ROLES:
            raise ValueError(f"role {role!r}: one of {', '.join(STREAM_ROLES)}")
        if group is None and (lag is not None or pending is not None):
            raise ValueError("lag and pending are the consumer group's: pass group= too")
        self._set_gauge("consume_stream_length", (stream, role), _gauge_value(length))
        if group is not None:
            self._set_gauge("consume_group_lag", (stream, group), _gauge_value(lag))
            self._set_gauge("consume_group_pending", (stream, group), _gauge_value(pending))

    def _set_gauge(self, name: str, labels: tuple[str, ...], value: float) -> None:
        raise NotImplementedError

    def _count(self, name: str, labels: tuple[str, ...], amount: float = 1.0) -> None:
        raise NotImplementedError

    # -- DecisionObserver

    def after_evaluation(self, decision: Decision, seconds: float | None) -> None:
        """Count one decision and, when it was timed, its duration."""
        raise NotImplementedError


def _gauge_value(value: int | None) -> float:
    """A count as a gauge value; unknown (``None``) as NaN."""
    return float("nan") if value is None else float(value)


class FastEngineMetrics(EngineMetrics):
    """Counts into per-thread ints, summed by the registry's collector at scrape time.

    A ``DecisionCounter``: the engine adds each decision (and each timed duration) to the
    route's tally itself and calls ``count_violations`` only for invalid payloads.
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        known_tracks: Iterable[str] = ("v2", "v1"),
        default_mode: Mode = Mode.WARN,
    ) -> None:
        super().__init__(clock=clock, known_tracks=known_tracks, default_mode=default_mode)
        #: The registry the counts are exported through.
        self.registry = REGISTRY if registry is None else registry
        self._store = store_for(self.registry)
        self._local = threading.local()
        self._shards: list[Shard] = []
        self._store.hooks.add(self)
        #: The cells of tallies every thread shares (the compiled engine's); never retired.
        self._shared = Shard(self, threading.main_thread(), ANY_THREAD)
        self._shared_lock = threading.Lock()
        self._store.add_shard(self._shared)

    # -- DecisionCounter

    def counter_cell(self, route: Route[Any], valid: bool | None, shared: bool = False) -> Tally:
        """A route's tally: the calling thread's, or with ``shared`` the one every thread
        writes. Fold the labels, cache the cell if the names are known, and let the route keep
        the tally when no live one is there."""
        if shared:
            with self._shared_lock:  # two threads must not make two cells of one series
                return self._cell_in(self._shared, route, valid)
        return self._cell_in(self._shard(), route, valid)

    def _cell_in(self, shard: Shard, route: Route[Any], valid: bool | None) -> Tally:
        schema, track = route.schema, route.track
        tracks = shard.names.get(schema)
        cell = tracks.get(track) if tracks is not None else None
        if cell is not None:
            cell.tally.thread = shard.ident  # owned again after _forget_labels disowned it
            self._offer(route, cell.tally)
            return cell.tally
        known = self._known
        if valid is not None and (schema not in known.schemas or track not in known.tracks):
            self._learn(schema, track)
        schema_label = schema if schema in known.schemas else UNKNOWN
        track_label = track if track in known.tracks else UNKNOWN
        cell = shard.cells.get((schema_label, track_label))
        if cell is None:
            cell = Cell(self._store.book(schema_label, track_label), shard)
            shard.cells[(schema_label, track_label)] = cell
        cell.tally.thread = shard.ident
        # The route may keep it whatever its labels: a route lives as long as its policy set
        # (unknown names: a bounded LRU), and labels folded again would give the same cell.
        self._offer(route, cell.tally)
        # Only names that keep their label are cached here: an unknown name may be learned
        # later, and a flood of invented names must not grow memory.
        if schema_label is schema and track_label is track:
            tracks = shard.names.get(schema)
            if tracks is None:
                if len(shard.names) >= MAX_CACHED_NAMES:
                    return cell.tally
                tracks = shard.names[schema] = {}
            tracks[track] = cell
        return cell.tally

    def count_violations(self, decision: Decision, tally: Tally) -> None:
        """The violations of an invalid decision, by keyword and folded path."""
        cell = tally.owner
        assert isinstance(cell, Cell)
        if tally.thread == ANY_THREAD:
            with cell.lock:  # a shared cell: this interpreted code may be interleaved
                _add_violations(cell, decision)
        else:
            _add_violations(cell, decision)

    def after_evaluation(self, decision: Decision, seconds: float | None) -> None:
        """Count one decision made elsewhere than in an engine that counts inline (a
        ``DecisionObserver`` for embedders and tests): its slot, duration and violations."""
        route = decision.route
        tally = route.counter
        if tally is None or tally.thread != _get_ident():  # interpreted: count in our own
            tally = self.counter_cell(route, decision.valid)
        tally.counts[outcome_slot(decision.mode, decision.action, decision.valid)] += 1
        if seconds is not None:
            tally.observe(seconds, TIMING_SAMPLE)
        if decision.valid is False:
            self.count_violations(decision, tally)

    def _shard(self) -> Shard:
        """This thread's shard, made on its first count."""
        try:
            shard: Shard = self._local.shard
        except AttributeError:
            shard = Shard(self, threading.current_thread())
            self._local.shard = shard
            # When the thread ends its thread-local values go, and with them this sentinel:
            # the shard's cells are disowned before any new thread can reuse the ident.
            sentinel = _Sentinel()
            weakref.finalize(sentinel, shard.thread_ended)
            self._local.sentinel = sentinel
            with self._known_lock:  # finished threads' shards now live on in the store only
                self._shards = [s for s in self._shards if s.thread.is_alive()]
                self._shards.append(shard)
            self._store.add_shard(shard)
        return shard

    @staticmethod
    def _offer(route: Route[Any], tally: Tally) -> None:
        """Let the route keep ``tally`` unless a live thread's current one is there already."""
        held = route.counter
        if held is None or held.thread == 0:
            route.counter = tally

    def _forget_labels(self) -> None:
        # Another thread may be reading its names map: clear() is atomic, and a lookup that
        # misses just folds the labels again with the new ``known``. Disowned cells send their
        # routes' next count through counter_cell, which folds again too.
        for shard in [*self._shards, self._shared]:
            shard.names.clear()
            shard.thread_ended()

    def _count(self, name: str, labels: tuple[str, ...], amount: float = 1.0) -> None:
        self._store.inc(name, labels, amount)

    def set_guardrail_tripped(self, schema: str, track: str, tripped: bool) -> None:
        """Report whether the guardrail of ``schema``/``track`` holds it at its baseline."""
        labels = (self.schema_label(schema), self.track_label(track))
        self._set_gauge("policy_guardrail_tripped", labels, 1.0 if tripped else 0.0)

    def _set_gauge(self, name: str, labels: tuple[str, ...], value: float) -> None:
        self._store.set(name, labels, value)


__all__ = ["EngineMetrics", "FastEngineMetrics"]
