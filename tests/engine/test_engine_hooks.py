"""Hooks around evaluation: observers see decisions, adjusters lower modes, faults are ignored."""

from __future__ import annotations

import logging

import pytest

from policy_engine import Action, ConfigError, Decision, Mode, SchemaValidationError, Settings
from policy_engine.hooks import TIMING_SAMPLE

INVALID = {"id": "o-1", "price": -1}


class Recorder:
    """An observer that keeps every decision it is shown."""

    def __init__(self) -> None:
        self.seen: list[tuple[Decision, float]] = []

    def after_evaluation(self, decision: Decision, seconds: float) -> None:
        self.seen.append((decision, seconds))


class Lower:
    """An adjuster that lowers strict to warn and says why; it records what it was given."""

    def __init__(self, reason: str = "guardrail tripped: 5% rejected") -> None:
        self.reason = reason
        self.calls: list[tuple[object, Mode, float]] = []

    def adjust_mode(self, rule, mode, now):
        self.calls.append((rule, mode, now))
        if mode is Mode.STRICT:
            return Mode.WARN, self.reason
        return None


class Raise:
    """A hook whose both methods fail."""

    def adjust_mode(self, rule, mode, now):
        raise RuntimeError("adjuster is broken")

    def after_evaluation(self, decision, seconds):
        raise RuntimeError("observer is broken")


class Escalate:
    """An adjuster that tries to raise every mode to strict."""

    def adjust_mode(self, rule, mode, now):
        return Mode.STRICT, "escalated"


def test_observer_sees_every_decision(make_engine, one_rule):
    """An observer sees every Decision, whatever its action, including one enforce raises for."""
    recorder = Recorder()
    eng = make_engine(one_rule("shop.Order", "mode: strict"), hooks=(recorder,))
    returned = [
        eng.evaluate("shop.Order", INVALID, key="a"),  # rejected
        eng.evaluate("shop.Legacy", {"name": "x"}),  # accepted (global default warn)
        eng.evaluate("shop.Nothing", {}),  # skipped (no schema)
    ]
    with pytest.raises(SchemaValidationError) as info:
        eng.enforce("shop.Order", INVALID, key="b")
    returned.append(info.value.decision)
    assert [d for d, _ in recorder.seen] == returned
    assert all(seconds is None or seconds >= 0 for _, seconds in recorder.seen)


def test_one_evaluation_in_timing_sample_is_timed(make_engine, one_rule):
    """Observers get the duration of every TIMING_SAMPLE-th evaluation and None for the others,
    so a hook that weights each timed one by TIMING_SAMPLE accounts for every evaluation."""
    recorder = Recorder()
    eng = make_engine(one_rule("shop.Order", "mode: warn"), hooks=(recorder,))
    for n in range(3 * TIMING_SAMPLE):
        eng.evaluate("shop.Order", {"id": str(n), "price": n}, key=n)
    timed = [seconds for _, seconds in recorder.seen if seconds is not None]
    assert len(timed) == 3
    assert all(0 <= seconds < 60 for seconds in timed)


def test_observer_called_once_per_payload(make_engine, one_rule):
    """N evaluations give exactly N observer calls, each with its own Decision."""
    recorder = Recorder()
    eng = make_engine(one_rule("shop.Order", "mode: warn"), hooks=(recorder,))
    returned = [eng.evaluate("shop.Order", {"id": str(n), "price": n}, key=n) for n in range(25)]
    assert [d for d, _ in recorder.seen] == returned


def test_adjuster_lowers_mode_and_explains(make_engine, one_rule, clock):
    """An adjuster can lower strict to warn; its reason shows in decision.reason."""
    lower = Lower()
    eng = make_engine(one_rule("shop.Order", "mode: strict"), hooks=(lower,))
    d = eng.evaluate("shop.Order", INVALID, key="k")
    assert (d.mode, d.action) == (Mode.WARN, Action.LOGGED)
    assert "guardrail tripped: 5% rejected" in d.reason
    rule, mode, now = lower.calls[0]
    assert (rule.schema, mode, now) == ("shop.Order", Mode.STRICT, clock.now)


def test_adjuster_returning_none_keeps_mode(make_engine, one_rule):
    """An adjuster that returns None leaves the resolved mode alone."""
    eng = make_engine(one_rule("shop.Order", "mode: warn"), hooks=(Lower(),))
    d = eng.evaluate("shop.Order", INVALID, key="k")
    assert (d.mode, d.action) == (Mode.WARN, Action.LOGGED)


def test_force_mode_caps_after_adjusters(make_engine, one_rule):
    """POLICY_FORCE_MODE applies after adjusters: an escalation to strict is capped to warn."""
    eng = make_engine(
        one_rule("shop.Order", "mode: warn"),
        hooks=(Escalate(),),
        settings=Settings(force_mode=Mode.WARN),
    )
    assert eng.evaluate("shop.Order", INVALID, key="k").action is Action.LOGGED


def test_raising_hooks_are_ignored(make_engine, one_rule, caplog):
    """A hook that raises is logged and ignored: evaluate still returns the normal decision."""
    eng = make_engine(one_rule("shop.Order", "mode: strict"), hooks=(Raise(),))
    with caplog.at_level(logging.ERROR, logger="policy_engine"):
        d = eng.evaluate("shop.Order", INVALID, key="k")
    assert (d.mode, d.action) == (Mode.STRICT, Action.REJECTED)
    assert "adjuster is broken" in caplog.text or "adjust_mode" in caplog.text


def test_raising_observer_does_not_hide_others(make_engine, one_rule):
    """An observer after a failing one still sees the decision."""
    recorder = Recorder()
    eng = make_engine(one_rule("shop.Order", "mode: warn"), hooks=(Raise(), recorder))
    d = eng.evaluate("shop.Order", INVALID, key="k")
    assert [seen for seen, _ in recorder.seen] == [d]


def test_raising_adjuster_does_not_break_explain(make_engine, one_rule):
    """explain, like evaluate, ignores an adjuster that raises."""
    eng = make_engine(one_rule("shop.Order", "mode: strict"), hooks=(Raise(),))
    assert eng.explain("shop.Order", key="k").mode is Mode.STRICT


@pytest.mark.parametrize("hook", [object(), "not a hook", 42])
def test_hook_with_neither_method_is_a_config_error(make_engine, hook):
    """A hook object with neither adjust_mode() nor after_evaluation() is refused at start."""
    with pytest.raises(ConfigError):
        make_engine(hooks=(hook,))


def test_one_object_can_be_both_kinds(make_engine, one_rule):
    """An object with both methods both adjusts and observes."""

    class Both(Lower, Recorder):
        def __init__(self) -> None:
            Lower.__init__(self)
            Recorder.__init__(self)

    both = Both()
    eng = make_engine(one_rule("shop.Order", "mode: strict"), hooks=(both,))
    d = eng.evaluate("shop.Order", INVALID, key="k")
    assert d.mode is Mode.WARN
    assert [seen for seen, _ in both.seen] == [d]


def test_adjuster_cannot_raise_the_mode(make_engine, one_rule, caplog):
    """An adjuster that returns a stricter mode is ignored and logged: hooks only step back."""
    eng = make_engine(one_rule("shop.Order", "mode: warn"), hooks=(Escalate(),))
    with caplog.at_level(logging.WARNING, logger="policy_engine"):
        d = eng.evaluate("shop.Order", INVALID, key="k")
    assert (d.mode, d.action) == (Mode.WARN, Action.LOGGED)
    assert "escalated" not in d.reason
    assert any("Escalate" in r.getMessage() for r in caplog.records)
