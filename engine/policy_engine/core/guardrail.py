"""Guardrails: fall back to ``baseline`` by themselves when strict mode rejects too much.

For each (schema, track) whose rule has a ``guardrail``, the engine keeps a sliding window of the
payloads resolved to strict and how many of them were rejected. When, over the last ``window``
seconds and with at least ``min_samples`` strict payloads, ``rejected / evaluated`` exceeds
``max_reject_rate``, the guardrail trips: every payload of that schema/track gets the rule's
``baseline`` for ``cooldown`` seconds, with an ERROR log. After the cooldown strict comes back
with an empty window.

State is per process unless a shared store takes part (``GUARDRAIL_STORE``, see
``policy_engine.guardrail_store``): then every strict payload is also kept as a *pending* count
for the store, which merges the counts of every replica into one window per rule and decides the
trip for the fleet; ``apply_shared`` brings its answer back. While the store cannot be reached,
each replica decides on its own window again. A reload that changes the rule (anything in it)
starts its guardrail afresh, in the store too (the rule's ``identity`` names its shared window).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, fields

from policy_engine.core.resolve import EffectiveRule
from policy_engine.modes import Action, Mode
from policy_engine.policy.model import Guardrail

log = logging.getLogger("policy_engine.guardrail")

#: Sub-buckets per window: the window slides in steps of ``window / SLOTS``.
SLOTS = 60
#: Most (schema, track) guardrails tracked; rules past it are not guarded (logged once).
MAX_GUARDED = 10_000

_STRICT = Mode.STRICT
_REJECTED = Action.REJECTED


class SlidingWindow:
    """Counts of (evaluated, rejected) over the last ``seconds``, O(1) per event, fixed memory.

    The window is a ring of ``SLOTS`` sub-buckets; moving time forward clears the buckets it
    passes (at most ``SLOTS`` of them however long the gap), so memory never grows.
    """

    __slots__ = ("_current", "_evaluated", "_rejected", "_width", "evaluated", "rejected")

    def __init__(self, seconds: float) -> None:
        self._width = seconds / SLOTS
        self._evaluated = [0] * SLOTS
        self._rejected = [0] * SLOTS
        self._current = -1  # absolute index of the newest bucket
        self.evaluated = 0
        self.rejected = 0

    def _advance(self, now: float) -> int:
        index = int(now // self._width)
        if index > self._current:
            first = max(self._current + 1, index - SLOTS + 1)
            for step in range(first, index + 1):
                slot = step % SLOTS
                self.evaluated -= self._evaluated[slot]
                self.rejected -= self._rejected[slot]
                self._evaluated[slot] = 0
                self._rejected[slot] = 0
            self._current = index
        return self._current % SLOTS

    def add(self, now: float, rejected: bool) -> None:
        """Count one strict payload at ``now`` (epoch seconds)."""
        slot = self._advance(now)
        self._evaluated[slot] += 1
        self.evaluated += 1
        if rejected:
            self._rejected[slot] += 1
            self.rejected += 1

    def totals(self, now: float) -> tuple[int, int]:
        """``(evaluated, rejected)`` within the window ending at ``now``."""
        self._advance(now)
        return self.evaluated, self.rejected


@dataclass(frozen=True, slots=True)
class TrippedGuardrail:
    """A guardrail in its cooldown, as ``status()`` and ``report`` show it."""

    schema: str
    track: str
    reject_rate: float
    evaluated: int
    until: float


def rule_identity(rule: EffectiveRule) -> str:
    """A name for a rule that is the same in every process loading the same policy: a hash of
    everything that decides (not where the rule is written). A changed rule gets a new one."""
    deciding = tuple((f.name, repr(getattr(rule, f.name))) for f in fields(rule) if f.name != "ref")
    return hashlib.sha256(repr(deciding).encode()).hexdigest()[:20]


@dataclass(slots=True)
class PendingCounts:
    """One rule's strict payloads since the last merge with the shared store, by sub-bucket
    (``int(now // (window / SLOTS))``): ``{sub-bucket: [evaluated, rejected]}``."""

    identity: str
    rule: EffectiveRule
    config: Guardrail
    counts: dict[int, list[int]] = field(default_factory=dict)


class _State:
    __slots__ = (
        "config",
        "fleet",
        "identity",
        "lock",
        "pending",
        "rate",
        "rule",
        "samples",
        "shared_trip",
        "tripped_until",
        "window",
    )

    def __init__(self, rule: EffectiveRule, config: Guardrail) -> None:
        self.rule = rule
        self.config = config
        self.window = SlidingWindow(config.window)
        self.tripped_until = 0.0
        self.rate = 0.0
        self.samples = 0
        self.lock = threading.Lock()
        self.identity = rule_identity(rule)
        #: Counts not merged into the shared store yet (only while one takes part).
        self.pending: dict[int, list[int]] = {}
        #: The fleet's (evaluated, rejected) in the shared window at the last merge.
        self.fleet = (0, 0)
        #: Whether ``tripped_until`` came from the store (the fleet tripped it).
        self.shared_trip = False


TripListener = Callable[[str, str, bool], None]


class Guardrails:
    """The engine's guardrails: ``adjust_mode`` before validation, ``record`` after it.

    The engine calls both only for routes whose rule has a guardrail.

    ``listeners`` are called with ``(schema, track, tripped)`` when a guardrail trips or
    recovers (the metrics hook sets ``policy_guardrail_tripped`` from it).
    """

    def __init__(
        self, clock: Callable[[], float], listeners: list[TripListener] | None = None
    ) -> None:
        self._clock = clock
        self._states: dict[tuple[str, str], _State] = {}
        #: How many guardrails are in their cooldown; 0 lets the engine skip adjust_mode.
        self.tripped_count = 0
        self._count_lock = threading.Lock()
        self._listeners = listeners or []
        self._full_warned = False
        #: Whether a shared store decides the trips (``policy_engine.guardrail_store`` sets it
        #: while it can reach its store; a replica decides on its own window otherwise).
        self.shared = False
        #: Whether strict payloads are kept as pending counts for a store (one takes part).
        self.collecting = False

    def _state(self, rule: EffectiveRule, config: Guardrail) -> _State | None:
        key = (rule.schema, rule.track)
        state = self._states.get(key)
        if state is not None and state.rule is rule:
            return state
        if state is not None and state.rule.same_policy(rule):
            state.rule = rule  # the same rule after a reload (maybe moved): keep counting
            return state
        if state is None and len(self._states) >= MAX_GUARDED:
            if not self._full_warned:
                self._full_warned = True
                log.warning(
                    "more than %d guarded schema/tracks; the rest are not guarded", MAX_GUARDED
                )
            return None
        if state is not None and state.tripped_until:
            with self._count_lock:
                self.tripped_count -= 1
            self._notify(rule.schema, rule.track, False)  # a changed rule starts afresh
        state = _State(rule, config)
        self._states[key] = state
        return state

    def adjust_mode(self, rule: EffectiveRule, mode: Mode, now: float) -> tuple[Mode, str] | None:
        """While tripped, the rule's ``baseline`` for every key of that schema/track."""
        config = rule.guardrail
        if config is None:
            return None
        state = self._states.get((rule.schema, rule.track))
        if state is None or not state.tripped_until:
            return None
        if state.rule is not rule:
            if not state.rule.same_policy(rule):
                return None  # a changed rule: record() starts it afresh
            state.rule = rule
        if now >= state.tripped_until:
            self._recover(state, now)
            return None
        if mode.rank <= rule.baseline.rank:
            return None
        return rule.baseline, (
            f"guardrail tripped ({state.rate:.1%} of {state.samples} strict payloads rejected, "
            f"over {config.max_reject_rate:.1%}): {rule.baseline} until cooldown ends"
        )

    def record(self, rule: EffectiveRule, rejected: bool, now: float) -> None:
        """Count one strict payload of ``rule`` at ``now``; trip the guardrail if it must."""
        config = rule.guardrail
        if config is None:
            return
        state = self._state(rule, config)
        if state is None:
            return
        with state.lock:
            if state.tripped_until:
                return  # cooling down: nothing is strict, nothing to count
            state.window.add(now, rejected)
            if self.collecting:
                bucket = int(now // (config.window / SLOTS))
                counts = state.pending.get(bucket)
                if counts is None:
                    counts = state.pending[bucket] = [0, 0]
                counts[0] += 1
                if rejected:
                    counts[1] += 1
                if self.shared:
                    return  # the store decides the trip, for the whole fleet
            evaluated, rejections = state.window.evaluated, state.window.rejected
            if evaluated < config.min_samples:
                return
            rate = rejections / evaluated
            if rate <= config.max_reject_rate:
                return
            state.tripped_until = now + config.cooldown
            with self._count_lock:
                self.tripped_count += 1
            state.rate, state.samples = rate, evaluated
            state.window = SlidingWindow(config.window)
        log.error(
            "guardrail tripped for %s %s: %.1f%% of %d strict payloads rejected in the last %gs "
            "(limit %.1f%%); falling back to %s for %gs",
            rule.schema,
            rule.track,
            rate * 100,
            evaluated,
            config.window,
            config.max_reject_rate * 100,
            rule.baseline,
            config.cooldown,
            extra={"schema": rule.schema, "track": rule.track, "reject_rate": rate},
        )
        self._notify(rule.schema, rule.track, True)

    # ------------------------------------------------------------------ a shared store

    def take_pending(self) -> list[PendingCounts]:
        """Every guarded rule with the counts it gathered since the last call (possibly none:
        the store still reports the fleet's trip for it), the pending counts reset."""
        taken: list[PendingCounts] = []
        for state in list(self._states.values()):
            with state.lock:
                counts, state.pending = state.pending, {}
            taken.append(PendingCounts(state.identity, state.rule, state.config, counts))
        return taken

    def give_back(self, pending: list[PendingCounts]) -> None:
        """Counts a merge could not deliver, kept for the next one (a rule changed meanwhile
        drops them: its new identity starts afresh)."""
        by_identity = {state.identity: state for state in list(self._states.values())}
        for item in pending:
            state = by_identity.get(item.identity)
            if state is None or not item.counts:
                continue
            with state.lock:
                for bucket, (evaluated, rejected) in item.counts.items():
                    counts = state.pending.setdefault(bucket, [0, 0])
                    counts[0] += evaluated
                    counts[1] += rejected

    def apply_shared(
        self, identity: str, evaluated: int, rejected: int, until: float | None, now: float
    ) -> None:
        """What the store says of a rule's fleet window: its counts, and the end of the trip
        the fleet is in (``None``: not tripped). Trips and recoveries follow at once."""
        for state in list(self._states.values()):
            if state.identity != identity:
                continue
            state.fleet = (evaluated, rejected)
            if until is not None and until > now:
                if state.tripped_until and state.shared_trip:
                    state.tripped_until = until
                    continue
                self._trip(state, until, evaluated, rejected, shared=True)
            elif state.shared_trip and state.tripped_until:
                self._recover(state, now, force=True)

    def _trip(
        self, state: _State, until: float, evaluated: int, rejected: int, *, shared: bool
    ) -> None:
        rule, config = state.rule, state.config
        with state.lock:
            if state.tripped_until:
                return
            state.tripped_until = until
            state.shared_trip = shared
            with self._count_lock:
                self.tripped_count += 1
            state.rate = rejected / evaluated if evaluated else 0.0
            state.samples = evaluated
            state.window = SlidingWindow(config.window)
            state.pending = {}
        log.error(
            "guardrail tripped for %s %s by the fleet: %.1f%% of %d strict payloads rejected "
            "(limit %.1f%%); falling back to %s until %.0f",
            rule.schema,
            rule.track,
            state.rate * 100,
            evaluated,
            config.max_reject_rate * 100,
            rule.baseline,
            until,
            extra={"schema": rule.schema, "track": rule.track, "reject_rate": state.rate},
        )
        self._notify(rule.schema, rule.track, True)

    def _recover(self, state: _State, now: float, *, force: bool = False) -> None:
        with state.lock:
            if not state.tripped_until or (now < state.tripped_until and not force):
                return
            state.tripped_until = 0.0
            state.shared_trip = False
            with self._count_lock:
                self.tripped_count -= 1
            state.window = SlidingWindow(state.config.window)
        log.warning(
            "guardrail cooldown over for %s %s: strict again",
            state.rule.schema,
            state.rule.track,
            extra={"schema": state.rule.schema, "track": state.rule.track},
        )
        self._notify(state.rule.schema, state.rule.track, False)

    def _notify(self, schema: str, track: str, tripped: bool) -> None:
        for listener in self._listeners:
            try:
                listener(schema, track, tripped)
            except Exception:
                log.exception("guardrail listener %r failed; ignored", listener)

    def tripped(self, now: float) -> list[TrippedGuardrail]:
        """The guardrails in their cooldown at ``now``; ones whose cooldown ended recover here
        too (and tell the listeners), so a quiet schema does not stay 'tripped' in metrics."""
        for state in list(self._states.values()):
            if state.tripped_until and now >= state.tripped_until:
                self._recover(state, now)
        return [
            TrippedGuardrail(s.rule.schema, s.rule.track, s.rate, s.samples, s.tripped_until)
            for s in list(self._states.values())
            if s.tripped_until and now < s.tripped_until
        ]
