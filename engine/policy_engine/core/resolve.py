"""PolicySet -> the effective rule of one (schema, track): pure, computed once and cached.

Inheritance, weakest first: the global default (``REGISTRY_ENFORCEMENT``), the file's
``defaults``, the schema rule, the track block. Each field written at a level overrides the levels
before it as a whole (a track's ``ramp`` replaces the schema's, it is not merged). One exception
keeps rollouts readable: a level that writes ``canary`` without ``ramp`` drops an inherited ramp.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, fields
from datetime import datetime
from operator import attrgetter

from policy_engine.core.bucket import canary_threshold
from policy_engine.core.policy_set import PolicyEntry, PolicySet
from policy_engine.modes import Mode
from policy_engine.policy.model import Guardrail, Rule

OnRegistryError = str  # "allow" | "reject"


@dataclass(frozen=True, slots=True)
class RuleRef:
    """Where the rule that decided is written: the file and the line of its schema key."""

    file: str
    line: int
    pattern: str

    def to_dict(self) -> dict[str, object]:
        """The JSON form: file and line."""
        return {"file": self.file, "line": self.line}

    def __str__(self) -> str:
        return f"{self.pattern} ({self.file}:{self.line})"


@dataclass(frozen=True, slots=True)
class EffectiveRule:
    """Everything resolution needs for one (schema, track), with inheritance already applied.

    ``ramp_times`` (epoch seconds) and ``ramp_canaries`` are the ramp's steps, kept apart so that
    finding the step in force is one bisect.
    ``ref`` is ``None`` for the global default (no rule matched).
    """

    schema: str
    track: str
    mode: Mode
    baseline: Mode
    canary: float
    canary_explicit: bool
    ramp_times: tuple[float, ...]
    ramp_canaries: tuple[float, ...]
    key_path: tuple[str, ...] | None
    salt: str
    guardrail: Guardrail | None
    on_registry_error: OnRegistryError
    ref: RuleRef | None

    @property
    def salt_prefix(self) -> str:
        """``salt + ":"``, the fixed start of every string this rule hashes."""
        return self.salt + ":"

    def canary_at(self, now: float) -> float:
        """The canary in force at ``now`` (epoch seconds): the latest ramp step at or before it.

        Before the first step: the written ``canary`` if there is one, else 0 (docs/concepts.md,
        "Ramps").
        """
        if not self.ramp_times:
            return self.canary
        i = bisect_right(self.ramp_times, now)
        if i == 0:
            return self.canary if self.canary_explicit else 0.0
        return self.ramp_canaries[i - 1]

    def same_policy(self, other: EffectiveRule) -> bool:
        """Equal in everything that decides (where it is written may differ: ``ref``)."""
        return self is other or _POLICY_FIELDS(self) == _POLICY_FIELDS(other)

    def fixed_mode(self) -> Mode | None:
        """The mode every key gets when the bucket cannot matter, else ``None``.

        True when ``mode`` equals ``baseline`` or, without a ramp, the canary is 0 or 100. The
        engine then skips the key and the hash for the payload.
        """
        if self.mode is self.baseline:
            return self.mode
        if self.ramp_times:
            return None
        threshold = canary_threshold(self.canary)
        if threshold >= 10_000:
            return self.mode
        if threshold <= 0:
            return self.baseline
        return None


#: Every field of ``EffectiveRule`` but ``ref``: what ``same_policy`` compares. Built in C, one
#: tuple per side: guardrails ask on every strict payload of a schema that is routed two ways
#: (``track`` given and not), where ``replace()`` twice cost ~3 us a payload (bench_consume).
_POLICY_FIELDS = attrgetter(*(f.name for f in fields(EffectiveRule) if f.name != "ref"))


def _pick(levels: list[Rule], name: str) -> object | None:
    value = None
    for level in levels:
        field_value = getattr(level, name)
        if field_value is not None:
            value = field_value
    return value


def _ramp_epochs(value: object) -> tuple[tuple[float, ...], tuple[float, ...]]:
    steps = value if isinstance(value, list) else []
    return (
        tuple(step.at.timestamp() for step in steps),
        tuple(float(step.canary) for step in steps),
    )


def resolve_rule(
    entry: PolicyEntry | None, schema: str, track: str, default_mode: Mode
) -> EffectiveRule:
    """The effective rule of ``schema``/``track`` from its entry (``None``: the global default)."""
    levels: list[Rule] = []
    ref: RuleRef | None = None
    if entry is not None:
        if entry.defaults is not None:
            levels.append(entry.defaults)
        levels.append(entry.rule)
        line = entry.line
        track_rule = (entry.rule.tracks or {}).get(track)
        if track_rule is not None:
            levels.append(track_rule)
            line = entry.track_marks.get(track, (line, 0))[0]
        ref = RuleRef(entry.file, line, entry.pattern)
    mode = _pick(levels, "mode") or default_mode
    assert isinstance(mode, Mode)
    baseline = _pick(levels, "baseline")
    if not isinstance(baseline, Mode):
        baseline = mode.step_down()
    # The deepest level writing `canary` or `ramp` decides whether there is a ramp, so a track's
    # `canary: 50` means 50 even when its schema has a ramp. The canary (what holds before a
    # ramp's first step) is the deepest one written.
    rollout = next((lv for lv in reversed(levels) if lv.canary is not None or lv.ramp), None)
    ramp = rollout.ramp if rollout is not None else None
    canary = _pick(levels, "canary")
    key = _pick(levels, "key")
    salt = _pick(levels, "salt")
    guardrail = _pick(levels, "guardrail")
    on_error = _pick(levels, "on_registry_error")
    ramp_times, ramp_canaries = _ramp_epochs(ramp)
    return EffectiveRule(
        schema=schema,
        track=track,
        mode=mode,
        baseline=baseline,
        canary=float(canary) if isinstance(canary, int | float) else 100.0,
        canary_explicit=canary is not None,
        ramp_times=ramp_times,
        ramp_canaries=ramp_canaries,
        key_path=tuple(key.split(".")) if isinstance(key, str) else None,
        salt=salt if isinstance(salt, str) else f"{schema}:{track}",
        guardrail=guardrail if isinstance(guardrail, Guardrail) else None,
        on_registry_error=on_error if isinstance(on_error, str) else "allow",
        ref=ref,
    )


def rule_for(
    policy_set: PolicySet, schema: str, track: str, default_mode: Mode
) -> tuple[EffectiveRule, PolicyEntry | None]:
    """The effective rule for ``schema``/``track``, and an equally specific rival glob if any.

    A rival only exists for names neither the registry nor the policies named at load time (those
    ties are load errors); the pattern that sorts first wins and the caller warns once.
    """
    entry, rival = policy_set.match(schema)
    return resolve_rule(entry, schema, track, default_mode), rival


def parse_time(text: str) -> float:
    """Epoch seconds from an RFC 3339 time (``2026-12-01T00:00:00Z``); ``ValueError`` if not one."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not an RFC 3339 time; write e.g. 2026-12-01T00:00:00Z"
        ) from None
    if moment.utcoffset() is None:
        raise ValueError(f"{text!r} has no offset; write e.g. 2026-12-01T00:00:00Z")
    return moment.timestamp()
