"""Guardrails: strict falls back to baseline by itself when rejections spike (SPEC §9)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from policy_engine import Action, Mode, PolicyEngine
from policy_engine.core.guardrail import SLOTS, SlidingWindow

T0 = 1_800_000_000.0
VALID, INVALID = {"n": 1}, {"n": "x"}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def policy(rate: float = 0.1, min_samples: int = 10) -> str:
    """Strict for every key of g.S, guarded: window 60 s, cooldown 30 s."""
    return (
        "version: 1\nschemas:\n  g.S:\n    mode: strict\n    guardrail:\n"
        f"      max_reject_rate: {rate}\n      window: 60s\n"
        f"      min_samples: {min_samples}\n      cooldown: 30s\n"
    )


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    """A policy directory and a registry with g.S v1 (an object whose n is an integer)."""
    policies, schemas = tmp_path / "p", tmp_path / "s"
    policies.mkdir()
    (schemas / "g.S").mkdir(parents=True)
    (schemas / "g.S" / "v1.json").write_text(
        '{"type": "object", "properties": {"n": {"type": "integer"}}}'
    )
    (policies / "p.yaml").write_text(policy())
    return policies, schemas


def engine_for(setup: tuple[Path, Path], clock: Clock, **kwargs: object) -> PolicyEngine:
    policies, schemas = setup
    return PolicyEngine(str(policies), str(schemas), clock=clock, **kwargs)  # type: ignore[arg-type]


def feed(engine: PolicyEngine, valid: int, invalid: int) -> list[Action]:
    """Evaluate ``valid`` good then ``invalid`` bad payloads; their actions."""
    payloads = [VALID] * valid + [INVALID] * invalid
    return [
        engine.evaluate("g.S", p, key=f"k{i}", track="v1").action for i, p in enumerate(payloads)
    ]


def test_no_trip_at_exactly_the_limit_and_a_trip_just_above(setup) -> None:
    """1 of 10 rejected (10 %) does not trip a 10 % guardrail; 2 of 11 (18 %) does."""
    clock = Clock()
    with engine_for(setup, clock, metrics=False) as engine:
        assert feed(engine, valid=9, invalid=1)[-1] is Action.REJECTED
        assert engine.status().guardrails == ()
        # 2 of 11 now: this one is still strict, and it trips the guardrail
        assert engine.evaluate("g.S", INVALID, key="a", track="v1").mode is Mode.STRICT
        after = engine.evaluate("g.S", INVALID, key="b", track="v1")
        assert (after.mode, after.action) == (Mode.WARN, Action.LOGGED)
        assert "guardrail tripped" in after.reason


def test_the_trip_is_logged_at_error(setup, caplog) -> None:
    """Tripping writes one ERROR record naming the schema and track."""
    clock = Clock()
    with engine_for(setup, clock, metrics=False) as engine, caplog.at_level(logging.ERROR):
        feed(engine, valid=0, invalid=12)
    trips = [r for r in caplog.records if "guardrail tripped" in r.getMessage()]
    assert len(trips) == 1
    assert "g.S v1" in trips[0].getMessage()
    assert trips[0].levelno == logging.ERROR


def test_min_samples_holds_back_a_trip(setup) -> None:
    """Nine rejections out of nine strict payloads do not trip a guardrail needing ten."""
    clock = Clock()
    with engine_for(setup, clock, metrics=False) as engine:
        actions = feed(engine, valid=0, invalid=9)
        assert set(actions) == {Action.REJECTED}
        assert engine.evaluate("g.S", INVALID, key="z", track="v1").mode is Mode.STRICT
        assert engine.evaluate("g.S", INVALID, key="y", track="v1").mode is Mode.WARN


def test_cooldown_ends_and_strict_returns(setup) -> None:
    """After the cooldown the rule is strict again, status() no longer lists it."""
    clock = Clock()
    with engine_for(setup, clock, metrics=False) as engine:
        feed(engine, valid=0, invalid=10)
        assert engine.evaluate("g.S", INVALID, key="a", track="v1").mode is Mode.WARN
        (tripped,) = engine.status().guardrails
        assert (tripped.schema, tripped.track, tripped.until) == ("g.S", "v1", T0 + 30)
        clock.now = T0 + 29.9
        assert engine.evaluate("g.S", VALID, key="a", track="v1").mode is Mode.WARN
        clock.now = T0 + 30
        assert engine.evaluate("g.S", VALID, key="a", track="v1").mode is Mode.STRICT
        assert engine.status().guardrails == ()


def test_old_rejections_slide_out_of_the_window(setup) -> None:
    """Rejections older than the window no longer count towards the rate."""
    clock = Clock()
    with engine_for(setup, clock, metrics=False) as engine:
        feed(engine, valid=0, invalid=5)
        clock.now = T0 + 61
        actions = feed(engine, valid=20, invalid=0)
        assert set(actions) == {Action.ACCEPTED}
        assert engine.evaluate("g.S", INVALID, key="q", track="v1").mode is Mode.STRICT


def test_a_reload_that_changes_the_rule_resets_the_guardrail(setup) -> None:
    """A tripped guardrail is forgotten when a reload changes the rule; strict applies at once."""
    policies, _ = setup
    clock = Clock()
    with engine_for(setup, clock, metrics=False) as engine:
        feed(engine, valid=0, invalid=10)
        assert engine.evaluate("g.S", VALID, key="a", track="v1").mode is Mode.WARN
        (policies / "p.yaml").write_text(policy(rate=0.5))
        assert engine.reload()
        assert engine.evaluate("g.S", VALID, key="a", track="v1").mode is Mode.STRICT
        assert engine.status().guardrails == ()


def test_a_reload_that_keeps_the_rule_keeps_the_trip(setup) -> None:
    """A reload that leaves the rule as it was (a comment edit) does not reset the guardrail."""
    policies, _ = setup
    clock = Clock()
    with engine_for(setup, clock, metrics=False) as engine:
        feed(engine, valid=0, invalid=10)
        (policies / "p.yaml").write_text("# a comment\n" + policy())
        assert engine.reload()
        assert engine.evaluate("g.S", VALID, key="a", track="v1").mode is Mode.WARN


def test_explain_shows_a_tripped_guardrail(setup) -> None:
    """explain() reports the baseline and says the guardrail tripped."""
    clock = Clock()
    with engine_for(setup, clock, metrics=False) as engine:
        feed(engine, valid=0, invalid=10)
        explanation = engine.explain("g.S", track="v1", key="k")
    assert explanation.mode is Mode.WARN
    assert "guardrail tripped" in explanation.reason


def test_the_tripped_gauge_follows_the_guardrail(setup) -> None:
    """policy_guardrail_tripped is 1 while tripped and 0 after the cooldown."""
    clock = Clock()
    registry = CollectorRegistry()
    labels = {"schema": "g.S", "track": "v1"}
    with engine_for(setup, clock, metrics_registry=registry) as engine:
        feed(engine, valid=0, invalid=10)
        assert registry.get_sample_value("policy_guardrail_tripped", labels) == 1.0
        clock.now = T0 + 31
        engine.evaluate("g.S", VALID, key="a", track="v1")
        assert registry.get_sample_value("policy_guardrail_tripped", labels) == 0.0


def test_rules_without_guardrails_are_not_watched(tmp_path: Path, setup) -> None:
    """With no guardrail in the policy set, the guardrail hook is not in the evaluation path."""
    policies, _ = setup
    (policies / "p.yaml").write_text("version: 1\nschemas:\n  g.S: {mode: strict}\n")
    with engine_for(setup, Clock(), metrics=False) as engine:
        assert set(feed(engine, valid=0, invalid=50)) == {Action.REJECTED}
        assert not any(route.guarded for route in engine._state.routes.values())


def test_sliding_window_memory_is_fixed_and_totals_are_exact() -> None:
    """100 000 events keep SLOTS buckets; totals count only the last window."""
    window = SlidingWindow(60.0)
    for i in range(100_000):
        window.add(T0 + i * 0.01, rejected=i % 4 == 0)  # 1 000 s of traffic, 100 per second
    assert len(window._evaluated) == SLOTS
    evaluated, rejected = window.totals(T0 + 1000)
    assert 5_900 <= evaluated <= 6_000  # the last 60 s, give or take one 1 s bucket
    assert rejected == pytest.approx(evaluated / 4, abs=30)
    assert window.totals(T0 + 1000 + 61) == (0, 0)


def test_status_ends_an_expired_cooldown_without_traffic(setup) -> None:
    """After the cooldown, status() alone (no payload) resets the tripped gauge to 0."""
    clock = Clock()
    registry = CollectorRegistry()
    labels = {"schema": "g.S", "track": "v1"}
    with engine_for(setup, clock, metrics_registry=registry) as engine:
        feed(engine, valid=0, invalid=10)
        assert registry.get_sample_value("policy_guardrail_tripped", labels) == 1.0
        clock.now = T0 + 31
        assert engine.status().guardrails == ()
        assert registry.get_sample_value("policy_guardrail_tripped", labels) == 0.0
