"""The shipped examples together: policies/*.yaml with schemas/ over examples/feed.jsonl.

Expectations are read off the policy files by hand (see the comments there), not from the engine.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from policy_engine import Action, Mode, PolicyEngine

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
SCHEMAS = ROOT / "schemas"
FEED = ROOT / "examples" / "feed.jsonl"
#: Inside the feed's time range (2026-11-20..25): the marketdata ramp is at its 10% step.
FEED_TIME = datetime(2026, 11, 22, tzinfo=UTC).timestamp()


class FixedClock:
    """A clock that says what the test sets."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def example_clock() -> FixedClock:
    """The example engine's clock, at a moment inside the feed's time range."""
    return FixedClock(FEED_TIME)


@pytest.fixture
def example(example_clock):
    """An engine over the shipped policies and schemas."""
    with PolicyEngine(policies=str(POLICIES), registry=str(SCHEMAS), clock=example_clock) as eng:
        yield eng


def _envelopes():
    for number, line in enumerate(FEED.read_text(encoding="utf-8").splitlines(), 1):
        try:
            envelope = json.loads(line)
        except ValueError:
            continue
        if isinstance(envelope, dict) and "payload" in envelope and "schema" in envelope:
            yield number, envelope


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _line_of(path: Path, needle: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(n for n, line in enumerate(lines, 1) if line.strip().startswith(needle))


def test_feed_evaluates_without_exception(example):
    """Every well-formed envelope of the example feed evaluates to a Decision."""
    actions: Counter[str] = Counter()
    count = 0
    for _, env in _envelopes():
        d = example.evaluate(
            env["schema"], env["payload"], key=env.get("key"), track=env.get("track")
        )
        actions[d.action.value] += 1
        count += 1
    assert count >= 11_990  # 12 000 lines, three of them not envelopes
    validated = actions["accepted"] + actions["logged"] + actions["rejected"]
    # the README: about 3.7% of payloads are invalid, the rest valid
    assert actions["logged"] + actions["rejected"] > 0
    assert actions["accepted"] / validated > 0.9


def test_rate_adjustment_v1_is_off(example):
    """telemetry.RateAdjustment v1 is `mode: off`: always skipped, valid or not, for any key."""
    for n in range(50):
        for payload in ({"producer_id": f"p-{n}"}, {"garbage": True}, None):
            d = example.evaluate("telemetry.RateAdjustment", payload, key=f"p-{n}", track="v1")
            assert (d.mode, d.action, d.valid) == (Mode.OFF, Action.SKIPPED, None)


def test_feed_rate_adjustment_v1_lines_are_skipped(example):
    """In the feed, every RateAdjustment line on track v1 is skipped."""
    seen = 0
    for _, env in _envelopes():
        if env["schema"] == "telemetry.RateAdjustment" and env.get("track") == "v1":
            d = example.evaluate(env["schema"], env["payload"], key=env.get("key"), track="v1")
            assert d.action is Action.SKIPPED
            seen += 1
    assert seen > 0


def test_ohlcv_has_no_v2_and_resolves_to_v1(example):
    """marketdata.OHLCVBatch has only v1: no track given resolves to v1 under its exact rule."""
    d = example.evaluate("marketdata.OHLCVBatch", {"producer_id": "md-feed-1"})
    assert d.track == "v1"
    assert d.rule is not None
    assert d.rule.file.endswith("marketdata.yaml")
    assert d.rule.line == _line_of(POLICIES / "marketdata.yaml", "marketdata.OHLCVBatch:")
    assert d.canary == 12.5


def test_ohlcv_canary_uses_its_salt_and_producer_key(example, bucket_of, find_key):
    """OHLCVBatch buckets producer_id with salt ohlcv-rollout-2026q4; 12.5% of them are strict."""
    salt = "ohlcv-rollout-2026q4"
    inside = find_key(salt, lambda b: b < 1250, prefix="md-feed-")
    outside = find_key(salt, lambda b: b >= 1250, prefix="md-feed-")
    d_in = example.evaluate("marketdata.OHLCVBatch", {"producer_id": inside})
    d_out = example.evaluate("marketdata.OHLCVBatch", {"producer_id": outside})
    assert (d_in.key_source, d_in.bucket) == ("payload", bucket_of(salt, inside))
    assert (d_in.mode, d_in.action) == (Mode.STRICT, Action.REJECTED)
    assert (d_out.mode, d_out.action) == (Mode.WARN, Action.LOGGED)


def test_feed_ohlcv_lines_resolve_to_v1(example):
    """Every OHLCVBatch line of the feed is evaluated on v1."""
    tracks = {
        example.evaluate(e["schema"], e["payload"], key=e.get("key"), track=e.get("track")).track
        for _, e in _envelopes()
        if e["schema"] == "marketdata.OHLCVBatch"
    }
    assert tracks == {"v1"}


@pytest.mark.parametrize(
    ("at", "canary"),
    [
        ("2026-10-31T23:59:59Z", 0),  # before the first step, no canary written
        ("2026-11-01T00:00:00Z", 10),
        ("2026-12-01T00:00:00Z", 50),
        ("2027-01-05T00:00:00Z", 100),
    ],
)
def test_trade_event_v2_ramp(example, example_clock, at, canary):
    """marketdata.* v2 follows the dated ramp: 0 before 1 November, then 10, 50, 100."""
    example_clock.now = _epoch(at)
    d = example.evaluate("marketdata.TradeEvent", {"symbol": "ABC"}, track="v2")
    assert d.canary == canary
    assert d.rule is not None
    assert d.rule.pattern == "marketdata.*"


def test_trade_event_v2_before_ramp_is_warn_for_everyone(example, example_clock):
    """Before the ramp starts every symbol gets the baseline, warn (one below strict)."""
    example_clock.now = _epoch("2026-10-01T00:00:00Z")
    for n in range(50):
        d = example.evaluate("marketdata.TradeEvent", {"symbol": f"S{n}"}, track="v2")
        assert (d.mode, d.action) == (Mode.WARN, Action.LOGGED)


def test_trade_event_v1_is_warn_from_file_defaults(example):
    """marketdata.* names no v1 block: v1 gets the file defaults, warn for every key."""
    for n in range(20):
        d = example.evaluate("marketdata.TradeEvent", {"symbol": f"S{n}"}, track="v1")
        assert (d.mode, d.action) == (Mode.WARN, Action.LOGGED)


def test_feedback_event_v2_keys_on_source_id(example, bucket_of, find_key):
    """FeedbackEvent v2 buckets source.id with the default salt; 25% of ids are strict."""
    salt = "telemetry.FeedbackEvent:v2"
    inside = find_key(salt, lambda b: b < 2500, prefix="checkout-web-")
    outside = find_key(salt, lambda b: b >= 2500, prefix="checkout-web-")
    d_in = example.evaluate("telemetry.FeedbackEvent", {"source": {"id": inside}})
    d_out = example.evaluate("telemetry.FeedbackEvent", {"source": {"id": outside}})
    assert d_in.track == "v2"
    assert (d_in.key_source, d_in.bucket) == ("payload", bucket_of(salt, inside))
    assert (d_in.mode, d_out.mode) == (Mode.STRICT, Mode.WARN)


def test_rate_adjustment_v2_canary_two_decimals(example, bucket_of, find_key):
    """RateAdjustment v2: canary 33.33 with salt rate-adjustment-v2 splits at bucket 3333."""
    salt = "rate-adjustment-v2"
    edge_in = find_key(salt, lambda b: b == 3332)
    edge_out = find_key(salt, lambda b: b == 3333)
    d_in = example.evaluate("telemetry.RateAdjustment", {}, key=edge_in, track="v2")
    d_out = example.evaluate("telemetry.RateAdjustment", {}, key=edge_out, track="v2")
    assert d_in.canary == 33.33
    assert (d_in.mode, d_out.mode) == (Mode.STRICT, Mode.WARN)


def test_ohlcv_without_schema_rejects_in_canary(tmp_path, bucket_of, find_key, example_clock):
    """OHLCVBatch says on_registry_error: reject; with no schema a strict key is rejected."""
    empty_registry = tmp_path / "registry"
    empty_registry.mkdir()
    salt = "ohlcv-rollout-2026q4"
    inside = find_key(salt, lambda b: b < 1250)
    outside = find_key(salt, lambda b: b >= 1250)
    with PolicyEngine(
        policies=str(POLICIES), registry=str(empty_registry), clock=example_clock
    ) as eng:
        d_in = eng.evaluate("marketdata.OHLCVBatch", {}, key=inside, track="v1")
        d_out = eng.evaluate("marketdata.OHLCVBatch", {}, key=outside, track="v1")
    assert (d_in.mode, d_in.action) == (Mode.STRICT, Action.REJECTED)
    assert (d_out.mode, d_out.action) == (Mode.WARN, Action.SKIPPED)
