"""The old pipeline's enforcement tests, run against SchemaManager/RegistryConfig on the engine.

Written the way the old suite was (warn returns ``(False, errors)``, strict raises
``SchemaValidationError`` with ``schema_name``, ``errors``, ``track``, ``enforcement_mode``,
``get_stats()`` counts), with a real Confluent-compatible registry on loopback in place of the
old mocked client.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from policy_engine import RegistryConfig, SchemaManager, SchemaNotFoundError, SchemaValidationError
from policy_engine.testing import FakeSchemaRegistry

TEST_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}},
    "required": ["name"],
}
ENV = (
    "REGISTRY_ENABLED",
    "REGISTRY_URL",
    "REGISTRY_TOKEN",
    "REGISTRY_CACHE_TTL",
    "REGISTRY_TIMEOUT",
    "SCHEMA_PREFER_TRACK",
    "SCHEMA_FALLBACK_TRACK",
    "REGISTRY_ENFORCEMENT",
    "REGISTRY_POLL_SECONDS",
    "POLICY_PATHS",
    "POLICY_WATCH",
    "POLICY_FORCE_MODE",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """No registry or policy variables set, and no policies/ directory in the working dir."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def registry_server():
    """A registry serving test.Schema (track v2) and legacy.Schema (track v1 only)."""
    with FakeSchemaRegistry() as server:
        server.register("test.Schema-v2", TEST_SCHEMA)
        server.register("legacy.Schema-v1", TEST_SCHEMA)
        yield server


def _validate(manager, name, payload, **kwargs):
    async def main():
        async with manager:
            return await manager.validate_payload(name, payload, **kwargs)

    return asyncio.run(main())


def test_config_enforcement_mode_validation():
    """RegistryConfig defaults to warn; validate() rejects a mode other than warn/strict."""
    cfg = RegistryConfig()
    assert cfg.enforcement_mode == "warn"
    cfg.validate()
    with pytest.raises(ValueError, match="must be 'warn' or 'strict'"):
        RegistryConfig(enforcement_mode="invalid").validate()


def test_config_reads_the_old_environment_variables(monkeypatch):
    """Every old variable still configures RegistryConfig, read when it is created."""
    values = {
        "REGISTRY_ENABLED": "true",
        "REGISTRY_URL": "http://registry:8081",
        "REGISTRY_TOKEN": "t0k",
        "REGISTRY_CACHE_TTL": "60",
        "REGISTRY_TIMEOUT": "2.5",
        "SCHEMA_PREFER_TRACK": "v3",
        "SCHEMA_FALLBACK_TRACK": "v2",
        "REGISTRY_ENFORCEMENT": "strict",
        "REGISTRY_POLL_SECONDS": "15",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    cfg = RegistryConfig()
    assert (cfg.enabled, cfg.url, cfg.token) == (True, "http://registry:8081", "t0k")
    assert (cfg.cache_ttl, cfg.timeout, cfg.poll_seconds) == (60, 2.5, 15)
    assert (cfg.prefer_track, cfg.fallback_track) == ("v3", "v2")
    assert cfg.enforcement_mode == "strict"


def test_config_defaults_match_the_old_pipeline():
    """With nothing set: disabled, TTL 300, timeout 30, v2 then v1, warn, poll 60."""
    cfg = RegistryConfig()
    assert cfg.enabled is False
    assert cfg.token is None
    assert (cfg.cache_ttl, cfg.timeout, cfg.poll_seconds) == (300, 30.0, 60)
    assert (cfg.prefer_track, cfg.fallback_track) == ("v2", "v1")


def test_config_bad_number_is_a_value_error(monkeypatch):
    """A variable that is not a number fails with a ValueError naming it."""
    monkeypatch.setenv("REGISTRY_CACHE_TTL", "five")
    with pytest.raises(ValueError, match="REGISTRY_CACHE_TTL"):
        RegistryConfig()


def test_schema_manager_enforcement_mode_init():
    """SchemaManager accepts warn and strict; any other mode is a ValueError."""
    for mode in ("warn", "strict"):
        manager = SchemaManager(
            registry_url="https://test.registry.com", enforcement_mode=mode, enabled=False
        )
        assert manager.enforcement_mode == mode
    with pytest.raises(ValueError, match="must be 'warn' or 'strict'"):
        SchemaManager(
            registry_url="https://test.registry.com", enforcement_mode="invalid", enabled=False
        )


def test_warn_mode_allows_invalid_payload(registry_server):
    """Warn mode: an invalid payload returns (False, errors), raises nothing, counts a warning."""
    manager = SchemaManager(registry_url=registry_server.url, enforcement_mode="warn")
    is_valid, errors = _validate(manager, "test.Schema", {})
    assert is_valid is False
    assert len(errors) > 0
    assert any("name" in str(e).lower() for e in errors)
    stats = manager.get_stats()
    assert stats["enforcement_warnings"] == 1
    assert stats["enforcement_rejections"] == 0
    assert stats["validation_failure"] == 1


def test_strict_mode_raises_on_invalid_payload(registry_server):
    """Strict mode: SchemaValidationError with schema name, errors, track and mode."""
    manager = SchemaManager(registry_url=registry_server.url, enforcement_mode="strict")
    with pytest.raises(SchemaValidationError) as exc_info:
        _validate(manager, "test.Schema", {})
    error = exc_info.value
    assert error.schema_name == "test.Schema"
    assert len(error.errors) > 0
    assert error.track == "v2"
    assert error.enforcement_mode == "strict"
    stats = manager.get_stats()
    assert stats["enforcement_rejections"] == 1
    assert stats["enforcement_warnings"] == 0


def test_strict_mode_allows_valid_payload(registry_server):
    """Strict mode: a valid payload returns (True, [])."""
    manager = SchemaManager(registry_url=registry_server.url, enforcement_mode="strict")
    assert _validate(manager, "test.Schema", {"name": "test"}) == (True, [])
    assert manager.get_stats()["validation_success"] == 1


def test_errors_are_path_and_message_strings(registry_server):
    """Each error is '<path>: <message>', as the old pipeline's were."""
    manager = SchemaManager(registry_url=registry_server.url, enforcement_mode="warn")
    _, errors = _validate(manager, "test.Schema", {"name": 5})
    assert errors == ['/name: 5 is not of type "string"']


def test_enforcement_stats_tracking():
    """get_stats() has the old keys, zero before anything is validated."""
    manager = SchemaManager(
        registry_url="https://test.registry.com", enforcement_mode="warn", enabled=False
    )
    stats = manager.get_stats()
    for key in (
        "cache_hits",
        "cache_misses",
        "validation_success",
        "validation_failure",
        "registry_errors",
        "enforcement_warnings",
        "enforcement_rejections",
    ):
        assert stats[key] == 0
    assert stats["enabled"] is False
    assert stats["started"] is False


def test_disabled_manager_validates_nothing():
    """enabled=False: every payload is (True, []), as in the old pipeline."""
    manager = SchemaManager(registry_url="unused", enforcement_mode="strict", enabled=False)
    assert _validate(manager, "test.Schema", {}) == (True, [])


def test_registry_outage_degrades_gracefully(registry_server):
    """With the registry down and nothing cached, payloads pass as (True, []) and the failed
    requests count as registry errors."""
    registry_server.stop()
    manager = SchemaManager(registry_url=registry_server.url, enforcement_mode="strict", timeout=1)
    assert _validate(manager, "test.Schema", {}) == (True, [])
    assert manager.get_stats()["registry_errors"] >= 1


def test_fallback_track_is_used_when_preferred_is_missing(registry_server):
    """A schema with only v1 is validated on v1 (SCHEMA_FALLBACK_TRACK)."""
    manager = SchemaManager(registry_url=registry_server.url, enforcement_mode="strict")
    with pytest.raises(SchemaValidationError) as exc_info:
        _validate(manager, "legacy.Schema", {})
    assert exc_info.value.track == "v1"


def test_explicit_prefer_without_fallback(registry_server):
    """prefer='v1', fallback=None validates on v1 only, as the call asks."""
    registry_server.register("test.Schema-v1", {"type": "object", "required": ["old"]})
    manager = SchemaManager(registry_url=registry_server.url, enforcement_mode="warn")
    ok, errors = _validate(manager, "test.Schema", {"name": "x"}, prefer="v1", fallback=None)
    assert ok is False
    assert any("old" in e for e in errors)


def test_policy_file_overrides_the_global_mode(registry_server, tmp_path):
    """With a policy file, enforcement_mode is only the default: a strict rule still rejects."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text("version: 1\nschemas:\n  test.Schema:\n    mode: strict\n")
    manager = SchemaManager(registry_url=registry_server.url, enforcement_mode="warn")
    with pytest.raises(SchemaValidationError):
        _validate(manager, "test.Schema", {})
    other = SchemaManager(registry_url=registry_server.url, enforcement_mode="warn")
    assert _validate(other, "legacy.Schema", {})[0] is False  # no rule: the global warn


def test_get_schema_returns_the_json_schema(registry_server):
    """get_schema gives the schema document, falling back to v1, or SchemaNotFoundError."""
    manager = SchemaManager(registry_url=registry_server.url)

    async def main():
        async with manager:
            found = await manager.get_schema("test.Schema")
            legacy = await manager.get_schema("legacy.Schema", prefer="v2", fallback="v1")
            with pytest.raises(SchemaNotFoundError):
                await manager.get_schema("nope.Schema")
            return found, legacy

    found, legacy = asyncio.run(main())
    assert found == TEST_SCHEMA
    assert legacy == TEST_SCHEMA


def test_start_failure_is_a_runtime_error(registry_server, tmp_path):
    """A policy set that does not load makes start() raise RuntimeError (the old contract)."""
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "bad.yaml").write_text("version: 2\n")
    manager = SchemaManager(registry_url=registry_server.url)
    with pytest.raises(RuntimeError, match="initialization failed"):
        asyncio.run(manager.start())
    assert manager.enabled is False


def test_embedded_registry_directory_works_too(tmp_path):
    """registry_url may be a directory of <schema>/<track>.json, the embedded registry."""
    schemas = Path(tmp_path / "schemas" / "test.Schema")
    schemas.mkdir(parents=True)
    (schemas / "v2.json").write_text('{"type": "object", "required": ["name"]}')
    manager = SchemaManager(registry_url=str(tmp_path / "schemas"), enforcement_mode="warn")
    assert _validate(manager, "test.Schema", {})[0] is False


def test_no_usable_schema_with_on_registry_error_reject_raises(registry_server, tmp_path):
    """A strict rule with on_registry_error: reject rejects a schema the registry lacks."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text(
        "version: 1\nschemas:\n  missing.Schema:\n    mode: strict\n    on_registry_error: reject\n"
    )
    manager = SchemaManager(registry_url=registry_server.url, enforcement_mode="warn")
    with pytest.raises(SchemaValidationError) as info:
        _validate(manager, "missing.Schema", {})
    assert info.value.schema_name == "missing.Schema"
    assert any("no usable schema" in error for error in info.value.errors)
