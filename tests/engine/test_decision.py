"""Decision and friends as data: the JSON form, the violation cap, the lazy bucket, modes."""

from __future__ import annotations

import json

import pytest

from policy_engine import Action, Mode, Violation

DECISION_KEYS = {
    "schema",
    "track",
    "mode",
    "valid",
    "action",
    "violations",
    "rule",
    "bucket",
    "canary",
    "key_source",
    "policy_checksum",
    "reason",
}
INVALID = {"id": "o-1", "price": -1}


def test_to_dict_has_the_spec_keys(make_engine, one_rule):
    """to_dict has exactly SPEC §6's Decision keys plus "reason", and survives JSON."""
    eng = make_engine(one_rule("shop.Order", "mode: strict\ncanary: 50"))
    d = eng.evaluate("shop.Order", INVALID, key="k")
    data = json.loads(json.dumps(d.to_dict()))
    assert set(data) == DECISION_KEYS
    assert data["schema"] == "shop.Order"
    assert data["track"] == "v2"
    assert data["mode"] == d.mode.value
    assert data["action"] == d.action.value
    assert data["valid"] is False
    assert data["violations"] == [
        {"path": v.path, "keyword": v.keyword, "message": v.message} for v in d.violations
    ]
    assert set(data["rule"]) == {"file", "line"}
    assert data["canary"] == 50
    assert data["key_source"] == "argument"
    assert data["policy_checksum"] == eng.checksum
    assert isinstance(data["reason"], str)
    assert data["reason"]


def test_to_dict_without_rule_or_validation(make_engine):
    """A default-rule, unvalidated decision serialises rule and valid as null."""
    eng = make_engine()
    data = json.loads(json.dumps(eng.evaluate("shop.Nothing", {"a": 1}).to_dict()))
    assert set(data) == DECISION_KEYS
    assert (data["rule"], data["valid"], data["action"]) == (None, None, "skipped")
    assert data["key_source"] == "hash"


def test_violations_capped_at_twenty(make_engine, one_rule, new_source):
    """A payload with 30 failures carries exactly 20 violations (SPEC §4)."""
    schema = {
        "type": "object",
        "properties": {f"f{n:02d}": {"type": "integer"} for n in range(30)},
    }
    source = new_source({("shop.Wide", "v1"): schema})
    eng = make_engine(one_rule("shop.Wide", "mode: warn"), registry=source)
    payload = {f"f{n:02d}": "not an integer" for n in range(30)}
    d = eng.evaluate("shop.Wide", payload, key="k", track="v1")
    assert d.action is Action.LOGGED
    assert len(d.violations) == 20
    assert len(d.to_dict()["violations"]) == 20
    assert all(isinstance(v, Violation) and v.path.startswith("/f") for v in d.violations)


def test_violation_messages_are_bounded(make_engine, one_rule):
    """A violation quoting a 1 MB value keeps its message short."""
    eng = make_engine(one_rule("shop.Order", "mode: warn"))
    d = eng.evaluate("shop.Order", {"id": "o", "price": "9" * 1_000_000}, key="k")
    assert d.violations
    assert max(len(v.message) for v in d.violations) < 1000


@pytest.mark.parametrize("canary", [0, 100])
def test_lazy_bucket_equals_formula(make_engine, one_rule, bucket_of, canary):
    """When the canary does not need the bucket, it is still the formula's value on access."""
    eng = make_engine(one_rule("shop.Order", f"mode: strict\ncanary: {canary}\nsalt: lazy"))
    for key in ("alpha", "beta", "", "ключ", "42"):
        d = eng.evaluate("shop.Order", INVALID, key=key)
        assert d.bucket == bucket_of("lazy", key)
        assert d.to_dict()["bucket"] == bucket_of("lazy", key)


def test_lazy_bucket_from_payload_key(make_engine, one_rule, bucket_of):
    """Canary 100 and a key path: the lazily computed bucket uses the payload's key value."""
    eng = make_engine(one_rule("shop.Order", "mode: strict\nkey: producer.id"))
    d = eng.evaluate("shop.Order", {**INVALID, "producer": {"id": "prod-7"}})
    assert d.key_source == "payload"
    assert d.bucket == bucket_of("shop.Order:v2", "prod-7")


def test_lazy_bucket_from_payload_hash_is_stable(make_engine, one_rule):
    """Canary 100, no key: the lazy hash bucket matches the one a canary split computes."""
    lazy = make_engine(one_rule("shop.Order", "mode: strict"))
    payload = {"id": "o-9", "price": 2, "lines": [{"sku": "ABC-1"}]}
    d_lazy = lazy.evaluate("shop.Order", payload)
    split = make_engine(one_rule("shop.Order", "mode: strict\ncanary: 50"))
    d_split = split.evaluate("shop.Order", dict(reversed(list(payload.items()))))
    assert d_lazy.key_source == d_split.key_source == "hash"
    assert d_lazy.bucket == d_split.bucket


def test_in_canary_matches_bucket_and_canary(make_engine, one_rule):
    """in_canary is bucket < round(canary * 100), and the mode follows it."""
    eng = make_engine(one_rule("shop.Order", "mode: strict\ncanary: 37.5"))
    for n in range(100):
        d = eng.evaluate("shop.Order", INVALID, key=f"u{n}")
        assert d.in_canary is (d.bucket < 3750)
        assert d.mode is (Mode.STRICT if d.in_canary else Mode.WARN)


def test_reason_mentions_bucket_and_canary(make_engine, one_rule):
    """The reason sentence names the rule, the bucket and the canary."""
    eng = make_engine(one_rule("shop.Order", "mode: strict\ncanary: 12.5"))
    d = eng.evaluate("shop.Order", INVALID, key="k")
    assert "shop.Order" in d.reason
    assert str(d.bucket) in d.reason
    assert "12.5" in d.reason


@pytest.mark.parametrize(
    ("mode", "baseline"),
    [(Mode.STRICT, Mode.WARN), (Mode.WARN, Mode.OFF), (Mode.OFF, Mode.OFF)],
)
def test_default_baseline_is_one_step_below(mode, baseline):
    """SPEC §1: the default baseline is one step below the mode (strict->warn, warn->off)."""
    assert mode.step_down() is baseline


@pytest.mark.parametrize(
    ("mode", "ceiling", "capped"),
    [
        (Mode.STRICT, Mode.WARN, Mode.WARN),
        (Mode.STRICT, Mode.OFF, Mode.OFF),
        (Mode.WARN, Mode.OFF, Mode.OFF),
        (Mode.OFF, Mode.WARN, Mode.OFF),
        (Mode.WARN, Mode.WARN, Mode.WARN),
        (Mode.STRICT, None, Mode.STRICT),
    ],
)
def test_cap_never_raises_a_mode(mode, ceiling, capped):
    """Mode.cap lowers a mode to the ceiling and never raises it."""
    assert mode.cap(ceiling) is capped


def test_enum_values_are_the_spec_words():
    """Mode and Action values are the words SPEC §1 and §5 use."""
    assert [m.value for m in Mode] == ["off", "warn", "strict"]
    assert {a.value for a in Action} == {"accepted", "logged", "rejected", "skipped"}
