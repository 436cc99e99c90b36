"""The engine against its schema source: outages, on_registry_error, caching and bounded memory."""

from __future__ import annotations

import logging
import random
import string

import pytest

import policy_engine.engine
import policy_engine.schemas
from policy_engine import (
    Action,
    DirectorySchemaSource,
    Mode,
    PolicyEngine,
    SchemaValidationError,
    Settings,
)
from policy_engine.errors import InvalidSchemaError, RegistryUnavailableError
from policy_engine.testing import wait_for_refreshes

VALID = {"id": "o-1", "price": 3.5}
INVALID = {"id": "o-1", "price": -1}
TTL = 300.0


# ---------------------------------------------------------------------------- track choice


def test_outage_on_preferred_track_does_not_fall_back(make_engine, one_rule, source):
    """RegistryUnavailableError on v2 keeps the track at v2 even though v1 exists (SPEC §3.1)."""
    source.failures[("shop.Order", "v2")] = RegistryUnavailableError
    eng = make_engine(one_rule("shop.Order", "mode: strict"))
    d = eng.evaluate("shop.Order", {"order_id": "valid-for-v1"}, key="k")
    assert d.track == "v2"
    assert (d.action, d.valid) == (Action.SKIPPED, None)
    assert source.fetches[("shop.Order", "v1")] == 0


def test_outage_keeps_a_fallen_back_track(make_engine, one_rule, source, clock):
    """A schema known to lack v2 stays on cached v1 through an outage after the TTL expires."""
    eng = make_engine(one_rule("shop.Legacy", "mode: strict"))
    assert eng.evaluate("shop.Legacy", {"name": 1}, key="k").track == "v1"
    source.unavailable = True
    clock.advance(TTL + 1)
    d = eng.evaluate("shop.Legacy", {"name": 1}, key="k")
    assert (d.track, d.action, d.valid) == ("v1", Action.REJECTED, False)


def test_missing_everywhere_keeps_preferred_track(make_engine, source):
    """A schema with neither track resolves to the preferred track (nothing to fall back to);
    the registry's listing already says so, so nothing is fetched."""
    eng = make_engine()
    d = eng.evaluate("shop.Nothing", VALID)
    assert (d.track, d.action) == ("v2", Action.SKIPPED)
    assert source.fetches[("shop.Nothing", "v2")] == 0
    assert source.fetches[("shop.Nothing", "v1")] == 0


def test_without_a_listing_a_missing_schema_is_asked_for(make_engine, source):
    """When the registry could not be listed, a name is asked for (both tracks) to learn that
    it is missing."""
    source.unavailable = True  # no listing at load time
    eng = make_engine()
    source.unavailable = False
    d = eng.evaluate("shop.Nothing", VALID)
    assert (d.track, d.action) == ("v2", Action.SKIPPED)
    assert source.fetches[("shop.Nothing", "v2")] == 1
    assert source.fetches[("shop.Nothing", "v1")] == 1


def test_track_choice_is_cached(make_engine, source):
    """Choosing the track asks the registry once per TTL, not once per payload (and not at all
    for a track its listing says the schema lacks)."""
    eng = make_engine()
    for n in range(100):
        eng.evaluate("shop.Legacy", {"name": str(n)})
    assert source.fetches[("shop.Legacy", "v2")] == 0
    assert source.fetches[("shop.Legacy", "v1")] == 1


# ---------------------------------------------------------------------------- on_registry_error


@pytest.mark.parametrize("cause", ["unavailable", "missing", "invalid-schema"])
@pytest.mark.parametrize(
    ("mode", "on_error", "action"),
    [
        ("strict", "allow", Action.SKIPPED),
        ("strict", "reject", Action.REJECTED),
        ("warn", "reject", Action.SKIPPED),
        ("warn", "allow", Action.SKIPPED),
    ],
)
def test_on_registry_error_without_a_usable_schema(
    make_engine, one_rule, source, cause, mode, on_error, action
):
    """With no usable schema, allow skips; reject rejects only where the mode is strict."""
    if cause == "unavailable":
        source.unavailable = True
    elif cause == "missing":
        source.documents.clear()
    else:
        source.failures[("shop.Order", "v2")] = InvalidSchemaError
    eng = make_engine(one_rule("shop.Order", f"mode: {mode}\non_registry_error: {on_error}"))
    d = eng.evaluate("shop.Order", VALID, key="k", track="v2")
    assert (d.mode, d.action, d.valid) == (Mode(mode), action, None)


def test_registry_rejection_raises_in_enforce(make_engine, one_rule, source):
    """A strict reject-on-error rejection is a SchemaValidationError from enforce."""
    source.unavailable = True
    eng = make_engine(one_rule("shop.Order", "mode: strict\non_registry_error: reject"))
    with pytest.raises(SchemaValidationError) as info:
        eng.enforce("shop.Order", VALID, key="k")
    assert info.value.decision.action is Action.REJECTED
    assert info.value.errors


def test_default_on_registry_error_is_allow(make_engine, one_rule, source):
    """A rule that does not say on_registry_error lets payloads through when the registry fails."""
    source.unavailable = True
    eng = make_engine(one_rule("shop.Order", "mode: strict"))
    assert eng.evaluate("shop.Order", INVALID, key="k").action is Action.SKIPPED


def test_schema_arriving_later_is_picked_up_after_retry(make_engine, one_rule, source, clock):
    """A schema that failed to load is asked for again later and then validates."""
    source.unavailable = True
    eng = make_engine(one_rule("shop.Order", "mode: strict"))
    assert eng.evaluate("shop.Order", INVALID, key="k", track="v2").action is Action.SKIPPED
    source.unavailable = False
    clock.advance(TTL + 1)
    assert eng.evaluate("shop.Order", INVALID, key="k", track="v2").action is Action.REJECTED


# ---------------------------------------------------------------------------- caching


def test_stale_schema_served_when_registry_fails(make_engine, one_rule, source, clock):
    """Fetched once, then the source fails and the TTL expires: the cached validator still runs."""
    eng = make_engine(one_rule("shop.Order", "mode: strict"))
    assert eng.evaluate("shop.Order", INVALID, key="k", track="v2").action is Action.REJECTED
    fetched = source.fetches[("shop.Order", "v2")]
    source.unavailable = True
    clock.advance(TTL + 1)
    invalid = eng.evaluate("shop.Order", INVALID, key="k", track="v2")
    assert wait_for_refreshes(eng)
    valid = eng.evaluate("shop.Order", VALID, key="k", track="v2")
    assert source.fetches[("shop.Order", "v2")] > fetched  # it did ask again
    assert (invalid.action, invalid.valid) == (Action.REJECTED, False)
    assert (valid.action, valid.valid) == (Action.ACCEPTED, True)


def test_stale_schema_served_for_a_chosen_track(make_engine, one_rule, source, clock):
    """Without a track argument, an outage after the TTL still validates with cached v2."""
    eng = make_engine(one_rule("shop.Order", "mode: strict"))
    assert eng.evaluate("shop.Order", INVALID, key="k").track == "v2"
    source.unavailable = True
    clock.advance(10 * TTL)
    d = eng.evaluate("shop.Order", INVALID, key="k")
    assert (d.track, d.action) == ("v2", Action.REJECTED)


def test_fetch_once_per_ttl(make_engine, one_rule, source, clock):
    """Many payloads within the TTL cause one fetch; the next fetch comes after the TTL."""
    eng = make_engine(one_rule("shop.Order", "mode: strict"))
    for n in range(200):
        eng.evaluate("shop.Order", {"id": str(n), "price": n}, key=str(n), track="v2")
        clock.advance(1)  # 200 s < TTL
    assert source.fetches[("shop.Order", "v2")] == 1
    clock.advance(TTL)
    eng.evaluate("shop.Order", VALID, key="k", track="v2")
    assert wait_for_refreshes(eng)
    assert source.fetches[("shop.Order", "v2")] == 2


@pytest.fixture
def compiles(monkeypatch):
    """Count calls of the real compile_schema that the schema cache makes."""
    calls: list[tuple[str, str, str]] = []
    real = policy_engine.schemas.compile_schema

    def counting(doc, backend="rust"):
        calls.append((doc.schema, doc.track, doc.version))
        return real(doc, backend)

    monkeypatch.setattr(policy_engine.schemas, "compile_schema", counting)
    return calls


def test_compiled_once_per_version(make_engine, one_rule, source, clock, compiles):
    """An unchanged schema version is compiled once, however often it is fetched again."""
    eng = make_engine(one_rule("shop.Order", "mode: strict"))
    for _ in range(5):
        for n in range(20):
            eng.evaluate("shop.Order", {"id": str(n), "price": n}, key="k", track="v2")
        assert wait_for_refreshes(eng)
        clock.advance(TTL + 1)
    assert source.fetches[("shop.Order", "v2")] == 5
    assert [c[:2] for c in compiles] == [("shop.Order", "v2")]


def test_new_version_is_recompiled_after_ttl(make_engine, one_rule, source, clock, compiles):
    """A changed schema version is compiled and used once the TTL expires and the background
    refresh has fetched it."""
    eng = make_engine(one_rule("shop.Order", "mode: strict"))
    payload = {"id": "o-1", "price": 3.5}
    assert eng.evaluate("shop.Order", payload, key="k", track="v2").action is Action.ACCEPTED
    stricter = {
        "type": "object",
        "required": ["id", "price", "currency"],
        "properties": {"currency": {"type": "string"}},
    }
    source.put("shop.Order", "v2", stricter)
    clock.advance(TTL / 2)  # still within the TTL: the old validator
    assert eng.evaluate("shop.Order", payload, key="k", track="v2").action is Action.ACCEPTED
    clock.advance(TTL)
    # The payload meeting the expiry is served by the old validator while the new version is
    # fetched in the background; the ones after it get the new version.
    assert eng.evaluate("shop.Order", payload, key="k", track="v2").action is Action.ACCEPTED
    assert wait_for_refreshes(eng)
    after = eng.evaluate("shop.Order", payload, key="k", track="v2")
    assert after.action is Action.REJECTED
    assert [v.keyword for v in after.violations] == ["required"]
    assert len(compiles) == 2
    assert compiles[0][2] != compiles[1][2]


def test_schema_cache_shared_across_reload(make_engine, one_rule, source, policy_dir):
    """Reloading the policy set does not fetch or compile the schemas again."""
    eng = make_engine(one_rule("shop.Order", "mode: strict"))
    eng.evaluate("shop.Order", VALID, key="k", track="v2")
    (policy_dir / "rules.yaml").write_text(one_rule("shop.Order", "mode: warn"))
    assert eng.reload() is True
    d = eng.evaluate("shop.Order", INVALID, key="k", track="v2")
    assert (d.mode, d.action) == (Mode.WARN, Action.LOGGED)
    assert source.fetches[("shop.Order", "v2")] == 1


# ---------------------------------------------------------------------------- unknown names


def _random_names(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + "._-"
    names: set[str] = set()
    while len(names) < count:
        names.add("x" + "".join(rng.choices(alphabet, k=rng.randint(4, 24))))
    return sorted(names)


def test_ten_thousand_unknown_names_stay_bounded(make_engine, source):
    """10 000 invented schema names: no exception, and routes and slots stay within their caps."""
    eng = make_engine()
    for name in _random_names(10_000, seed=1):
        d = eng.evaluate(name, {"a": name})
        assert d.action is Action.SKIPPED
    assert len(eng._state.routes) <= policy_engine.engine.MAX_ROUTES
    assert len(eng._schemas._slots) <= policy_engine.schemas.MAX_SLOTS


def test_unknown_names_beyond_the_caps_still_decide(make_engine, source, monkeypatch):
    """Past the caps names are still evaluated correctly while memory stops growing."""
    monkeypatch.setattr(policy_engine.engine, "MAX_ROUTES", 50)
    monkeypatch.setattr(policy_engine.schemas, "MAX_SLOTS", 50)
    eng = make_engine(settings=Settings(enforcement=Mode.STRICT))
    for name in _random_names(1_000, seed=2):
        eng.evaluate(name, VALID)
    assert len(eng._state.routes) <= 50
    assert len(eng._schemas._slots) <= 50
    # a known schema evaluated after the flood still validates
    assert eng.evaluate("shop.Order", INVALID, key="k").action is Action.REJECTED


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "..",
        "a/../../b",
        "shop.Order/../../../etc",
        "",
        "x" * 5000,
        "nul\x00byte",
        "spaces in name",
    ],
)
def test_hostile_schema_names_are_skipped(tmp_path, policy_dir, clock, name):
    """Path-like or junk schema names never reach the filesystem: skipped with allow."""
    registry = tmp_path / "registry"
    (registry / "shop.Order").mkdir(parents=True)
    (registry / "shop.Order" / "v2.json").write_text('{"type": "object"}')
    (policy_dir / "all.yaml").write_text(
        'version: 1\nschemas:\n  "*":\n    mode: strict\n    on_registry_error: allow\n'
    )
    with PolicyEngine(
        policies=str(policy_dir), registry=DirectorySchemaSource(registry), clock=clock
    ) as eng:
        for track in (None, "v1", "../v2"):
            d = eng.evaluate(name, {"x": 1}, key="k", track=track)
            assert (d.action, d.valid) == (Action.SKIPPED, None)


def test_a_schema_missing_from_the_registry_is_logged_once(make_engine, one_rule, caplog):
    """Payloads of a schema the registry lacks are skipped; logged once, not per payload."""
    eng = make_engine(one_rule("shop.Typo", "mode: strict"))
    with caplog.at_level(logging.WARNING, logger="policy_engine"):
        actions = [eng.evaluate("shop.Typo", {"a": 1}, key="k").action for _ in range(50)]
    assert set(actions) == {Action.SKIPPED}
    lines = [r.getMessage() for r in caplog.records if "not in the registry" in r.getMessage()]
    assert len(lines) == 1
    assert "shop.Typo" in lines[0]
