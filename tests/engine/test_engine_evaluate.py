"""PolicyEngine.evaluate / enforce: modes, canary split, keys, ramps, defaults and the brakes.

Expected buckets come from SPEC §3.5's formula written out in the conftest (``bucket_of``), never
from the engine; keys are found by searching for one whose bucket is on the wanted side.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy_engine import Action, Decision, Mode, SchemaValidationError, Settings

VALID = {"id": "o-1", "price": 3.5}
INVALID = {"id": "o-1", "price": -1}
SALT_V2 = "shop.Order:v2"


def _epoch(year: int, month: int, day: int) -> float:
    return datetime(year, month, day, tzinfo=UTC).timestamp()


# ---------------------------------------------------------------------------- modes and actions


@pytest.mark.parametrize(
    ("mode", "payload", "action", "valid"),
    [
        ("strict", VALID, Action.ACCEPTED, True),
        ("strict", INVALID, Action.REJECTED, False),
        ("warn", VALID, Action.ACCEPTED, True),
        ("warn", INVALID, Action.LOGGED, False),
        ("off", VALID, Action.SKIPPED, None),
        ("off", INVALID, Action.SKIPPED, None),
    ],
)
def test_action_follows_mode_and_validity(make_engine, one_rule, mode, payload, action, valid):
    """Each mode gives SPEC §5's action: accepted if valid, logged (warn) / rejected (strict)."""
    eng = make_engine(one_rule("shop.Order", f"mode: {mode}"))
    d = eng.evaluate("shop.Order", payload, key="p-1")
    assert isinstance(d, Decision)
    assert (d.mode, d.action, d.valid) == (Mode(mode), action, valid)


def test_invalid_payload_carries_violation_with_pointer(make_engine, one_rule):
    """A failing payload reports the JSON Pointer and keyword of what broke."""
    eng = make_engine(one_rule("shop.Order", "mode: warn"))
    d = eng.evaluate("shop.Order", INVALID, key="p-1")
    assert [(v.path, v.keyword) for v in d.violations] == [("/price", "minimum")]


def test_mode_off_does_not_validate(make_engine, one_rule, source):
    """Mode off skips validation entirely: no violations and no schema fetched for the track."""
    eng = make_engine(one_rule("shop.Order", "mode: off"))
    d = eng.evaluate("shop.Order", INVALID, key="p-1", track="v2")
    assert d.violations == ()
    assert source.fetches[("shop.Order", "v2")] == 0


def test_formats_are_checked(make_engine, one_rule):
    """A bad date-time is a violation (SPEC §4: formats are checked)."""
    eng = make_engine(one_rule("shop.Order", "mode: strict"))
    d = eng.evaluate("shop.Order", {**VALID, "placed_at": "yesterday"}, key="p-1")
    assert d.action is Action.REJECTED
    assert [v.path for v in d.violations] == ["/placed_at"]


# ---------------------------------------------------------------------------- canary split


def test_key_below_threshold_gets_mode(make_engine, one_rule, find_key, bucket_of):
    """A key whose bucket is below round(canary * 100) gets the rule's mode."""
    eng = make_engine(one_rule("shop.Order", "mode: strict\ncanary: 30"))
    key = find_key(SALT_V2, lambda b: b < 3000)
    d = eng.evaluate("shop.Order", INVALID, key=key)
    assert d.bucket == bucket_of(SALT_V2, key)
    assert (d.mode, d.action, d.canary) == (Mode.STRICT, Action.REJECTED, 30)


def test_key_above_threshold_gets_baseline(make_engine, one_rule, find_key, bucket_of):
    """A key whose bucket is at or above the threshold gets the baseline (strict -> warn)."""
    eng = make_engine(one_rule("shop.Order", "mode: strict\ncanary: 30"))
    key = find_key(SALT_V2, lambda b: b >= 3000)
    d = eng.evaluate("shop.Order", INVALID, key=key)
    assert d.bucket == bucket_of(SALT_V2, key)
    assert (d.mode, d.action) == (Mode.WARN, Action.LOGGED)


def test_threshold_boundary_uses_two_decimals(make_engine, one_rule, find_key):
    """canary 33.33 covers buckets 0..3332: bucket 3332 is inside and 3333 is outside."""
    eng = make_engine(one_rule("shop.Order", "mode: strict\ncanary: 33.33"))
    inside = find_key(SALT_V2, lambda b: b == 3332)
    outside = find_key(SALT_V2, lambda b: b == 3333)
    assert eng.evaluate("shop.Order", VALID, key=inside).mode is Mode.STRICT
    assert eng.evaluate("shop.Order", VALID, key=outside).mode is Mode.WARN


def test_custom_salt_and_baseline(make_engine, one_rule, find_key, bucket_of):
    """A written salt replaces "<schema>:<track>" in the hash, and baseline off is honoured."""
    eng = make_engine(
        one_rule("shop.Order", "mode: warn\nbaseline: off\ncanary: 50\nsalt: my-salt")
    )
    inside = find_key("my-salt", lambda b: b < 5000)
    outside = find_key("my-salt", lambda b: b >= 5000)
    d_in = eng.evaluate("shop.Order", INVALID, key=inside)
    d_out = eng.evaluate("shop.Order", INVALID, key=outside)
    assert d_in.bucket == bucket_of("my-salt", inside)
    assert (d_in.mode, d_in.action) == (Mode.WARN, Action.LOGGED)
    assert (d_out.mode, d_out.action) == (Mode.OFF, Action.SKIPPED)


@pytest.mark.parametrize("canary", [0, 100])
def test_canary_zero_and_hundred_apply_to_every_key(make_engine, one_rule, bucket_of, canary):
    """Canary 0 gives every key the baseline, canary 100 every key the mode; buckets still exact."""
    eng = make_engine(one_rule("shop.Order", f"mode: strict\ncanary: {canary}"))
    expected = Mode.STRICT if canary == 100 else Mode.WARN
    for n in range(50):
        d = eng.evaluate("shop.Order", VALID, key=f"user-{n}")
        assert d.mode is expected
        assert d.bucket == bucket_of(SALT_V2, f"user-{n}")


def test_canary_share_is_close_to_the_percentage(make_engine, one_rule):
    """Over many keys about canary % get the mode (25% of 4000 keys, within 3 points)."""
    eng = make_engine(one_rule("shop.Order", "mode: strict\ncanary: 25"))
    strict = sum(
        eng.evaluate("shop.Order", VALID, key=f"producer-{n}").mode is Mode.STRICT
        for n in range(4000)
    )
    assert abs(strict / 4000 - 0.25) < 0.03


# ---------------------------------------------------------------------------- keys


def test_key_argument_wins_over_payload_path(make_engine, one_rule, bucket_of):
    """The key argument is used even when the rule's key path exists in the payload."""
    eng = make_engine(one_rule("shop.Order", "mode: strict\ncanary: 50\nkey: producer.id"))
    payload = {**VALID, "producer": {"id": "from-payload"}}
    d = eng.evaluate("shop.Order", payload, key="from-argument")
    assert d.key_source == "argument"
    assert d.bucket == bucket_of(SALT_V2, "from-argument")


def test_key_from_dotted_path_in_payload(make_engine, one_rule, find_key, bucket_of):
    """Without a key argument the value at the rule's dotted key path decides the bucket."""
    eng = make_engine(one_rule("shop.Order", "mode: strict\ncanary: 40\nkey: producer.id"))
    inside = find_key(SALT_V2, lambda b: b < 4000)
    outside = find_key(SALT_V2, lambda b: b >= 4000)
    d_in = eng.evaluate("shop.Order", {**INVALID, "producer": {"id": inside}})
    d_out = eng.evaluate("shop.Order", {**INVALID, "producer": {"id": outside}})
    assert d_in.key_source == d_out.key_source == "payload"
    assert d_in.bucket == bucket_of(SALT_V2, inside)
    assert (d_in.mode, d_in.action) == (Mode.STRICT, Action.REJECTED)
    assert (d_out.mode, d_out.action) == (Mode.WARN, Action.LOGGED)


@pytest.mark.parametrize(("value", "text"), [(42, "42"), (True, "true"), (False, "false")])
def test_non_string_key_in_payload_is_its_json_text(make_engine, one_rule, bucket_of, value, text):
    """A non-string key value at the key path is hashed as its compact JSON (42 -> "42")."""
    eng = make_engine(one_rule("shop.Order", "mode: strict\ncanary: 50\nkey: account"))
    d = eng.evaluate("shop.Order", {**VALID, "account": value})
    assert d.key_source == "payload"
    assert d.bucket == bucket_of(SALT_V2, text)


@pytest.mark.parametrize(("value", "text"), [(42, "42"), (True, "true")])
def test_non_string_key_argument_is_its_json_text(make_engine, one_rule, bucket_of, value, text):
    """A non-string key argument is hashed as its compact JSON (true -> "true")."""
    eng = make_engine(one_rule("shop.Order", "mode: strict\ncanary: 50"))
    d = eng.evaluate("shop.Order", VALID, key=value)
    assert d.key_source == "argument"
    assert d.bucket == bucket_of(SALT_V2, text)


def test_string_subclass_key_is_the_string_itself(make_engine, one_rule, bucket_of):
    """A str subclass (a StrEnum member) is a string key: hashed as its text, not as JSON."""

    class Producer(StrEnum):
        CHECKOUT = "checkout-web-01"

    eng = make_engine(one_rule("shop.Order", "mode: strict\ncanary: 50"))
    d = eng.evaluate("shop.Order", VALID, key=Producer.CHECKOUT)
    assert d.bucket == bucket_of(SALT_V2, "checkout-web-01")
    assert eng.explain("shop.Order", key=Producer.CHECKOUT).bucket == d.bucket


def test_missing_key_falls_back_to_a_stable_payload_hash(make_engine, one_rule):
    """No key argument and no value at the key path: the payload hash decides, stably."""
    eng = make_engine(one_rule("shop.Order", "mode: strict\ncanary: 50\nkey: producer.id"))
    first = eng.evaluate("shop.Order", {"id": "o-7", "price": 1, "lines": [{"sku": "ABC-1"}]})
    again = eng.evaluate("shop.Order", {"id": "o-7", "price": 1, "lines": [{"sku": "ABC-1"}]})
    reordered = eng.evaluate("shop.Order", {"lines": [{"sku": "ABC-1"}], "price": 1, "id": "o-7"})
    assert first.key_source == again.key_source == reordered.key_source == "hash"
    assert first.bucket == again.bucket == reordered.bucket
    assert first.mode is again.mode is reordered.mode


def test_null_key_value_falls_back_to_hash(make_engine, one_rule):
    """A key path whose value is null counts as missing (key_source "hash")."""
    eng = make_engine(one_rule("shop.Order", "mode: strict\ncanary: 50\nkey: producer.id"))
    d = eng.evaluate("shop.Order", {**VALID, "producer": {"id": None}})
    assert d.key_source == "hash"


def test_payload_hash_spreads_distinct_payloads(make_engine, one_rule):
    """Distinct keyless payloads land in many different buckets (the hash is not constant)."""
    eng = make_engine(one_rule("shop.Order", "mode: strict\ncanary: 50"))
    buckets = {eng.evaluate("shop.Order", {"id": f"o-{n}", "price": n}).bucket for n in range(200)}
    assert len(buckets) > 150


# ---------------------------------------------------------------------------- ramps

RAMP = """
mode: strict
tracks:
  v2:
    ramp:
      - {at: 2026-07-01T00:00:00Z, canary: 10}
      - {at: 2026-08-01T00:00:00Z, canary: 50}
      - {at: 2026-09-01T00:00:00Z, canary: 100}
"""


@pytest.mark.parametrize(
    ("moment", "canary", "mode"),
    [
        (_epoch(2026, 6, 30), 0, Mode.WARN),  # before the first step, no canary written
        (_epoch(2026, 7, 1), 10, Mode.WARN),  # exactly at the first step; bucket >= 1000
        (_epoch(2026, 7, 31), 10, Mode.WARN),
        (_epoch(2026, 8, 1), 50, Mode.STRICT),  # exactly at the second step; bucket < 5000
        (_epoch(2026, 8, 15), 50, Mode.STRICT),
        (_epoch(2027, 1, 1), 100, Mode.STRICT),  # after the last step
    ],
)
def test_ramp_step_in_force_follows_the_clock(
    make_engine, one_rule, find_key, clock, moment, canary, mode
):
    """The latest ramp step at or before now sets the canary; before the first it is 0."""
    eng = make_engine(one_rule("shop.Order", RAMP))
    key = find_key(SALT_V2, lambda b: 1000 <= b < 5000)
    clock.now = moment
    d = eng.evaluate("shop.Order", VALID, key=key)
    assert (d.canary, d.mode) == (canary, mode)


def test_ramp_before_first_step_uses_written_canary(make_engine, one_rule, find_key, clock):
    """Before the first ramp step an explicitly written canary is in force."""
    eng = make_engine(
        one_rule(
            "shop.Order",
            "mode: strict\ncanary: 5\nramp:\n  - {at: 2026-07-01T00:00:00Z, canary: 60}",
        )
    )
    key = find_key(SALT_V2, lambda b: b < 500)
    clock.now = _epoch(2026, 6, 15)
    before = eng.evaluate("shop.Order", VALID, key=key)
    clock.now = _epoch(2026, 7, 2)
    after = eng.evaluate("shop.Order", VALID, key=key)
    assert (before.canary, before.mode) == (5, Mode.STRICT)
    assert after.canary == 60


# ---------------------------------------------------------------------------- tracks


def test_explicit_track_is_used(make_engine, one_rule):
    """The track argument is used as given, validating against that track's schema."""
    eng = make_engine(one_rule("shop.Order", "mode: strict"))
    d = eng.evaluate("shop.Order", {"order_id": "x"}, key="k", track="v1")
    assert (d.track, d.action) == ("v1", Action.ACCEPTED)


def test_no_track_prefers_v2_when_the_schema_has_it(make_engine, one_rule):
    """Without a track the preferred track (v2) is used when the registry has it."""
    eng = make_engine(one_rule("shop.Order", "mode: strict"))
    d = eng.evaluate("shop.Order", VALID, key="k")
    assert (d.track, d.action) == ("v2", Action.ACCEPTED)


def test_no_track_falls_back_to_v1_when_v2_is_not_found(make_engine, one_rule):
    """A schema without a v2 resolves to the fallback track v1 (a definite "not found")."""
    eng = make_engine(one_rule("shop.Legacy", "mode: strict"))
    d = eng.evaluate("shop.Legacy", {"name": 7}, key="k")
    assert (d.track, d.action) == ("v1", Action.REJECTED)


def test_preferred_track_is_configurable(make_engine, one_rule):
    """SCHEMA_PREFER_TRACK chooses which track is tried first."""
    eng = make_engine(one_rule("shop.Order", "mode: strict"), settings=Settings(prefer_track="v1"))
    assert eng.evaluate("shop.Order", {"order_id": "a"}, key="k").track == "v1"


# ---------------------------------------------------------------------------- global default


@pytest.mark.parametrize(
    ("enforcement", "action"),
    [(Mode.STRICT, Action.REJECTED), (Mode.WARN, Action.LOGGED), (Mode.OFF, Action.SKIPPED)],
)
def test_no_rule_uses_global_default(make_engine, enforcement, action):
    """With no matching rule REGISTRY_ENFORCEMENT decides, for every key, and rule is None."""
    eng = make_engine(settings=Settings(enforcement=enforcement))
    for key in ("a", "b", "c", None):
        d = eng.evaluate("shop.Order", INVALID, key=key)
        assert (d.mode, d.action, d.rule) == (enforcement, action, None)


def test_default_global_mode_is_warn(make_engine):
    """With no policy files and default settings the engine behaves like the old warn switch."""
    eng = make_engine()
    d = eng.evaluate("shop.Order", INVALID)
    assert (d.mode, d.action, d.rule) == (Mode.WARN, Action.LOGGED, None)


def test_rule_reference_names_the_policy_file(make_engine, one_rule, policy_dir):
    """A matched rule is reported with the file it is written in."""
    eng = make_engine(one_rule("shop.Order", "mode: warn"))
    d = eng.evaluate("shop.Order", VALID, key="k")
    assert d.rule is not None
    assert d.rule.file == str(policy_dir / "rules.yaml")
    assert d.rule.line == 3  # "  shop.Order:" is the third line one_rule writes


# ---------------------------------------------------------------------------- the brakes


def test_force_mode_warn_caps_strict(make_engine, one_rule):
    """POLICY_FORCE_MODE=warn turns strict into warn: an invalid payload is logged, not rejected."""
    eng = make_engine(
        one_rule("shop.Order", "mode: strict"), settings=Settings(force_mode=Mode.WARN)
    )
    d = eng.evaluate("shop.Order", INVALID, key="k")
    assert (d.mode, d.action) == (Mode.WARN, Action.LOGGED)
    assert "POLICY_FORCE_MODE" in d.reason


def test_force_mode_warn_leaves_off_alone(make_engine, one_rule):
    """A cap never raises a mode: off stays off under POLICY_FORCE_MODE=warn."""
    eng = make_engine(one_rule("shop.Order", "mode: off"), settings=Settings(force_mode=Mode.WARN))
    assert eng.evaluate("shop.Order", INVALID, key="k").mode is Mode.OFF


@pytest.mark.parametrize("mode", ["strict", "warn", "off"])
def test_force_mode_off_skips_everything(make_engine, one_rule, mode):
    """POLICY_FORCE_MODE=off makes every payload skipped, whatever its rule says."""
    eng = make_engine(
        one_rule("shop.Order", f"mode: {mode}"), settings=Settings(force_mode=Mode.OFF)
    )
    d = eng.evaluate("shop.Order", INVALID, key="k")
    assert (d.mode, d.action, d.valid) == (Mode.OFF, Action.SKIPPED, None)


def test_registry_disabled_skips(make_engine, one_rule):
    """REGISTRY_ENABLED=false: nothing is validated, every payload is skipped."""
    eng = make_engine(
        one_rule("shop.Order", "mode: strict"), settings=Settings(registry_enabled=False)
    )
    d = eng.evaluate("shop.Order", INVALID, key="k")
    assert (d.mode, d.action, d.valid) == (Mode.OFF, Action.SKIPPED, None)


def test_registry_disabled_asks_the_registry_nothing(make_engine, one_rule, source):
    """REGISTRY_ENABLED=false: no fetch at all, not even to choose a track (sync or async)."""
    eng = make_engine(
        one_rule("shop.Order", "mode: strict"), settings=Settings(registry_enabled=False)
    )
    for name in ("shop.Order", "shop.Legacy", "other.Thing"):
        assert eng.evaluate(name, INVALID).action is Action.SKIPPED
        assert asyncio.run(eng.aevaluate(name, INVALID)).action is Action.SKIPPED
        assert eng.explain(name).mode is Mode.OFF
    assert source.total_fetches == 0


# ---------------------------------------------------------------------------- never raises


BAD_PAYLOADS = {
    "none": lambda: None,
    "list": lambda: [VALID, 1],
    "string": lambda: "just a string",
    "int": lambda: 42,
    "nan": lambda: math.nan,
    "nan-field": lambda: {"id": "x", "price": math.nan},
    "int-keys": lambda: {1: "a", "id": "x", "price": 1},
    "set-inside": lambda: {"id": "x", "price": 1, "lines": {1, 2}},
    "ten-megabytes": lambda: {"id": "x", "price": 1, "comment": "x" * 10_000_000},
    "deep-list": lambda: _deep([], 100_000),
    "deep-dict": lambda: _deep({}, 100_000),
    "deep-under-key": lambda: {"id": "x", "price": 1, "producer": _deep({}, 100_000)},
    "bytes": lambda: b'{"id": "x", "price": 1}',
    "lone-surrogate-value": lambda: {"id": "\ud800", "price": 1},
    "huge-int": lambda: {"id": "x", "price": 10**40},
    "object": object,
}


def _deep(leaf: Any, depth: int) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"producer": value} if isinstance(leaf, dict) else [value]
    return value


@pytest.mark.parametrize("mode", ["strict", "warn"])
@pytest.mark.parametrize("name", sorted(BAD_PAYLOADS))
def test_evaluate_never_raises_on_bad_payloads(make_engine, one_rule, mode, name):
    """evaluate returns a Decision (serialisable) for payloads that are not JSON data at all."""
    eng = make_engine(one_rule("shop.Order", f"mode: {mode}\ncanary: 50\nkey: producer.id"))
    payload = BAD_PAYLOADS[name]()
    for key in (None, "k-1"):
        d = eng.evaluate("shop.Order", payload, key=key)
        assert isinstance(d, Decision)
        assert d.action in set(Action)
        assert 0 <= d.bucket < 10_000
        json.dumps(d.to_dict())
        if mode == "warn":
            assert d.action is not Action.REJECTED


#: Keys JSON cannot write in Python: each must still get a bucket, the same one every time.
ODD_KEYS = {
    "huge-int": lambda: 10**5000,
    "deep-list": lambda: _deep([], 100_000),
    "deep-dict": lambda: _deep({}, 100_000),
    "set": lambda: {1, 2},
    "mixed-dict-keys": lambda: {1: "a", "b": 2},
    "object": object,
}


@pytest.mark.parametrize("where", ["argument", "payload"])
@pytest.mark.parametrize("name", sorted(ODD_KEYS))
def test_evaluate_never_raises_for_odd_keys(make_engine, one_rule, where, name):
    """A canary key that is a huge integer, nested past the recursion limit or not JSON at all,
    given as argument or found at the key path, gets a decision and a stable bucket."""
    eng = make_engine(one_rule("shop.Order", "mode: strict\ncanary: 50\nkey: producer.id"))
    key = ODD_KEYS[name]()
    buckets = set()
    for _ in range(2):
        if where == "argument":
            d = eng.evaluate("shop.Order", {"id": "x", "price": 1}, key=key)
            assert d.key_source == "argument"
        else:
            d = eng.evaluate("shop.Order", {"id": "x", "price": 1, "producer": {"id": key}})
            assert d.key_source == "payload"
        assert d.mode in (Mode.STRICT, Mode.WARN)
        buckets.add(d.bucket)
        json.dumps(d.to_dict())
    assert len(buckets) == 1
    assert 0 <= buckets.pop() < 10_000
    assert eng.resolve_mode("shop.Order", key=key) in (Mode.STRICT, Mode.WARN)
    assert eng.explain("shop.Order", key=key).bucket is not None


SURROGATE_SCRIPT = r"""
import sys
from policy_engine import PolicyEngine

policies, registry = sys.argv[1], sys.argv[2]
with PolicyEngine(policies=policies, registry=registry) as eng:
    cases = [
        ("key argument", "shop.Order", {"id": "x", "price": 1}, "\ud800"),
        ("key in payload", "shop.Order", {"id": "x", "producer": {"id": "\udfff"}}, None),
        ("schema name", "shop.\ud83dOrder", {"id": "x"}, "k"),
    ]
    for label, schema, payload, key in cases:
        d = eng.evaluate(schema, payload, key=key)
        assert 0 <= d.bucket < 10000, d.bucket
        print(label, d.action.value, flush=True)
"""


def test_lone_surrogate_keys_do_not_crash(tmp_path):
    """A lone surrogate in a key or schema name (JSON "\\ud800") gives a Decision, not a crash."""
    # A child process: mmh3 5.x segfaults on such a str, which would end the whole session.
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text(
        'version: 1\nschemas:\n  "shop.*":\n    mode: strict\n    canary: 50\n'
        "    key: producer.id\n"
    )
    registry = tmp_path / "registry" / "shop.Order"
    registry.mkdir(parents=True)
    (registry / "v2.json").write_text('{"type": "object"}')
    result = subprocess.run(
        [sys.executable, "-c", SURROGATE_SCRIPT, str(policies), str(registry.parent)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr[-2000:])
    assert result.stdout.count("\n") == 3


JSON_LIKE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)
PAYLOADS = JSON_LIKE | st.fixed_dictionaries(
    {"id": JSON_LIKE, "price": JSON_LIKE},
    optional={"producer": st.fixed_dictionaries({"id": JSON_LIKE}), "lines": JSON_LIKE},
)


def test_warn_never_raises(make_engine, one_rule):
    """Property: in warn mode any JSON-like payload gives a Decision that is never "rejected"."""
    eng = make_engine(one_rule("shop.Order", "mode: warn\ncanary: 50\nkey: producer.id"))

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(payload=PAYLOADS, key=st.none() | st.text(max_size=10) | st.integers())
    def check(payload: Any, key: Any) -> None:
        d = eng.evaluate("shop.Order", payload, key=key)
        assert d.action is not Action.REJECTED
        assert d.mode in (Mode.WARN, Mode.OFF)
        assert eng.enforce("shop.Order", payload, key=key).action is not Action.REJECTED

    check()


# ---------------------------------------------------------------------------- enforce


def test_enforce_raises_for_rejected_with_context(make_engine, one_rule):
    """enforce raises SchemaValidationError carrying schema_name, errors, track, mode, decision."""
    eng = make_engine(one_rule("shop.Order", "mode: strict"))
    with pytest.raises(SchemaValidationError) as info:
        eng.enforce("shop.Order", {"price": -1}, key="k")
    exc = info.value
    assert exc.schema_name == "shop.Order"
    assert exc.track == "v2"
    assert exc.enforcement_mode == "strict"
    assert exc.decision.action is Action.REJECTED
    assert exc.decision.schema == "shop.Order"
    assert len(exc.errors) == len(exc.decision.violations) == 2
    assert all(isinstance(e, str) for e in exc.errors)
    price = next(e for e in exc.errors if e.startswith("/price: "))
    assert "minimum" in price or "less than" in price


@pytest.mark.parametrize(
    ("mode", "payload", "action"),
    [
        ("strict", VALID, Action.ACCEPTED),
        ("warn", INVALID, Action.LOGGED),
        ("off", INVALID, Action.SKIPPED),
    ],
)
def test_enforce_returns_decision_unless_rejected(make_engine, one_rule, mode, payload, action):
    """enforce returns the Decision for accepted, logged and skipped payloads."""
    eng = make_engine(one_rule("shop.Order", f"mode: {mode}"))
    assert eng.enforce("shop.Order", payload, key="k").action is action


def test_enforce_and_evaluate_agree(make_engine, one_rule, find_key):
    """enforce decides exactly like evaluate (same mode/bucket/action) when it does not raise."""
    eng = make_engine(one_rule("shop.Order", "mode: strict\ncanary: 50"))
    key = find_key(SALT_V2, lambda b: b >= 5000)
    assert eng.enforce("shop.Order", INVALID, key=key).to_dict() == (
        eng.evaluate("shop.Order", INVALID, key=key).to_dict()
    )
