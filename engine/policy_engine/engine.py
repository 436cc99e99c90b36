"""``PolicyEngine``: resolves every payload to off, warn or strict and validates it.

Per payload the work is: one read of the current policy state, a dict lookup for the
precomputed route of (schema, track), the key and its murmur3 bucket when the canary needs it,
and one validator call. Everything else (rule inheritance, glob matching, validator compilation)
happens once per policy set or schema version.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from os import PathLike
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from policy_engine.core.bucket import canary_threshold
from policy_engine.core.guardrail import Guardrails
from policy_engine.core.policy_set import EMPTY_POLICY_SET, PolicySet
from policy_engine.core.resolve import EffectiveRule, rule_for
from policy_engine.core.route import ANY_THREAD, ModeLimits, Route, Tally
from policy_engine.decision import Decision, Explanation, Violation
from policy_engine.errors import ConfigError, PolicyError, RegistryError, SchemaValidationError
from policy_engine.hooks import (
    CELL_SLOTS,
    SLOT_ACCEPTED,
    SLOT_LOGGED,
    SLOT_REJECTED,
    SLOT_REJECTED_UNVALIDATED,
    SLOT_SKIPPED,
    SLOTS_PER_MODE,
    TIMING_SAMPLE,
    DecisionCounter,
    DecisionObserver,
    ModeAdjuster,
    RegistryObserver,
    ReloadEvent,
    ReloadObserver,
    ReloadResult,
)
from policy_engine.modes import Action, Mode
from policy_engine.schemas import LOG_INTERVAL_SECONDS, SchemaCache, SchemaSlot
from policy_engine.settings import Settings
from policy_engine.sources import SchemaSource, open_schema_source

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from policy_engine.guardrail_store import RedisGuardrailStore
    from policy_engine.metrics import EngineMetrics
    from policy_engine.policy.load import ParseCache
    from policy_engine.reload import EngineStatus, PolicyWatcher
    from policy_engine.report import DriftRecorder, DriftReport

log = logging.getLogger("policy_engine")
logging.getLogger("policy_engine").addHandler(logging.NullHandler())  # the application decides
decision_log = logging.getLogger("policy_engine.decisions")

#: Routes cached per policy set for names the registry or the policies know.
MAX_ROUTES = 10_000
#: Routes of names nobody knows (a producer's typo or invention), kept apart in a small LRU so a
#: flood of invented names can neither grow memory nor push real schemas out of the cache.
MAX_UNKNOWN_ROUTES = 1_024
#: A warn-mode failure is logged at most once per this many seconds per (schema, track); the
#: next log line says how many were suppressed in between.
FAILURE_LOG_INTERVAL = 10.0
#: Most "schema not in the registry" log lines per minute, all schemas together.
MISSING_LOG_BUDGET = 20

PolicyPaths = str | PathLike[str] | Sequence[str | PathLike[str]]
EngineRoute = Route[SchemaSlot]

_POS: Final = float("inf")
_perf_counter: Final = time.perf_counter
_get_ident: Final = threading.get_ident


def _counts_atomically() -> bool:
    """Whether ``tally.counts[slot] += 1`` in ``evaluate`` can never lose an increment to another
    thread: true when this module is compiled (mypyc's C code holds the GIL from the read to the
    write; interpreted bytecode may switch threads in between) and the GIL is on (not a
    free-threaded build). Then every thread shares a route's tally and no thread identity is
    checked per payload; otherwise each thread counts into its own."""
    compiled = not __file__.endswith(".py")
    gil_enabled: Callable[[], bool] = getattr(sys, "_is_gil_enabled", lambda: True)
    return compiled and gil_enabled()


#: Whether the routes' tallies are shared by every thread (see ``_counts_atomically``).
_SHARED_TALLIES: Final = _counts_atomically()
# Enum members bound once: `Mode.OFF` is a class attribute lookup costing ~70 ns on the hot path.
_OFF: Final = Mode.OFF
_STRICT: Final = Mode.STRICT
_ACCEPTED: Final = Action.ACCEPTED
_LOGGED: Final = Action.LOGGED
_REJECTED: Final = Action.REJECTED
_SKIPPED: Final = Action.SKIPPED


class _PolicyState:
    """A policy set and the routes resolved from it; swapped whole on reload."""

    __slots__ = ("checksum", "policy_set", "routes", "rules", "unknown_routes", "warned_ties")

    def __init__(self, policy_set: PolicySet) -> None:
        self.policy_set = policy_set
        self.checksum = policy_set.checksum
        self.routes: dict[tuple[str, str | None], EngineRoute] = {}
        self.rules: dict[tuple[str, str], EffectiveRule] = {}  # resolved once per (schema, track)
        self.unknown_routes: OrderedDict[tuple[str, str | None], EngineRoute] = OrderedDict()
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
        #: The Prometheus metrics hook (``policy_engine.metrics``), ``None`` when
        #: ``metrics=False``. Counts go to ``metrics_registry`` (default: the global registry).
        self.metrics: EngineMetrics | None = None
        if metrics:
            from policy_engine.metrics import EngineMetrics  # prometheus_client: only when used

            self.metrics = EngineMetrics.create(
                metrics_registry,
                clock=clock,
                known_tracks=(self.settings.prefer_track, self.settings.fallback_track),
                default_mode=self.settings.enforcement,
            )
            hooks = (*hooks, self.metrics)
        elif metrics_registry is not None:
            raise ConfigError("metrics_registry was given but metrics=False turns metrics off")
        #: Drift per schema/track of the traffic seen, for ``report()`` (``record_drift=True``).
        self.drift: DriftRecorder | None = None
        if record_drift:
            from policy_engine.report import DriftRecorder

            self.drift = DriftRecorder()
            hooks = (*hooks, self.drift)
        kinds = (ModeAdjuster, DecisionObserver, DecisionCounter, ReloadObserver, RegistryObserver)
        unknown = [h for h in hooks if not isinstance(h, kinds)]
        if unknown:
            raise ConfigError(
                f"hook {unknown[0]!r} has none of adjust_mode(), after_evaluation(), "
                "counter_cell()/count_violations(), after_reload(), "
                "registry_request()/registry_cache()"
            )
        counters = [h for h in hooks if isinstance(h, DecisionCounter)]
        if len(counters) > 1:
            raise ConfigError("an engine takes one DecisionCounter hook (its metrics)")
        #: The hook decisions are counted for inline (the metrics hook), or ``None``.
        self._counter: DecisionCounter | None = counters[0] if counters else None
        # A counter that is also an observer is counted inline only (not twice).
        self._observers: tuple[DecisionObserver, ...] = tuple(
            h
            for h in hooks
            if isinstance(h, DecisionObserver) and not isinstance(h, DecisionCounter)
        )
        self._reload_observers: tuple[ReloadObserver, ...] = tuple(
            h for h in hooks if isinstance(h, ReloadObserver)
        )
        #: Handed to sources that talk to a registry (they report requests and cache lookups).
        self.registry_observers: tuple[RegistryObserver, ...] = tuple(
            h for h in hooks if isinstance(h, RegistryObserver)
        )
        self._timing_tick = -1  # the first evaluation is timed
        # Guardrails: checked and fed only on routes whose rule has one, so other schemas pay
        # nothing for them (see Route.guarded).
        self.guardrails = Guardrails(
            clock,
            listeners=[self.metrics.set_guardrail_tripped] if self.metrics is not None else [],
        )
        self._guardrails_on = guardrails
        #: The store sharing guardrails with the other replicas (``GUARDRAIL_STORE``), or None.
        self.guardrail_store: RedisGuardrailStore | None = None
        if guardrails and self.settings.guardrail_store:
            from policy_engine.guardrail_store import RedisGuardrailStore

            self.guardrail_store = RedisGuardrailStore(
                self.settings.guardrail_store,
                self.guardrails,
                clock=clock,
                listener=self.metrics.set_guardrail_store if self.metrics is not None else None,
            )
            self.guardrail_store.start()
        force = self.settings.force_mode
        force_note = f"capped by POLICY_FORCE_MODE={force}" if force else ""
        if not self.settings.registry_enabled:
            force, force_note = Mode.OFF, "REGISTRY_ENABLED=false: not validated"
        #: What may lower a resolved mode, shared by every route (see ``core.route``).
        self._limits = ModeLimits(
            self.guardrails if guardrails else None,
            [h for h in hooks if isinstance(h, ModeAdjuster)],
            force,
            force_note,
        )
        self.source = open_schema_source(
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
        self._parse_cache: ParseCache | None = None
        self._registry_listing: dict[str, tuple[str, ...]] | None = None
        self._last_error: PolicyError | None = None
        self._last_error_at: float | None = None
        self._last_success_at: float | None = None
        self._watcher: PolicyWatcher | None = None
        if isinstance(policies, PolicySet):
            self._paths: tuple[str, ...] = ()
            self._state = _PolicyState(policies)
            self._notify_reload("given", None, self._list_registry())
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
        """An engine configured from the environment variables of docs/configuration.md.

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
        error is kept in ``status()`` until a reload succeeds. Whoever asked (the watcher,
        ``SIGHUP``, a direct call), a failure looks the same: ``status()`` not healthy with the
        error and its time, ``policy_reloads_total{result="error"}`` counted by the metrics hook,
        and one ERROR line on ``policy_engine.reload`` (not repeated while the same error
        persists); the first reload that succeeds after it logs that the error cleared.
        """
        if not self._paths:
            return False
        from policy_engine.errors import PolicyLoadError, Problem
        from policy_engine.policy.load import ParseCache, load_policy_set  # yaml: only when used

        reload_log = logging.getLogger("policy_engine.reload")
        with self._reload_lock:
            if self._parse_cache is None:
                self._parse_cache = ParseCache()
            listing = self._list_registry()
            previous = self._last_error
            try:
                policy_set = load_policy_set(
                    self._paths,
                    default_mode=self.settings.enforcement,
                    known_schemas=list(listing or ()),
                    missing_ok=self._missing_ok,
                    cache=self._parse_cache,
                )
                # Resolved before anything is recorded: a failure here is a failed reload too.
                unchanged = policy_set.checksum == self._state.checksum  # covers every file
                state = None if unchanged else self._warm_state(policy_set)
            except Exception as exc:
                # Whatever raised, the caller gets a PolicyError and every observer hears of it.
                error = (
                    exc
                    if isinstance(exc, PolicyError)
                    else PolicyLoadError(
                        [Problem(self._paths[0], 1, 1, f"the policy set failed to load: {exc!r}")]
                    )
                )
                self._last_error = error
                self._last_error_at = time.time()
                self._notify_reload("error", error, listing)
                # At construction there is nothing serving yet: the raised error says it all.
                if self._last_success_at is not None and str(error) != str(previous):
                    reload_log.error(
                        "policy reload failed; still serving policy set %s: %s",
                        self._state.checksum,
                        error,
                        extra={"checksum": self._state.checksum},
                    )
                if error is exc:
                    raise
                error.__cause__ = exc  # by hand too: compiled by mypyc, "from" sets no cause
                raise error from exc
            # The new set serves before the error clears: whoever reads status() without the
            # lock sees "healthy" only once the fixed set is the one in force.
            if state is not None:
                self._state = state  # one attribute write: the atomic swap
            self._last_error = None
            self._last_success_at = time.time()
            if previous is not None:
                reload_log.warning(
                    "policy reload error cleared: policy set %s is serving",
                    policy_set.checksum,
                    extra={"checksum": policy_set.checksum},
                )
            if state is None:
                self._notify_reload("unchanged", None, listing)
                return False
            for warning in policy_set.warnings:
                log.warning("policy: %s", warning)
            log.info(
                "policy set %s loaded from %d file(s)",
                policy_set.checksum,
                len(policy_set.files),
                extra={"checksum": policy_set.checksum, "files": len(policy_set.files)},
            )
            self._notify_reload("success", None, listing)
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
            slot = old_route.slot
            assert slot is not None  # the engine's routes always carry their schema slot
            route = self._new_route(rule, state, slot, old_route.expires)
            if rule is old_route.effective:
                route.buckets = old_route.buckets
            route.canary_at(now)
            state.routes[(schema, track)] = route
        return state

    def _new_route(
        self,
        rule: EffectiveRule,
        state: _PolicyState,
        slot: SchemaSlot,
        expires: float,
    ) -> EngineRoute:
        return Route(rule, state.checksum, self._limits, slot, expires, self._guardrails_on)

    def _notify_reload(
        self,
        result: ReloadResult,
        error: BaseException | None,
        listing: Mapping[str, tuple[str, ...]] | None,
    ) -> None:
        """Tell the reload observers, with what they need (the set, the registry's listing)."""
        if not self._reload_observers:
            return
        event = ReloadEvent(
            result=result,
            policy_set=self._state.policy_set,
            error=error,
            registry=listing if listing is not None else self._registry_listing,
            at=time.time(),
        )
        for observer in self._reload_observers:
            try:
                observer.after_reload(event)
            except Exception:
                log.exception("hook %r failed in after_reload; ignored", observer)

    def status(self) -> EngineStatus:
        """The policy set in force, the last reload error (if the latest attempt failed) and
        when the files last loaded successfully."""
        from policy_engine.reload import EngineStatus

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
        """The registry's schemas and tracks as the last load that could list them saw them
        (``None`` before any, or with the registry disabled)."""
        return self._registry_listing

    def _list_registry(self) -> dict[str, tuple[str, ...]] | None:
        """List the registry once per load (the glob-tie check and reload hooks both use it);
        ``None`` if it is disabled or cannot be listed (the last good listing is kept)."""
        if not self.settings.registry_enabled:
            return None
        try:
            listing = dict(self.source.known_schemas())
        except RegistryError as exc:
            log.warning("cannot list the registry's schemas for the glob check: %s", exc)
            return None
        except Exception:  # a broken source must not break a reload
            log.exception("listing the registry's schemas failed")
            return None
        self._registry_listing = listing
        self._schemas.use_listing(listing, self._clock())
        return listing

    # ------------------------------------------------------------------ evaluation

    def evaluate(
        self, schema: str, payload: Any, key: Any = None, track: str | None = None
    ) -> Decision:
        """Resolve the mode of ``payload`` and validate it; never raises for a bad payload."""
        counter = self._counter
        observers = self._observers
        started = 0.0
        if counter is not None or observers:
            tick = self._timing_tick = self._timing_tick + 1
            if tick % TIMING_SAMPLE == 0:
                started = _perf_counter()
        now = self._clock()
        route = self._state.routes.get((schema, track))
        if route is None or now >= route.expires:
            route = self._route(self._state, schema, track, now)
        mode, canary, key, key_source, bucket, note = route.resolve(payload, key, now)

        # The counter slot (hooks.SLOT_*) is worked out on the way: the branches know it.
        if mode is _OFF:
            valid: bool | None = None
            action = _SKIPPED
            violations: tuple[Violation, ...] = ()
            slot = SLOT_SKIPPED
        else:
            slot = 2 * SLOTS_PER_MODE if mode is _STRICT else SLOTS_PER_MODE
            schema_slot = route.slot
            assert schema_slot is not None  # the engine's routes always carry their schema slot
            if now >= schema_slot.expires:
                self._schemas.refresh(schema_slot, now)
            compiled = schema_slot.compiled
            if compiled is None:
                valid, action, violations, note = self._no_schema(
                    route.effective, mode, schema_slot, note, now
                )
                slot += SLOT_REJECTED_UNVALIDATED if action is _REJECTED else SLOT_SKIPPED
            else:
                try:
                    valid = compiled.quick_is_valid(payload)
                except Exception:  # not JSON data, too deep, ...: check() says what
                    valid = False
                if valid:
                    action = _ACCEPTED
                    violations = ()
                    slot += SLOT_ACCEPTED
                else:
                    violations = compiled.check(payload)
                    if not violations:  # quick and full answers disagree only for odd payloads
                        valid, action = True, _ACCEPTED
                        slot += SLOT_ACCEPTED
                    elif mode is _STRICT:
                        action = _REJECTED
                        slot += SLOT_REJECTED
                    else:
                        action = _LOGGED
                        slot += SLOT_LOGGED

        decision = Decision(
            route, mode, valid, action, violations, canary, key, key_source, bucket, payload, note
        )
        if route.guarded and mode is _STRICT:
            self.guardrails.record(route.effective, action is _REJECTED, now)
        if valid is False:
            self._log_failure(decision, now)
        seconds = _perf_counter() - started if started else None
        if counter is not None:
            # Inline rather than a hook call: the route keeps the calling thread's cell.
            tally = route.counter
            if tally is None or (tally.thread != ANY_THREAD and tally.thread != _get_ident()):
                tally = self._counter_cell(counter, route, valid)
            tally.counts[slot] += 1
            if seconds is not None:  # one evaluation in TIMING_SAMPLE stands for them all
                tally.observe(seconds, TIMING_SAMPLE)
            if valid is False:
                try:
                    counter.count_violations(decision, tally)
                except Exception:
                    log.exception("hook %r failed in count_violations; ignored", counter)
        for observer in observers:
            try:
                observer.after_evaluation(decision, seconds)
            except Exception:
                log.exception("hook %r failed in after_evaluation; ignored", observer)
        return decision

    def _counter_cell(
        self, counter: DecisionCounter, route: EngineRoute, valid: bool | None
    ) -> Tally:
        """The counter hook's tally for this thread; a failing hook gets one nobody reads."""
        try:
            return counter.counter_cell(route, valid, _SHARED_TALLIES)
        except Exception:
            log.exception("hook %r failed in counter_cell; ignored", counter)
            return Tally(CELL_SLOTS, 0)

    def resolve_mode(
        self, schema: str, payload: Any = None, key: Any = None, track: str | None = None
    ) -> Mode:
        """The mode ``payload`` (or ``key``) would get, without validating anything.

        The decision half of ``evaluate``: rule, canary, bucket, guardrails, hooks and the cap.
        """
        now = self._clock()
        route = self._state.routes.get((schema, track))
        if route is None or now >= route.expires:
            route = self._route(self._state, schema, track, now)
        return route.resolve(payload, key, now)[0]

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
        rule = route.effective
        mode, canary, text, _, bucket, note = route.resolve(
            None, key, now, want_bucket=key is not None, inside=key is None
        )
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
        in_canary: bool | None = None
        if key is not None:
            in_canary = bucket < threshold
            parts.append(
                f"key {text!r} has bucket {bucket} (salt {rule.salt!r}), "
                f"{'inside' if in_canary else 'outside'} the first {threshold} buckets"
            )
        if note:
            parts.append(note)
        parts.append(f"-> {mode}")
        return Explanation(
            schema=schema,
            track=route.track,
            mode=mode,
            baseline=rule.baseline,
            canary=canary,
            bucket=bucket if key is not None else None,
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
    ) -> EngineRoute:
        """Resolve (schema, track) once; ``track=None`` asks the registry which track to use.

        Routes of names the registry and the policies know are cached for the policy set; those
        of unknown names in a small LRU of their own (``MAX_UNKNOWN_ROUTES``)."""
        pair = (schema, track)
        unknown = state.unknown_routes
        if cache and unknown:
            held = unknown.get(pair)
            if held is not None and now < held.expires:
                unknown.move_to_end(pair)
                return held
        expires = _POS
        chosen = track
        if chosen is None and not self.settings.registry_enabled:
            chosen = self.settings.prefer_track  # REGISTRY_ENABLED=false: the registry is not asked
        elif chosen is None:
            chosen, expires = self._schemas.choose_track(schema, now)
        listed = self._schemas.lists(schema) if self.settings.registry_enabled else None
        if listed is False and schema not in state.policy_set.exact:
            # The registry's listing rules the name out (a typo, or a producer inventing
            # names): one shared "not found" slot per track, no fetch, nothing per name kept.
            slot = self._schemas.absent_slot(chosen)
            expires = min(expires, self._schemas.listing_expires)
        else:
            slot = self._schemas.slot(schema, chosen)
        # Named exactly by a policy, or held by the registry (as far as its listing and its
        # answers tell; with no listing, a name counts as known until the registry says not).
        known = schema in state.policy_set.exact or (listed is not False and not slot.missing)
        # One rule object per (schema, track) and policy set, however the payload named its
        # track: guardrails key their state on it, and equal objects compare by identity.
        shared = state.rules.get((schema, chosen))
        if shared is not None:
            rule, rival = shared, None
        else:
            rule, rival = rule_for(state.policy_set, schema, chosen, self.settings.enforcement)
            if known and len(state.rules) < MAX_ROUTES:
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
        if not known:  # ask again when the "not found" expires: the schema may appear
            expires = min(expires, max(slot.expires, now))
        route = self._new_route(rule, state, slot, expires)
        route.canary_at(now)
        if not cache:
            return route
        if known:
            routes = state.routes
            if len(routes) < MAX_ROUTES or pair in routes:
                routes[pair] = route
        else:
            unknown[pair] = route
            unknown.move_to_end(pair)
            if len(unknown) > MAX_UNKNOWN_ROUTES:
                unknown.popitem(last=False)
        return route

    def _no_schema(
        self, rule: EffectiveRule, mode: Mode, slot: SchemaSlot, note: str, now: float
    ) -> tuple[bool | None, Action, tuple[Violation, ...], str]:
        """No usable schema, so ``on_registry_error`` decides."""
        error = slot.error
        why = str(error) if error is not None else "schema not fetched"
        rejected = rule.on_registry_error == "reject" and mode is Mode.STRICT
        if slot.missing:
            self._log_missing(rule, slot, rejected, now)
        if rejected:
            violation = Violation("", "registry", f"no usable schema: {why}")
            extra = f"no usable schema ({why}); rejected"
            return None, Action.REJECTED, (violation,), f"{note}; {extra}" if note else extra
        extra = f"no usable schema ({why}); skipped"
        return None, Action.SKIPPED, (), f"{note}; {extra}" if note else extra

    def _log_missing(
        self, rule: EffectiveRule, slot: SchemaSlot, rejected: bool, now: float
    ) -> None:
        # A schema the registry does not have is usually a producer's typo: say so, once per
        # minute per slot (names the listing rules out share one per track), and at most
        # MISSING_LOG_BUDGET lines a minute in all, so a producer inventing names cannot flood
        # the logs either.
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
            rule.schema,
            rule.track,
            "rejected (on_registry_error: reject)" if rejected else "skipped, not validated",
            extra={"schema": rule.schema, "track": rule.track},
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
        """Hot-reload the policy files when their directories change.

        Runs a background thread (stopped by ``close()``); returns ``False`` when there is
        nothing to watch (a ``PolicySet`` was given, or no policy directory exists).
        """
        if self._watcher is not None and self._watcher.running:
            return True
        from policy_engine.reload import PolicyWatcher, watch_roots  # watchfiles: only when used

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
        """Stop watching, merge guardrail counts a last time, stop refreshing schemas in the
        background, release the source."""
        self.stop_watching()
        if self.guardrail_store is not None:
            self.guardrail_store.close()
        self._schemas.close()
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
