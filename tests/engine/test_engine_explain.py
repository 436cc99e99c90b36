"""PolicyEngine.explain: which rule, the canary in force at a time, a key's bucket and fate."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from policy_engine import Explanation, Mode, Settings

SALT_V2 = "shop.Order:v2"
EXPLAIN_KEYS = {
    "schema",
    "track",
    "mode",
    "baseline",
    "canary",
    "bucket",
    "in_canary",
    "rule",
    "reason",
}

POLICY = """\
version: 1
defaults:
  mode: warn
schemas:
  shop.Legacy:
    mode: warn
  shop.Order:
    mode: strict
    canary: 5
    ramp:
      - {at: 2026-07-01T00:00:00Z, canary: 10}
      - {at: 2026-08-01T00:00:00Z, canary: 50}
"""


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp()


def _line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if line.startswith(needle))


def test_explain_names_rule_file_and_line(make_engine, policy_dir):
    """The explanation points at the file and line where the schema's rule is written."""
    eng = make_engine(POLICY)
    e = eng.explain("shop.Order", track="v2")
    assert e.rule is not None
    assert e.rule.file == str(policy_dir / "rules.yaml")
    assert e.rule.line == _line_of(POLICY, "  shop.Order:")
    assert (e.schema, e.track, e.baseline) == ("shop.Order", "v2", Mode.WARN)


@pytest.mark.parametrize(
    ("at", "canary"),
    [
        ("2026-06-30T23:59:59Z", 5),  # before the first step: the written canary
        ("2026-07-01T00:00:00Z", 10),  # a step is in force from its `at`, inclusive
        ("2026-07-31T23:59:59Z", 10),
        ("2026-08-01T00:00:00Z", 50),
        ("2030-01-01T00:00:00Z", 50),
    ],
)
def test_explain_gives_canary_in_force_at(make_engine, at, canary):
    """explain(at=...) reports the ramp step in force at that moment, not now."""
    eng = make_engine(POLICY)
    e = eng.explain("shop.Order", track="v2", at=_epoch(at))
    assert e.canary == canary
    assert e.at == _epoch(at)


def test_explain_defaults_to_the_clock(make_engine, clock):
    """Without at, the engine's clock decides which ramp step is in force."""
    eng = make_engine(POLICY)
    clock.now = _epoch("2026-07-15T00:00:00Z")
    assert eng.explain("shop.Order", track="v2").canary == 10


@pytest.mark.parametrize("inside", [True, False])
def test_explain_bucket_and_in_canary_for_a_key(make_engine, find_key, bucket_of, inside):
    """With a key: its bucket per the formula, in_canary vs the threshold, and the mode it gets."""
    eng = make_engine(POLICY)
    key = find_key(SALT_V2, (lambda b: b < 5000) if inside else (lambda b: b >= 5000))
    e = eng.explain("shop.Order", track="v2", key=key, at=_epoch("2026-09-01T00:00:00Z"))
    assert e.bucket == bucket_of(SALT_V2, key)
    assert e.in_canary is inside
    assert e.mode is (Mode.STRICT if inside else Mode.WARN)
    assert str(e.bucket) in e.reason


def test_explain_without_key_has_no_bucket(make_engine):
    """Without a key there is no bucket: bucket and in_canary are None, mode is the rule's."""
    eng = make_engine(POLICY)
    e = eng.explain("shop.Order", track="v2", at=_epoch("2026-09-01T00:00:00Z"))
    assert (e.bucket, e.in_canary, e.mode) == (None, None, Mode.STRICT)


def test_explain_non_string_key(make_engine, bucket_of):
    """A non-string key is bucketed as its compact JSON text, as in evaluate."""
    eng = make_engine(POLICY)
    assert eng.explain("shop.Order", track="v2", key=42).bucket == bucket_of(SALT_V2, "42")


def test_explain_agrees_with_evaluate(make_engine, clock):
    """For the same key and time, explain's mode is the mode evaluate gives."""
    eng = make_engine(POLICY)
    clock.now = _epoch("2026-08-02T00:00:00Z")
    for n in range(200):
        key = f"acct-{n}"
        e = eng.explain("shop.Order", track="v2", key=key)
        d = eng.evaluate("shop.Order", {"id": "x", "price": 1}, key=key, track="v2")
        assert (e.mode, e.bucket, e.canary) == (d.mode, d.bucket, d.canary)


def test_explain_without_track_resolves_like_evaluate(make_engine):
    """No track argument: explain chooses the track as evaluate does (v1 fallback for Legacy)."""
    eng = make_engine(POLICY)
    assert eng.explain("shop.Legacy").track == "v1"
    assert eng.explain("shop.Order").track == "v2"


def test_explain_without_rule(make_engine):
    """A schema no rule matches is explained as the global default with rule None."""
    eng = make_engine(POLICY, settings=Settings(enforcement=Mode.STRICT))
    e = eng.explain("other.Thing", track="v1", key="k")
    assert (e.rule, e.mode, e.canary) == (None, Mode.STRICT, 100)
    assert "REGISTRY_ENFORCEMENT" in e.reason


def test_explain_respects_force_mode(make_engine):
    """POLICY_FORCE_MODE caps the explained mode and says so."""
    eng = make_engine(POLICY, settings=Settings(force_mode=Mode.WARN))
    e = eng.explain("shop.Order", track="v2", at=_epoch("2026-09-01T00:00:00Z"))
    assert e.mode is Mode.WARN
    assert "POLICY_FORCE_MODE" in e.reason


def test_explain_to_dict_matches_spec(make_engine, policy_dir):
    """to_dict has exactly SPEC §6's explain keys and is JSON-serialisable."""
    eng = make_engine(POLICY)
    e = eng.explain("shop.Order", track="v2", key="k", at=_epoch("2026-09-01T00:00:00Z"))
    assert isinstance(e, Explanation)
    data = json.loads(json.dumps(e.to_dict()))
    assert set(data) == EXPLAIN_KEYS
    assert data["rule"] == {"file": str(policy_dir / "rules.yaml"), "line": e.rule.line}
    assert data["mode"] in ("strict", "warn")
    assert data["baseline"] == "warn"
    assert data["canary"] == 50


def test_explain_to_dict_without_key_or_rule(make_engine):
    """Without a key and without a rule the JSON form carries nulls, not missing keys."""
    eng = make_engine(POLICY)
    data = eng.explain("other.Thing", track="v1").to_dict()
    assert set(data) == EXPLAIN_KEYS
    assert (data["bucket"], data["in_canary"], data["rule"]) == (None, None, None)


def test_explain_takes_an_aware_datetime_as_at(make_engine):
    """`at` may be a timezone-aware datetime; it means the same instant as its epoch seconds."""
    eng = make_engine(POLICY)
    moment = datetime(2026, 7, 15, tzinfo=UTC)
    by_datetime = eng.explain("shop.Order", track="v2", at=moment)
    by_seconds = eng.explain("shop.Order", track="v2", at=moment.timestamp())
    assert by_datetime.canary == by_seconds.canary == 10


def test_explain_refuses_a_naive_datetime(make_engine):
    """A naive datetime is ambiguous (which zone?), so explain refuses it with ValueError."""
    eng = make_engine(POLICY)
    with pytest.raises(ValueError, match="timezone-aware"):
        eng.explain("shop.Order", at=datetime(2026, 7, 15))


def test_explain_says_when_no_ramp_step_is_in_force_yet(make_engine):
    """Before a ramp's first step the reason says so instead of naming a step in force."""
    eng = make_engine(POLICY)
    explanation = eng.explain("shop.Order", track="v2", at=datetime(2026, 6, 1, tzinfo=UTC))
    assert explanation.canary == 5
    assert "before the ramp's first step" in explanation.reason
