"""``PolicyEngine``: resolves every payload to off, warn or strict and validates it (SPEC §3-§5).

Per payload the work is: one read of the current policy state, a dict lookup for the
precomputed route of (schema, track), the key and its murmur3 bucket when the canary needs it,
and one validator call. Everything else (rule inheritance, glob matching, validator compilation)
happens once per policy set or schema version.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from os import PathLike
from types import TracebackType
from typing import TYPE_CHECKING, Any

from policy_engine.decision import (
    Action,
    Decision,
    Explanation,
    KeySource,
    Mode,
    RouteInfo,
    Violation,
)
from policy_engine.errors import ConfigError, PolicyError, RegistryError, SchemaValidationError
from policy_engine.guardrail import Guardrails
from policy_engine.hooks import DecisionObserver, ModeAdjuster, RegistryObserver, ReloadObserver
from policy_engine.metrics import EngineMetrics
from policy_engine.policy.bucket import (
    bucket_for,
    canary_threshold,
    key_from_payload,
    key_text,
    payload_hash_key,
)
from policy_engine.policy.load import EMPTY_POLICY_SET, ParseCache, PolicySet, load_policy_set
from policy_engine.policy.resolve import EffectiveRule, rule_for
from policy_engine.reload import EngineStatus, PolicyWatcher, watch_roots
from policy_engine.report import DriftRecorder, DriftReport
from policy_engine.schemas import LOG_INTERVAL_SECONDS, SchemaCache, SchemaSlot
from policy_engine.settings import Settings
from policy_engine.sources import SchemaSource, open_source

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger("policy_engine")
logging.getLogger("policy_engine").addHandler(logging.NullHandler())  # the application decides
decision_log = logging.getLogger("policy_engine.decisions")

#: Routes cached per policy set; names past this (invented by a bad producer) are resolved
#: on every payload instead of growing memory.
MAX_ROUTES = 10_000
#: A warn-mode failure is logged at most once per this many seconds per (schema, track); the
#: next log line says how many were suppressed in between.
FAILURE_LOG_INTERVAL = 10.0
#: Most "schema not in the registry" log lines per minute, all schemas together.
MISSING_LOG_BUDGET = 20
#: Buckets remembered per route (key -> bucket); keys past this are hashed every time.
MAX_CACHED_BUCKETS = 4096

PolicyPaths = str | PathLike[str] | Sequence[str | PathLike[str]]


class _Route(RouteInfo):
    """One (schema, track) under one policy set: its rule and schema slot, precomputed.

    ``canary_state`` is ``(canary, threshold, fixed mode or None, valid from, valid until)``:
    for a ramp it is recomputed only when ``now`` leaves the step it was computed for, so the
    hot path compares two floats instead of searching the ramp. It is one tuple so that
    threads always read a consistent state.
    """

    __slots__ = (
        "buckets",
        "canary_state",
        "expires",
        "guarded",
        "key_field",
        "mode_in",
        "mode_out",
        "slot",
    )

    def __init__(
        self,
        rule: EffectiveRule,
        slot: SchemaSlot,
        checksum: str,
        expires: float,
        guard: bool = True,
    ) -> None:
        super().__init__(rule, checksum)
        self.slot = slot
        #: Whether this route's guardrail is checked and fed (only routes whose rule has one).
        self.guarded = guard and rule.guardrail is not None
        self.expires = expires  # when a track chosen by the registry must be chosen again
        path = rule.key_path
        self.key_field = path[0] if path is not None and len(path) == 1 else None
        self.mode_in = rule.mode
        self.mode_out = rule.baseline
        self.buckets: dict[str, int] = {}
        self.canary_state = self.canary_at(float("-inf"))

    def canary_at(self, now: float) -> tuple[float, int, Mode | None, float, float]:
        """The canary state in force at ``now`` (stored, then returned)."""
        rule = self.effective
        times = rule.ramp_times
        if not times:
            state = (rule.canary, canary_threshold(rule.canary), rule.fixed_mode(), _NEG, _POS)
        else:
            i = bisect_right(times, now)
            since = times[i - 1] if i > 0 else _NEG
            until = times[i] if i < len(times) else _POS
            canary = rule.canary_at(now)
            threshold = canary_threshold(canary)
            fixed: Mode | None = None
            if rule.mode is rule.baseline or threshold >= 10_000:
                fixed = rule.mode
            elif threshold <= 0:
                fixed = rule.baseline
            state = (canary, threshold, fixed, since, until)
        if now != _NEG:
            self.canary_state = state
        return state

    def resolve(
        self, payload: Any, key: Any, now: float
    ) -> tuple[Mode, float, str | None, KeySource | None, int]:
        """SPEC §3.3-3.5 for one payload: ``(mode, canary, key, key source, bucket)``.

        When the canary cannot split keys (0 %, 100 %, mode equal to baseline) no key is looked
        up and the bucket is -1: the Decision works them out later if anyone asks.
        """
        canary, threshold, mode, since, until = self.canary_state
        if not since <= now < until:  # a ramp moved to another step
            canary, threshold, mode, since, until = self.canary_at(now)
        key_source: KeySource | None = None
        if key is not None:
            key_source = "argument"
            if key.__class__ is not str:
                key = key_text(key)
        if mode is not None:
            return mode, canary, key, key_source, -1
        if key is None:
            field = self.key_field
            if field is not None:
                if payload.__class__ is dict or isinstance(payload, dict):
                    key = payload.get(field)
                    if key is not None and key.__class__ is not str:
                        key = key_text(key)
            elif self.key_path is not None:
                key = key_from_payload(payload, self.key_path)
            if key is None:
                key = payload_hash_key(payload)
                bucket = bucket_for(self.salt_prefix, key)  # unique per payload: not cached
                return (
                    self.mode_in if bucket < threshold else self.mode_out,
                    canary,
                    key,
                    "hash",
                    bucket,
                )
            key_source = "payload"
        # Keys repeat (producers, symbols): their buckets are remembered, up to a bound.
        bucket = self.buckets.get(key, -1)
        if bucket < 0:
            bucket = bucket_for(self.salt_prefix, key)
            if len(self.buckets) < MAX_CACHED_BUCKETS:
                self.buckets[key] = bucket
        return (
            (self.mode_in if bucket < threshold else self.mode_out),
            canary,
            key,
            key_source,
            bucket,
        )


_NEG = float("-inf")
_POS = float("inf")
_new_decision = object.__new__
_perf_counter = time.perf_counter
# Enum members bound once: `Mode.OFF` is a class attribute lookup costing ~70 ns on the hot path.
_OFF, _STRICT = Mode.OFF, Mode.STRICT
_ACCEPTED, _LOGGED, _REJECTED, _SKIPPED = (
    Action.ACCEPTED,
    Action.LOGGED,
    Action.REJECTED,
    Action.SKIPPED,
)


class _PolicyState:
    """A policy set and the routes resolved from it; swapped whole on reload."""

    __slots__ = ("checksum", "policy_set", "routes", "rules", "warned_ties")

    def __init__(self, policy_set: PolicySet) -> None:
        self.policy_set = policy_set
        self.checksum = policy_set.checksum
        self.routes: dict[tuple[str, str | None], _Route] = {}
        self.rules: dict[tuple[str, str], EffectiveRule] = {}  # resolved once per (schema, track)
        self.warned_ties: set[str] = set()


class PolicyEngine:
    """Decides, per payload, off / warn / strict from the policy files, and validates.

    >>> eng = PolicyEngine(policies="policies", registry="schemas")    # doctest: +SKIP
    >>> d = eng.evaluate("telemetry.FeedbackEvent", {"producer_id": "p-1"}, key="p-1")
    >>> d.mode, d.action                                                 # doctest: +SKIP
    (<Mode.WARN: 'warn'>, <Action.LOGGED: 'logged'>)

    ``evaluate`` never raises for a bad payload; ``enforce`` raises ``SchemaValidationError`` when
    strict mode rejects. The engine is thread-safe: every evaluation sees exactly one policy set.
    """

    def __init__(
        self,
        policies: PolicyPaths | PolicySet | None = None,
        registry: str | PathLike[str] | SchemaSource | None = None,
        *,
        settings: Settings | None = None,
        clock: Callable[[], float] = time.time,
        hooks: Sequence[object] = (),
        metrics: bool = True,
        metrics_registry: CollectorRegistry | None = None,
        guardrails: bool = True,
        record_drift: bool = False,
    ) -> None:
        self.settings = settings or Settings()
        self._clock = clock
        #: The Prometheus metrics hook (SPEC §8; ``policy_engine.metrics``), ``None`` when
        #: ``metrics=False``. Counts go to ``metrics_registry`` (default: the global registry).
        self.metrics: EngineMetrics | None = None
        if metrics:
            self.metrics = EngineMetrics.create(
                self,
                metrics_registry,
                clock=clock,
                known_tracks=(self.settings.prefer_track, self.settings.fallback_track),
                default_mode=self.settings.enforcement,
            )
            hooks = (*hooks, self.metrics)
        elif metrics_registry is not None:
            raise ConfigError("metrics_registry was given but metrics=False turns metrics off")
        #: Drift per schema/track of the traffic seen, for ``report()`` (``record_drift=True``).
        self.drift: DriftRecorder | None = DriftRecorder() if record_drift else None
        if self.drift is not None:
            hooks = (*hooks, self.drift)
        self._adjusters: tuple[ModeAdjuster, ...] = tuple(
            h for h in hooks if isinstance(h, ModeAdjuster)
        )
        self._observers: tuple[DecisionObserver, ...] = tuple(
            h for h in hooks if isinstance(h, DecisionObserver)
        )
        self._reload_observers: tuple[ReloadObserver, ...] = tuple(
            h for h in hooks if isinstance(h, ReloadObserver)
        )
        #: Handed to sources that talk to a registry (they report requests and cache lookups).
        self.registry_observers: tuple[RegistryObserver, ...] = tuple(
            h for h in hooks if isinstance(h, RegistryObserver)
        )
        # Guardrails (SPEC §3.6, §9): checked and fed only on routes whose rule has one, so
        # other schemas pay nothing for them (see _Route.guarded).
        self.guardrails = Guardrails(
            clock,
            listeners=[self.metrics.set_guardrail_tripped] if self.metrics is not None else [],
        )
        self._guardrails_on = guardrails
        kinds = (ModeAdjuster, DecisionObserver, ReloadObserver, RegistryObserver)
        unknown = [h for h in hooks if not isinstance(h, kinds)]
        if unknown:
            raise ConfigError(
                f"hook {unknown[0]!r} has none of adjust_mode(), after_evaluation(), "
                "after_reload(), registry_request()/registry_cache()"
            )
        self._force = self.settings.force_mode
        self._force_note = f"capped by POLICY_FORCE_MODE={self._force}" if self._force else ""
        if not self.settings.registry_enabled:
            self._force, self._force_note = Mode.OFF, "REGISTRY_ENABLED=false: not validated"
        self.source = open_source(
            registry if registry is not None else self.settings.registry_url,
            self.settings,
            self.registry_observers,
        )
        self._schemas = SchemaCache(
            self.source,
            backend=self.settings.validator_backend,
            ttl=self.settings.registry_cache_ttl,
            prefer_track=self.settings.prefer_track,
            fallback_track=self.settings.fallback_track,
            clock=clock,
        )
        # (schema, track, rejected?) -> [last logged at, suppressed since]
        self._failure_log: dict[tuple[str, str, bool], list[float]] = {}
        self._missing_log: list[float] = [float("-inf"), 0]
        self._reload_lock = threading.Lock()
        self._parse_cache = ParseCache()
        self._registry_listing: dict[str, tuple[str, ...]] | None = None
        self._last_error: PolicyError | None = None
        self._last_error_at: float | None = None
        self._last_success_at: float | None = None
        self._watcher: PolicyWatcher | None = None
        if isinstance(policies, PolicySet):
            self._paths: tuple[str, ...] = ()
            self._state = _PolicyState(policies)
        else:
            if policies is None:
                self._paths = self.settings.policy_paths
                self._missing_ok = not self.settings.policy_paths_explicit
            else:
                items = [policies] if isinstance(policies, str | PathLike) else list(policies)
                self._paths = tuple(str(p) for p in items)
                self._missing_ok = False
            self._state = _PolicyState(EMPTY_POLICY_SET)
            self.reload()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> PolicyEngine:
        """An engine configured from SPEC §7's environment variables.

        With ``POLICY_WATCH=true`` (the default) it hot-reloads its policy files; ``close()`` it
        (or use it as a context manager) to stop the watcher thread.
        """
        engine = cls(settings=Settings.from_env(environ), **kwargs)
        if engine.settings.policy_watch:
            engine.start_watching()
        return engine

    # ------------------------------------------------------------------ policy set

    @property
    def policy_set(self) -> PolicySet:
        """The policy set in force."""
        return self._state.policy_set

    @property
    def checksum(self) -> str:
        """The checksum (version) of the policy set in force."""
        return self._state.checksum

    def reload(self) -> bool:
        """Load the policy files again and swap them in whole; ``True`` if anything changed.

        On any error raises ``PolicyLoadError`` and the policy set in force keeps serving; the
        error is kept in ``status()`` until a reload succeeds.
        """
        if not self._paths:
            return False
        with self._reload_lock:
            try:
                policy_set = load_policy_set(
                    self._paths,
                    default_mode=self.settings.enforcement,
                    known_schemas=self._known_schema_names(),
                    missing_ok=self._missing_ok,
                    cache=self._parse_cache,
                )
            except PolicyError as exc:
                self._last_error = exc
                self._last_error_at = time.time()
                self._notify_reload("error", exc)
                raise
            self._last_error = None
            self._last_success_at = time.time()
            if policy_set.checksum == self._state.checksum:  # the checksum covers every file
                self._notify_reload("unchanged", None)
                return False
            for warning in policy_set.warnings:
                log.warning("policy: %s", warning)
            self._state = self._warm_state(policy_set)  # one attribute write: the atomic swap
            log.info(
                "policy set %s loaded from %d file(s)",
                policy_set.checksum,
                len(policy_set.files),
                extra={"checksum": policy_set.checksum, "files": len(policy_set.files)},
            )
            self._notify_reload("success", None)
            return True

    def _warm_state(self, policy_set: PolicySet) -> _PolicyState:
        """A state for ``policy_set`` with the routes traffic already uses resolved up front.

        Runs in the reloading thread, so evaluation never pays for resolving a big set. A rule
        that did not change keeps its resolved form and its remembered buckets.
        """
        old = self._state
        state = _PolicyState(policy_set)
        now = self._clock()
        for (schema, track), old_route in list(old.routes.items()):
            pair = (schema, old_route.track)
            rule = state.rules.get(pair)
            if rule is None:
                rule, _ = rule_for(policy_set, schema, old_route.track, self.settings.enforcement)
                if rule == old_route.effective:
                    rule = old_route.effective
                state.rules[pair] = rule
            same = rule is old_route.effective
            route = _Route(
                rule,
                old_route.slot,
                state.checksum,
                old_route.expires,
                self._guardrails_on,
            )
            if same:
                route.buckets = old_route.buckets
            route.canary_at(now)
            state.routes[(schema, track)] = route
        return state

    def _notify_reload(self, result: str, error: BaseException | None) -> None:
        for observer in self._reload_observers:
            try:
                observer.after_reload(result, self._state.policy_set, error)
            except Exception:
                log.exception("hook %r failed in after_reload; ignored", observer)

    def status(self) -> EngineStatus:
        """The policy set in force, the last reload error (if the latest attempt failed) and
        when the files last loaded successfully."""
        state = self._state
        return EngineStatus(
            checksum=state.checksum,
            files=state.policy_set.files,
            last_error=self._last_error,
            last_error_at=self._last_error_at,
            last_success_at=self._last_success_at,
            watching=self._watcher is not None and self._watcher.running,
            guardrails=tuple(self.guardrails.tripped(self._clock())),
        )

    @property
    def registry_listing(self) -> Mapping[str, tuple[str, ...]] | None:
        """The registry's schemas and tracks as the last reload that could list them saw them
        (``None`` before any); the metrics hook folds labels with it instead of asking again."""
        return self._registry_listing

    def _known_schema_names(self) -> list[str]:
        if not self.settings.registry_enabled:
            return []
        try:
            listing = dict(self.source.known_schemas())
        except RegistryError as exc:
            log.warning("cannot list the registry's schemas for the glob check: %s", exc)
            return []
        self._registry_listing = listing
        return list(listing)

    # ------------------------------------------------------------------ evaluation

    def evaluate(
        self, schema: str, payload: Any, key: Any = None, track: str | None = None
    ) -> Decision:
        """Resolve the mode of ``payload`` and validate it; never raises for a bad payload."""
        observers = self._observers
        started = _perf_counter() if observers else 0.0
        now = self._clock()
        route = self._state.routes.get((schema, track))
        if route is None or now >= route.expires:
            route = self._route(self._state, schema, track, now)
        mode, canary, key, key_source, bucket = route.resolve(payload, key, now)

        note = ""
        if route.guarded and self.guardrails.tripped_count:  # SPEC §3.6: baseline if tripped
            held = self.guardrails.adjust_mode(route.effective, mode, now)
            if held is not None:
                mode, note = held
        if self._adjusters:
            mode, note = self._adjust(route.effective, mode, now, note)
        force = self._force
        if force is not None and mode.rank > force.rank:
            mode, note = force, self._force_note

        if mode is _OFF:
            valid: bool | None = None
            action = _SKIPPED
            violations: tuple[Violation, ...] = ()
        else:
            slot = route.slot
            if now >= slot.expires:
                self._schemas.refresh(slot, now)
            compiled = slot.compiled
            if compiled is None:
                valid, action, violations, note = self._no_schema(
                    route.effective, mode, slot, note, now
                )
            else:
                try:
                    valid = compiled.quick_is_valid(payload)
                except Exception:  # not JSON data, too deep, ...: check() says what
                    valid = False
                if valid:
                    action = _ACCEPTED
                    violations = ()
                else:
                    violations = compiled.check(payload)
                    if violations:
                        action = _REJECTED if mode is _STRICT else _LOGGED
                    else:  # quick and full answers disagree only for odd payloads; trust full
                        valid, action = True, _ACCEPTED

        # Decision.__init__ by hand: object.__new__ plus slot stores costs ~40 % less than a
        # call through type.__call__ with eleven arguments (measured, benchmarks/).
        decision = _new_decision(Decision)
        decision._route = route
        decision.mode = mode
        decision.valid = valid
        decision.action = action
        decision.violations = violations
        decision.canary = canary
        decision._key = key
        decision._key_source = key_source
        decision._bucket = bucket
        decision._payload = payload
        decision._note = note
        if route.guarded and mode is _STRICT:
            self.guardrails.record(route.effective, action is _REJECTED, now)
        if valid is False:
            self._log_failure(decision, now)
        if observers:  # inlined rather than a method: one call less per payload
            seconds = _perf_counter() - started
            for observer in observers:
                try:
                    observer.after_evaluation(decision, seconds)
                except Exception:
                    log.exception("hook %r failed in after_evaluation; ignored", observer)
        return decision

    def resolve_mode(
        self, schema: str, payload: Any = None, key: Any = None, track: str | None = None
    ) -> Mode:
        """The mode ``payload`` (or ``key``) would get, without validating anything.

        The decision half of ``evaluate``: rule, canary, bucket, guardrails and the force cap.
        """
        now = self._clock()
        route = self._state.routes.get((schema, track))
        if route is None or now >= route.expires:
            route = self._route(self._state, schema, track, now)
        mode = self._step_back(route, route.resolve(payload, key, now)[0], now)[0]
        force = self._force
        if force is not None and mode.rank > force.rank:
            mode = force
        return mode

    def enforce(
        self, schema: str, payload: Any, key: Any = None, track: str | None = None
    ) -> Decision:
        """``evaluate``, then raise ``SchemaValidationError`` if the payload was rejected."""
        decision = self.evaluate(schema, payload, key=key, track=track)
        raise_for_rejection(decision)
        return decision

    async def aevaluate(
        self, schema: str, payload: Any, key: Any = None, track: str | None = None
    ) -> Decision:
        """``evaluate`` for asyncio: registry I/O never blocks the event loop."""
        if self.settings.registry_enabled and self._schemas.needs_fetch(
            schema, track, self._clock()
        ):
            await self._schemas.aprepare(schema, track, self._clock())
        return self.evaluate(schema, payload, key=key, track=track)

    async def aenforce(
        self, schema: str, payload: Any, key: Any = None, track: str | None = None
    ) -> Decision:
        """``enforce`` for asyncio."""
        decision = await self.aevaluate(schema, payload, key=key, track=track)
        raise_for_rejection(decision)
        return decision

    def explain(
        self,
        schema: str,
        track: str | None = None,
        key: Any = None,
        at: float | datetime | None = None,
    ) -> Explanation:
        """Which rule governs ``schema``/``track``, the canary in force ``at``, and a key's fate.

        ``at`` is a timezone-aware ``datetime`` or epoch seconds (default: now). Without ``key``
        there is no bucket; ``mode`` is then the rule's mode (what keys inside the canary get).
        """
        if isinstance(at, datetime):
            if at.utcoffset() is None:
                raise ValueError("explain(at=...) needs a timezone-aware datetime")
            at = at.timestamp()
        now = self._clock() if at is None else float(at)
        route = self._route(self._state, schema, track, now, cache=False)
        track = route.track
        rule = route.effective
        canary = rule.canary_at(now)
        threshold = canary_threshold(canary)
        parts = []
        if rule.ref is None:
            parts.append(
                f"no policy rule matches {schema}; the global default "
                f"REGISTRY_ENFORCEMENT={self.settings.enforcement} applies to every key"
            )
        else:
            parts.append(f"rule {rule.ref.pattern} at {rule.ref.file}:{rule.ref.line}")
            if rule.ramp_times and now < rule.ramp_times[0]:
                parts.append(f"before the ramp's first step: canary {canary:g}%")
            elif rule.ramp_times:
                parts.append(f"ramp step in force gives canary {canary:g}%")
            else:
                parts.append(f"canary {canary:g}%")
            parts.append(f"mode {rule.mode} inside the canary, baseline {rule.baseline} outside")
        bucket: int | None = None
        in_canary: bool | None = None
        if key is not None:
            text = key_text(key)
            bucket = bucket_for(route.salt_prefix, text)
            in_canary = bucket < threshold
            mode = rule.mode if in_canary else rule.baseline
            parts.append(
                f"key {text!r} has bucket {bucket} (salt {rule.salt!r}), "
                f"{'inside' if in_canary else 'outside'} the first {threshold} buckets"
            )
        else:
            mode = route.canary_at(now)[2] or rule.mode
        mode, note = self._step_back(route, mode, now)
        if note:
            parts.append(note)
        if self._force is not None and mode.rank > self._force.rank:
            mode = self._force
            parts.append(self._force_note)
        parts.append(f"-> {mode}")
        return Explanation(
            schema=schema,
            track=track,
            mode=mode,
            baseline=rule.baseline,
            canary=canary,
            bucket=bucket,
            in_canary=in_canary,
            rule=rule.ref,
            reason="; ".join(parts),
            at=now,
        )

    # ------------------------------------------------------------------ internals

    def _route(
        self,
        state: _PolicyState,
        schema: str,
        track: str | None,
        now: float,
        *,
        cache: bool = True,
    ) -> _Route:
        """Resolve (schema, track) once; ``track=None`` asks the registry which track to use."""
        expires = _POS
        chosen = track
        if chosen is None and not self.settings.registry_enabled:
            chosen = self.settings.prefer_track  # REGISTRY_ENABLED=false: the registry is not asked
        elif chosen is None:
            chosen, expires = self._schemas.choose_track(schema, now)
        # One rule object per (schema, track) and policy set, however the payload named its
        # track: guardrails key their state on it, and equal objects compare by identity.
        shared = state.rules.get((schema, chosen))
        if shared is not None:
            rule, rival = shared, None
        else:
            rule, rival = rule_for(state.policy_set, schema, chosen, self.settings.enforcement)
            if len(state.rules) < MAX_ROUTES:
                state.rules[(schema, chosen)] = rule
        tie = rival is not None and rule.ref is not None and schema not in state.warned_ties
        if tie and len(state.warned_ties) < MAX_ROUTES:
            assert rival is not None
            assert rule.ref is not None
            state.warned_ties.add(schema)
            log.warning(
                "schema %s matches the equally specific globs %r and %r (%s); using %r",
                schema,
                rule.ref.pattern,
                rival.pattern,
                rival.where,
                rule.ref.pattern,
            )
        route = _Route(
            rule, self._schemas.slot(schema, chosen), state.checksum, expires, self._guardrails_on
        )
        route.canary_at(now)
        routes = state.routes
        if cache and (len(routes) < MAX_ROUTES or (schema, track) in routes):
            routes[(schema, track)] = route
        return route

    def _step_back(self, route: _Route, mode: Mode, now: float) -> tuple[Mode, str]:
        """Guardrail, then adjuster hooks: the mode after both, and why (off the hot path)."""
        note = ""
        if route.guarded:
            held = self.guardrails.adjust_mode(route.effective, mode, now)
            if held is not None:
                mode, note = held
        if self._adjusters:
            mode, note = self._adjust(route.effective, mode, now, note)
        return mode, note

    def _adjust(
        self, rule: EffectiveRule, mode: Mode, now: float, note: str = ""
    ) -> tuple[Mode, str]:
        for adjuster in self._adjusters:
            try:
                adjusted = adjuster.adjust_mode(rule, mode, now)
            except Exception:
                log.exception("hook %r failed in adjust_mode; ignored", adjuster)
                continue
            if adjusted is not None:
                if adjusted[0].rank > mode.rank:
                    # Hooks step back (a guardrail falls to baseline); only policies add strictness.
                    log.warning(
                        "hook %r tried to raise %s to %s; ignored", adjuster, mode, adjusted[0]
                    )
                    continue
                mode, note = adjusted
        return mode, note

    def _no_schema(
        self, rule: EffectiveRule, mode: Mode, slot: SchemaSlot, note: str, now: float
    ) -> tuple[bool | None, Action, tuple[Violation, ...], str]:
        """SPEC §4: no usable schema, so ``on_registry_error`` decides."""
        error = slot.error
        why = str(error) if error is not None else "schema not fetched"
        rejected = rule.on_registry_error == "reject" and mode is Mode.STRICT
        if slot.missing:
            self._log_missing(slot, rejected, now)
        if rejected:
            violation = Violation("", "registry", f"no usable schema: {why}")
            extra = f"no usable schema ({why}); rejected"
            return None, Action.REJECTED, (violation,), f"{note}; {extra}" if note else extra
        extra = f"no usable schema ({why}); skipped"
        return None, Action.SKIPPED, (), f"{note}; {extra}" if note else extra

    def _log_missing(self, slot: SchemaSlot, rejected: bool, now: float) -> None:
        # A schema the registry does not have is usually a producer's typo: say so, once per
        # minute per (schema, track), and at most MISSING_LOG_BUDGET lines a minute in all, so
        # a producer inventing names cannot flood the logs either.
        if now - slot.last_logged < LOG_INTERVAL_SECONDS:
            return
        window = self._missing_log
        if now - window[0] >= 60.0:
            window[0], window[1] = now, 0
        if window[1] >= MISSING_LOG_BUDGET:
            return
        window[1] += 1
        slot.last_logged = now
        log.warning(
            "schema %s track %s is not in the registry; its payloads are %s",
            slot.schema,
            slot.track,
            "rejected (on_registry_error: reject)" if rejected else "skipped, not validated",
            extra={"schema": slot.schema, "track": slot.track},
        )

    def _log_failure(self, decision: Decision, now: float) -> None:
        # Rate-limited per (schema, track), logged and rejected apart (so "similar suppressed"
        # is true): a bad producer cannot flood the logs. Payload values (quoted by violation
        # messages) are logged only with POLICY_LOG_VALUES=true.
        rejected = decision.action is _REJECTED
        pair = (decision.schema, decision.track, rejected)
        entry = self._failure_log.get(pair)
        if entry is None:
            if len(self._failure_log) >= MAX_ROUTES:
                return
            entry = self._failure_log.setdefault(pair, [float("-inf"), 0.0])
        if now - entry[0] < FAILURE_LOG_INTERVAL:
            entry[1] += 1
            return
        suppressed = int(entry[1])
        entry[0], entry[1] = now, 0.0
        first = decision.violations[0] if decision.violations else None
        extra: dict[str, Any] = {
            "schema": decision.schema,
            "track": decision.track,
            "mode": decision.mode.value,
            "action": decision.action.value,
            "rule": str(decision.rule) if decision.rule else None,
            "checksum": decision.policy_checksum,
            "violation_count": len(decision.violations),
            "suppressed": suppressed,
        }
        detail = ""
        if self.settings.log_values:
            extra["violations"] = [v.to_dict() for v in decision.violations]
            detail = f" ({first.message})" if first else ""
        decision_log.log(
            logging.ERROR if rejected else logging.WARNING,
            "%s %s %s: %d violation(s), first %s %s%s%s",
            decision.schema,
            decision.track,
            decision.action,
            len(decision.violations),
            (first.path or "(root)") if first else "",
            first.keyword if first else "",
            detail,
            f" ({suppressed} similar suppressed)" if suppressed else "",
            extra=extra,
        )

    # ------------------------------------------------------------------ lifecycle

    def report(self) -> DriftReport:
        """Drift of the traffic this engine evaluated: failure rates, failing paths, worst keys
        and a readiness verdict per schema/track (see ``policy_engine.report``).

        Needs ``PolicyEngine(..., record_drift=True)``, which counts every decision.
        """
        if self.drift is None:
            raise ConfigError("drift is not recorded; build the engine with record_drift=True")
        return self.drift.report()

    def start_watching(self) -> bool:
        """Hot-reload the policy files when their directories change (SPEC §9).

        Runs a background thread (stopped by ``close()``); returns ``False`` when there is
        nothing to watch (a ``PolicySet`` was given, or no policy directory exists).
        """
        if self._watcher is not None and self._watcher.running:
            return True
        roots = watch_roots(self._paths)
        if not roots:
            return False
        self._watcher = PolicyWatcher(self, roots)
        self._watcher.start()
        log.info("watching %s for policy changes", ", ".join(str(r) for r in roots))
        return True

    def stop_watching(self) -> None:
        """Stop the hot-reload thread, if one runs."""
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None

    def close(self) -> None:
        """Stop watching and release the schema source."""
        self.stop_watching()
        self.source.close()

    def __enter__(self) -> PolicyEngine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"PolicyEngine(policy_set={self.checksum}, files={len(self.policy_set.files)}, "
            f"registry={self.source.description!r})"
        )


def raise_for_rejection(decision: Decision) -> None:
    """Raise ``SchemaValidationError`` if ``decision`` is a rejection; otherwise do nothing."""
    if decision.action is _REJECTED:
        raise SchemaValidationError(decision)
