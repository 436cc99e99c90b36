"""What a policy change does: per schema/track before -> after, and the ratchet warnings.

Pure functions of two policy sets (and the names and tracks to compare), used by
``policy-engine plan`` and ``policy-engine check --base``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise

from policy_engine.core.bucket import BUCKETS, canary_threshold
from policy_engine.core.policy_set import PolicySet
from policy_engine.core.resolve import EffectiveRule, rule_for
from policy_engine.errors import Problem
from policy_engine.modes import Mode
from policy_engine.policy.model import Rule


@dataclass(frozen=True, slots=True)
class RuleChange:
    """One (schema, track) whose effective rule differs between two policy sets."""

    schema: str
    track: str
    before: EffectiveRule
    after: EffectiveRule
    fields: tuple[str, ...]  # which of mode, baseline, canary, ramp, guardrail, ... changed
    warnings: tuple[Problem, ...] = field(default=())

    def to_dict(self, now: float) -> dict[str, object]:
        """The JSON form of ``plan --format json``."""
        return {
            "schema": self.schema,
            "track": self.track,
            "changed": list(self.fields),
            "before": describe_rule(self.before, now),
            "after": describe_rule(self.after, now),
            "warnings": [w.to_dict() for w in self.warnings],
        }


def describe_rule(rule: EffectiveRule, now: float) -> dict[str, object]:
    """The deciding fields of a rule, as JSON-ready values."""
    guardrail = rule.guardrail
    return {
        "rule": None if rule.ref is None else rule.ref.to_dict(),
        "mode": rule.mode.value,
        "baseline": rule.baseline.value,
        "canary_now": rule.canary_at(now),
        "canary": rule.canary,
        "ramp": [
            {"at": at, "canary": canary}
            for at, canary in zip(rule.ramp_times, rule.ramp_canaries, strict=True)
        ],
        "key": ".".join(rule.key_path) if rule.key_path else None,
        "salt": rule.salt,
        "guardrail": None if guardrail is None else guardrail.model_dump(),
        "on_registry_error": rule.on_registry_error,
    }


#: The fields a change is reported by: every field a rule may set, in the policy format's order
#: (derived from the model, so a new field is compared without anyone remembering to add it).
_COMPARED: tuple[str, ...] = tuple(Rule.model_fields)


def _fields(before: EffectiveRule, after: EffectiveRule) -> tuple[str, ...]:
    changed = []
    for name in _COMPARED:
        if name == "canary":
            differs = (
                before.canary != after.canary or before.canary_explicit != after.canary_explicit
            )
        elif name == "ramp":
            differs = (before.ramp_times, before.ramp_canaries) != (
                after.ramp_times,
                after.ramp_canaries,
            )
        elif name == "key":
            differs = before.key_path != after.key_path
        else:
            differs = getattr(before, name) != getattr(after, name)
        if differs:
            changed.append(name)
    return tuple(changed)


def lowered_shares(
    before: EffectiveRule, after: EffectiveRule, now: float
) -> list[tuple[float, Mode, Mode]]:
    """``(percent of keys, mode before, mode after)`` for every share of keys whose mode drops.

    Buckets are monotone, so the key space splits at the two canary thresholds into at most
    three ranges, each with one mode before and one after. (With a changed ``salt`` keys move
    between buckets; the shares are then what they are, not the same keys.)
    """
    tb = canary_threshold(before.canary_at(now))
    ta = canary_threshold(after.canary_at(now))
    edges = sorted({0, min(tb, BUCKETS), min(ta, BUCKETS), BUCKETS})
    lowered: list[tuple[float, Mode, Mode]] = []
    for lo, hi in pairwise(edges):
        if hi <= lo:
            continue
        was = before.mode if lo < tb else before.baseline
        becomes = after.mode if lo < ta else after.baseline
        if becomes.rank < was.rank:
            lowered.append(((hi - lo) / 100, was, becomes))
    return lowered


def ratchet_warnings(
    before: EffectiveRule, after: EffectiveRule, now: float
) -> tuple[Problem, ...]:
    """Rollbacks to make deliberate: keys whose mode drops, or a past ramp step edited."""
    where = after.ref or before.ref
    file, line, column = (where.file, where.line, 1) if where else ("(global default)", 0, 0)
    name = f"{after.schema} {after.track}"
    context = (
        f"(mode {before.mode} -> {after.mode}, canary in force "
        f"{before.canary_at(now):g}% -> {after.canary_at(now):g}%)"
    )
    found = [
        Problem(
            file, line, column, f"{name}: {share:g}% of keys lowered {was} -> {now_mode} {context}",
            "warning",
        )
        for share, was, now_mode in lowered_shares(before, after, now)
    ]  # fmt: skip
    past_before = [
        (at, c) for at, c in zip(before.ramp_times, before.ramp_canaries, strict=True) if at <= now
    ]
    past_after = [
        (at, c) for at, c in zip(after.ramp_times, after.ramp_canaries, strict=True) if at <= now
    ]
    if past_before and past_before != past_after:
        found.append(
            Problem(
                file,
                line,
                column,
                f"{name}: a ramp step already in the past was edited or removed",
                "warning",
            )
        )  # fmt: skip
    return tuple(found)


def pairs_to_compare(
    before: PolicySet,
    after: PolicySet,
    known: Mapping[str, tuple[str, ...]],
    default_tracks: Iterable[str],
) -> list[tuple[str, str]]:
    """Every (schema, track) a change could touch: registry names with their tracks, plus the
    exact names and tracks the policies write (tracks the registry lists win when it knows the
    name; otherwise the written tracks, else the default ones)."""
    pairs: set[tuple[str, str]] = set()
    defaults = tuple(default_tracks)
    for name, tracks in known.items():
        pairs.update((name, t) for t in tracks)
    for policy_set in (before, after):
        for name, entry in policy_set.exact.items():
            if name in known:
                continue
            written = tuple((entry.rule.tracks or {}).keys())
            pairs.update((name, t) for t in (written or defaults))
    return sorted(pairs)


def diff_policy_sets(
    before: PolicySet,
    after: PolicySet,
    pairs: Iterable[tuple[str, str]],
    *,
    default_mode: Mode,
    now: float,
) -> list[RuleChange]:
    """The (schema, track) pairs whose effective rule changes, with ratchet warnings."""
    changes = []
    for schema, track in pairs:
        old, _ = rule_for(before, schema, track, default_mode)
        new, _ = rule_for(after, schema, track, default_mode)
        fields = _fields(old, new)
        if fields:
            changes.append(
                RuleChange(schema, track, old, new, fields, ratchet_warnings(old, new, now))
            )
    return changes
