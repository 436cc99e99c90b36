"""The one mode pipeline: rule -> canary -> key -> bucket -> guardrail -> adjusters -> force cap.

A ``Route`` is one (schema, track) under one policy set, resolved once: its effective rule, the
canary state in force, the key path, the buckets of keys already seen. ``Route.resolve`` is the
only place a payload's mode is worked out; ``PolicyEngine.evaluate``, ``resolve_mode`` and
``explain`` all call it, so they cannot disagree.

What may lower a mode after the canary (a tripped guardrail, ``ModeAdjuster`` hooks, the
``POLICY_FORCE_MODE`` cap) is engine-wide and lives in ``ModeLimits``, which every route of an
engine shares. The route never reads a clock: the caller hands it ``now`` (epoch seconds).

>>> from policy_engine.core.policy_set import EMPTY_POLICY_SET
>>> from policy_engine.core.resolve import rule_for
>>> from policy_engine.modes import Mode
>>> rule, _ = rule_for(EMPTY_POLICY_SET, "shop.Order", "v1", Mode.WARN)
>>> Route(rule, EMPTY_POLICY_SET.checksum, ModeLimits()).resolve({}, "k-1", 0.0)[0]
<Mode.WARN: 'warn'>
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, TypeVar

from policy_engine.core.bucket import (
    BUCKETS,
    bucket_for,
    canary_threshold,
    key_from_payload,
    key_text,
    payload_hash_key,
)
from policy_engine.core.resolve import EffectiveRule, RuleRef
from policy_engine.hooks import ModeAdjuster
from policy_engine.modes import Mode

if TYPE_CHECKING:
    from policy_engine.core.guardrail import Guardrails

log = logging.getLogger("policy_engine")

KeySource = Literal["argument", "payload", "hash"]

#: Buckets remembered per route (key -> bucket); keys past this are hashed every time.
MAX_CACHED_BUCKETS: Final = 4096

#: ``(canary, threshold, fixed mode or None, in force from, in force until)``.
CanaryState = tuple[float, int, "Mode | None", float, float]
#: What ``Route.resolve`` answers: ``(mode, canary, key, key source, bucket, note)``. The bucket
#: is -1 and the key may be ``None`` when the canary could not split keys and nobody asked for
#: them; ``note`` says why a limit lowered the mode ("" when none did).
Resolution = tuple[Mode, float, "str | None", "KeySource | None", int, str]

_NEG: Final = float("-inf")
_POS: Final = float("inf")


class ModeLimits:
    """What may lower a resolved mode, in this order: a tripped guardrail, the adjuster hooks,
    the force cap. Shared by every route of an engine; hooks only ever step back.

    ``force`` is ``POLICY_FORCE_MODE`` (``warn`` or ``off``; ``None``: no cap) and ``force_note``
    the reason shown when it caps a mode.
    """

    __slots__ = ("adjusters", "always", "force", "force_note", "guardrails")

    def __init__(
        self,
        guardrails: Guardrails | None = None,
        adjusters: Sequence[ModeAdjuster] = (),
        force: Mode | None = None,
        force_note: str = "",
    ) -> None:
        self.guardrails = guardrails
        self.adjusters = tuple(adjusters)
        self.force = force
        self.force_note = force_note or (f"capped by POLICY_FORCE_MODE={force}" if force else "")
        #: Whether every payload must pass through ``apply`` (adjusters or a cap exist); else only
        #: a guarded route whose guardrail may be tripped does.
        self.always = bool(self.adjusters) or force is not None

    def apply(self, route: Route[Any], mode: Mode, now: float) -> tuple[Mode, str]:
        """``mode`` after the guardrail, the adjusters and the cap, and why (``""``: unchanged)."""
        note = ""
        guardrails = route.guards
        if guardrails is not None and guardrails.tripped_count:
            held = guardrails.adjust_mode(route.effective, mode, now)
            if held is not None:
                mode, note = held
        for adjuster in self.adjusters:
            try:
                adjusted = adjuster.adjust_mode(route.effective, mode, now)
            except Exception:
                log.exception("hook %r failed in adjust_mode; ignored", adjuster)
                continue
            if adjusted is None:
                continue
            if adjusted[0].rank > mode.rank:
                # Hooks step back (a guardrail falls to baseline); only policies add strictness.
                log.warning("hook %r tried to raise %s to %s; ignored", adjuster, mode, adjusted[0])
                continue
            mode, note = adjusted
        force = self.force
        if force is not None and mode.rank > force.rank:
            mode, note = force, self.force_note
        return mode, note


#: The limits of an engine with nothing to limit (no guardrails, hooks or cap).
NO_LIMITS = ModeLimits()


#: ``Tally.thread`` of a tally every thread may write (see ``Tally``).
ANY_THREAD: Final = -1


class Tally:
    """The decision counts of one route: what a metrics hook (a ``hooks.DecisionCounter``)
    hands the engine to count into without a call per payload.

    ``counts`` has one slot per (mode, outcome) (``hooks.SLOT_*``). ``thread`` is the
    ``threading.get_ident`` of the only thread that may write it, or ``ANY_THREAD`` for a tally
    shared by every thread (the compiled engine's increments cannot be interleaved while the GIL
    is held), or 0 when none may (the engine then asks the hook again). ``owner`` is the hook's
    own record of it. ``buckets`` and ``seconds``
    are a duration histogram over ``bounds`` (upper bounds, ``le`` semantics; the last bucket
    is ``+Inf``).
    """

    __slots__ = ("bounds", "buckets", "counts", "owner", "seconds", "thread")

    def __init__(
        self, size: int, thread: int, owner: object = None, bounds: tuple[float, ...] = ()
    ) -> None:
        self.counts: list[int] = [0] * size
        self.thread = thread
        self.owner = owner
        self.bounds = bounds
        self.buckets: list[int] = [0] * (len(bounds) + 1)
        self.seconds = 0.0

    def observe(self, seconds: float, weight: int) -> None:
        """Count a duration ``weight`` times (a timed evaluation stands for the untimed ones)."""
        bounds = self.bounds
        i = 0
        n = len(bounds)
        while i < n and seconds > bounds[i]:
            i += 1
        self.buckets[i] += weight
        self.seconds += seconds * weight


SlotT = TypeVar("SlotT")


class Route(Generic[SlotT]):
    """One (schema, track) under one policy set: its rule, canary state and key cache.

    ``slot`` is whatever the caller keeps beside the rule (the engine: its schema-cache slot);
    ``expires`` is when a track chosen by the registry must be chosen again. ``counter`` is the
    ``Tally`` the engine's metrics hook counts this route's decisions in (for one thread).
    ``guarded`` says whether the rule's guardrail is checked and fed (only rules that have one).
    """

    __slots__ = (
        "buckets",
        "canary_state",
        "checksum",
        "counter",
        "effective",
        "expires",
        "guarded",
        "guards",
        "key_field",
        "key_path",
        "limits",
        "mode_in",
        "mode_out",
        "rule",
        "salt_prefix",
        "schema",
        "slot",
        "track",
    )

    def __init__(
        self,
        rule: EffectiveRule,
        checksum: str,
        limits: ModeLimits = NO_LIMITS,
        slot: SlotT | None = None,
        expires: float = _POS,
        guard: bool = True,
    ) -> None:
        self.effective = rule
        self.schema = rule.schema
        self.track = rule.track
        #: Where the rule is written; ``None`` for the global default.
        self.rule: RuleRef | None = rule.ref
        self.checksum = checksum
        self.limits = limits
        self.slot = slot
        self.expires = expires
        self.guarded = guard and rule.guardrail is not None and limits.guardrails is not None
        #: The guardrails to consult on each payload: the engine's when ``guarded``, else None.
        self.guards = limits.guardrails if self.guarded else None
        self.salt_prefix = rule.salt_prefix
        path = rule.key_path
        self.key_path = path
        self.key_field = path[0] if path is not None and len(path) == 1 else None
        self.mode_in = rule.mode
        self.mode_out = rule.baseline
        self.buckets: dict[str, int] = {}
        self.counter: Tally | None = None
        self.canary_state: CanaryState = self.canary_at(_NEG)

    def canary_at(self, now: float) -> CanaryState:
        """The canary state in force at ``now``; kept as the route's current state unless ``now``
        is ``-inf`` (the state before any step, computed once at construction)."""
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
            if rule.mode is rule.baseline or threshold >= BUCKETS:
                fixed = rule.mode
            elif threshold <= 0:
                fixed = rule.baseline
            state = (canary, threshold, fixed, since, until)
        if now != _NEG:
            self.canary_state = state
        return state

    def resolve(
        self,
        payload: Any,
        key: Any,
        now: float,
        want_bucket: bool = False,
        inside: bool = False,
    ) -> Resolution:
        """The mode of one payload at ``now``, and how it was reached.

        ``key`` (any JSON value; ``None``: the rule's key path in ``payload``, else a hash of the
        payload) decides the bucket. When the canary cannot split keys (0 %, 100 %, mode equal
        to baseline) no key is looked up and the bucket is -1, unless ``want_bucket``.
        ``inside=True`` (``explain`` without a key) skips the key and takes the mode keys inside
        the canary get.
        """
        canary, threshold, mode, since, until = self.canary_state
        if not since <= now < until:  # a ramp moved to another step
            canary, threshold, mode, since, until = self.canary_at(now)
        key_source: KeySource | None = None
        if key is not None:
            key_source = "argument"
            if key.__class__ is not str:
                key = key_text(key)
        bucket = -1
        if inside:
            if mode is None:
                mode = self.mode_in
        elif mode is None or want_bucket:
            if key is None:
                field = self.key_field
                if field is not None:
                    if payload.__class__ is dict or isinstance(payload, dict):
                        key = payload.get(field)
                        if key is not None and key.__class__ is not str:
                            key = key_text(key)
                elif self.key_path is not None:
                    key = key_from_payload(payload, self.key_path)
                key_source = "payload"
            if key is None:
                key = payload_hash_key(payload)
                key_source = "hash"
                bucket = bucket_for(self.salt_prefix, key)  # unique per payload: not cached
            else:
                # Keys repeat (producers, symbols): their buckets are remembered, up to a bound.
                buckets = self.buckets
                bucket = buckets.get(key, -1)
                if bucket < 0:
                    bucket = bucket_for(self.salt_prefix, key)
                    if len(buckets) < MAX_CACHED_BUCKETS:
                        buckets[key] = bucket
            if mode is None:
                mode = self.mode_in if bucket < threshold else self.mode_out
        limits = self.limits
        guards = self.guards
        if limits.always or (guards is not None and guards.tripped_count):
            mode, note = limits.apply(self, mode, now)
            return mode, canary, key, key_source, bucket, note
        return mode, canary, key, key_source, bucket, ""

    def __repr__(self) -> str:
        return (
            f"Route({self.schema!r}, {self.track!r}, rule={self.rule}, policy_set={self.checksum})"
        )


__all__ = [
    "ANY_THREAD",
    "MAX_CACHED_BUCKETS",
    "NO_LIMITS",
    "CanaryState",
    "KeySource",
    "ModeLimits",
    "Resolution",
    "Route",
    "Tally",
]
