"""One mode pipeline: evaluate, resolve_mode and explain never disagree.

Hypothesis draws a rule (mode, baseline, canary or ramp), the moment of evaluation, whether the
rule's guardrail has tripped, a ``POLICY_FORCE_MODE`` cap and an adjuster hook, then asks all
three for the same keys; they must give the same mode (and evaluate and explain the same bucket).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy_engine import Mode, PolicyEngine, Settings
from policy_engine.core.resolve import EffectiveRule

SCHEMA, TRACK = "p.Pipeline", "v1"
#: The ramp's first step; the evaluation moment is drawn around it.
START = datetime(2027, 1, 1, tzinfo=UTC)
MODES = ("off", "warn", "strict")


class LowerOddKeys:
    """An adjuster that steps strict back to warn for keys whose bucket is odd."""

    def adjust_mode(self, rule: EffectiveRule, mode: Mode, now: float) -> tuple[Mode, str] | None:
        del rule, now
        return None if mode is not Mode.STRICT else (Mode.WARN, "odd keys are held at warn")


@st.composite
def rules(draw: st.DrawFn, trips: bool) -> str:
    """The YAML of one track rule: mode, maybe a baseline, a canary or a ramp, a guardrail that
    one rejection trips (``trips``) or none does."""
    mode = draw(st.sampled_from(MODES))
    lines = [f"mode: {mode}"]
    if draw(st.booleans()):
        weaker = MODES[: MODES.index(mode) + 1]
        lines.append(f"baseline: {draw(st.sampled_from(weaker))}")
    canary = draw(st.one_of(st.none(), st.integers(0, 10_000).map(lambda c: c / 100)))
    if canary is not None:
        lines.append(f"canary: {canary}")
    if draw(st.booleans()):
        steps = sorted(draw(st.lists(st.integers(0, 10_000), min_size=1, max_size=4)))
        lines.append("ramp:")
        for day, step in enumerate(steps):
            at = (START + timedelta(days=day)).isoformat().replace("+00:00", "Z")
            lines.append(f"  - {{at: {at}, canary: {step / 100}}}")
    samples = 1 if trips else 1_000_000  # else evaluate itself can never trip it
    lines.append(
        f"guardrail: {{max_reject_rate: 0.1, window: 1h, min_samples: {samples}, cooldown: 720h}}"
    )
    body = "\n".join(f"        {line}" for line in lines)
    return f"version: 1\nschemas:\n  {SCHEMA}:\n    tracks:\n      {TRACK}:\n{body}\n"


def registry(root: Path) -> Path:
    """An embedded registry where every object is valid for ``SCHEMA``."""
    (root / SCHEMA).mkdir(parents=True, exist_ok=True)
    (root / SCHEMA / f"{TRACK}.json").write_text(json.dumps({"type": "object"}))
    return root


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tripped_and_rule=st.booleans().flatmap(lambda t: st.tuples(st.just(t), rules(t))),
    offset_days=st.integers(-2, 6),
    force=st.sampled_from([None, "warn", "off"]),
    adjust=st.booleans(),
    keys=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=25),
)
def test_evaluate_resolve_mode_and_explain_agree(
    tmp_path: Path,
    tripped_and_rule: tuple[bool, str],
    offset_days: int,
    force: str | None,
    adjust: bool,
    keys: list[str],
) -> None:
    """For any rule, moment, guardrail state, force cap and adjuster, the three give one mode
    for every key, and evaluate and explain one bucket."""
    tripped, rule = tripped_and_rule
    policies = tmp_path / "policies"
    policies.mkdir(exist_ok=True)
    (policies / "p.yaml").write_text(rule)
    now = (START + timedelta(days=offset_days, hours=12)).timestamp()
    engine = PolicyEngine(
        str(policies),
        str(registry(tmp_path / "schemas")),
        settings=Settings(policy_watch=False, force_mode=Mode(force) if force else None),
        clock=lambda: now,
        hooks=[LowerOddKeys()] if adjust else [],
        metrics=False,
    )
    with engine:
        if tripped:  # one strict rejection trips it: the rule is at its baseline for 30 days
            effective = engine.evaluate(SCHEMA, {}, key="warm", track=TRACK).effective_rule
            engine.guardrails.record(effective, True, now)
            engine.guardrails.record(effective, True, now)
            assert [g.schema for g in engine.guardrails.tripped(now)] == [SCHEMA]
        for key in keys:
            decision = engine.evaluate(SCHEMA, {"id": key}, key=key, track=TRACK)
            resolved = engine.resolve_mode(SCHEMA, key=key, track=TRACK)
            explained = engine.explain(SCHEMA, track=TRACK, key=key, at=now)
            assert decision.mode is resolved is explained.mode, (key, decision.reason)
            assert decision.bucket == explained.bucket
            assert decision.in_canary is explained.in_canary
            if force is not None:
                assert decision.mode.rank <= Mode(force).rank
