"""Settings.from_env (SPEC §7): defaults, parsing, clear errors, secrets; PolicyEngine.from_env."""

from __future__ import annotations

import pytest

from policy_engine import Action, ConfigError, Mode, PolicyEngine, PolicyLoadError, Settings

SECRET = "s3cr3t-t0ken-value"


def test_defaults_follow_the_spec():
    """With no variables set every setting has SPEC §7's default."""
    s = Settings.from_env({})
    assert s.policy_paths == ("policies",)
    assert s.policy_watch is True
    assert s.force_mode is None
    assert s.registry_enabled is True
    assert s.registry_url == "schemas"
    assert not s.registry_token
    assert s.registry_cache_ttl == 300
    assert s.registry_timeout == 30.0
    assert s.prefer_track == "v2"
    assert s.fallback_track == "v1"
    assert s.enforcement is Mode.WARN
    assert s.metrics_port is None


def test_from_env_defaults_equal_constructor_defaults():
    """An empty environment and Settings() are the same configuration."""
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize(
    ("env", "attr", "expected"),
    [
        ({"POLICY_PATHS": "a:b/c"}, "policy_paths", ("a", "b/c")),
        ({"POLICY_PATHS": "only"}, "policy_paths", ("only",)),
        ({"POLICY_WATCH": "false"}, "policy_watch", False),
        ({"POLICY_WATCH": "true"}, "policy_watch", True),
        ({"POLICY_WATCH": "0"}, "policy_watch", False),
        ({"POLICY_FORCE_MODE": "warn"}, "force_mode", Mode.WARN),
        ({"POLICY_FORCE_MODE": "off"}, "force_mode", Mode.OFF),
        ({"REGISTRY_ENABLED": "false"}, "registry_enabled", False),
        ({"REGISTRY_ENABLED": "true"}, "registry_enabled", True),
        ({"REGISTRY_URL": "/srv/schemas"}, "registry_url", "/srv/schemas"),
        ({"REGISTRY_URL": "file:///srv/schemas"}, "registry_url", "file:///srv/schemas"),
        ({"REGISTRY_CACHE_TTL": "60"}, "registry_cache_ttl", 60),
        ({"REGISTRY_CACHE_TTL": "0"}, "registry_cache_ttl", 0),
        ({"REGISTRY_TIMEOUT": "2.5"}, "registry_timeout", 2.5),
        ({"SCHEMA_PREFER_TRACK": "v3"}, "prefer_track", "v3"),
        ({"SCHEMA_FALLBACK_TRACK": "v0"}, "fallback_track", "v0"),
        ({"REGISTRY_ENFORCEMENT": "strict"}, "enforcement", Mode.STRICT),
        ({"REGISTRY_ENFORCEMENT": "off"}, "enforcement", Mode.OFF),
        ({"REGISTRY_ENFORCEMENT": "warn"}, "enforcement", Mode.WARN),
        ({"METRICS_PORT": "9102"}, "metrics_port", 9102),
    ],
)
def test_each_variable_is_parsed(env, attr, expected):
    """Each SPEC §7 variable sets its setting with the right type."""
    assert getattr(Settings.from_env(env), attr) == expected


def test_explicit_policy_paths_are_marked_explicit():
    """POLICY_PATHS set means the paths must exist; unset means the default may be missing."""
    assert Settings.from_env({"POLICY_PATHS": "x"}).policy_paths_explicit is True
    assert Settings.from_env({}).policy_paths_explicit is False


def test_token_is_read_but_kept_secret():
    """REGISTRY_TOKEN is stored and revealed on request only."""
    s = Settings.from_env({"REGISTRY_TOKEN": SECRET})
    assert s.registry_token.reveal() == SECRET


def test_token_never_in_repr_or_str():
    """REGISTRY_TOKEN never appears in repr() or str() of the settings."""
    s = Settings.from_env({"REGISTRY_TOKEN": SECRET, "REGISTRY_URL": "/srv"})
    assert SECRET not in repr(s)
    assert SECRET not in str(s)
    assert SECRET not in repr(s.registry_token)
    assert SECRET not in f"{s.registry_token}"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("POLICY_FORCE_MODE", "strict"),
        ("POLICY_FORCE_MODE", "loud"),
        ("REGISTRY_ENFORCEMENT", "loud"),
        ("REGISTRY_TIMEOUT", "abc"),
        ("REGISTRY_TIMEOUT", "0"),
        ("REGISTRY_TIMEOUT", "-1"),
        ("REGISTRY_TIMEOUT", "nan"),
        ("REGISTRY_TIMEOUT", "inf"),
        ("REGISTRY_CACHE_TTL", "-5"),
        ("REGISTRY_CACHE_TTL", "five minutes"),
        ("METRICS_PORT", "70000"),
        ("METRICS_PORT", "-1"),
        ("METRICS_PORT", "80.5"),
        ("METRICS_PORT", "http"),
        ("POLICY_WATCH", "maybe"),
        ("REGISTRY_ENABLED", "sometimes"),
        ("SCHEMA_PREFER_TRACK", "../x"),
        ("SCHEMA_PREFER_TRACK", "v2/../../etc"),
        ("SCHEMA_FALLBACK_TRACK", "../x"),
    ],
)
def test_bad_value_names_the_variable(variable, value):
    """A bad value raises ConfigError whose message names the variable."""
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})


def test_config_error_is_a_value_error():
    """ConfigError can be caught as ValueError by code that does not know the engine."""
    with pytest.raises(ValueError, match="POLICY_FORCE_MODE"):
        Settings.from_env({"POLICY_FORCE_MODE": "strict"})


def test_force_mode_strict_refused_in_constructor_too():
    """Settings(force_mode=strict) is refused: a force mode only caps."""
    with pytest.raises(ConfigError):
        Settings(force_mode=Mode.STRICT)


def test_engine_from_env_uses_policy_paths(tmp_path, one_rule, source):
    """PolicyEngine.from_env(environ=...) loads POLICY_PATHS and applies the other settings."""
    policies = tmp_path / "pol"
    policies.mkdir()
    (policies / "a.yaml").write_text(one_rule("shop.Order", "mode: strict"))
    env = {"POLICY_PATHS": str(policies), "SCHEMA_PREFER_TRACK": "v2"}
    with PolicyEngine.from_env(environ=env, registry=source) as eng:
        assert eng.settings.policy_paths == (str(policies),)
        d = eng.evaluate("shop.Order", {"id": "x", "price": -1}, key="k")
        assert (d.mode, d.action) == (Mode.STRICT, Action.REJECTED)
        assert d.rule is not None
        assert d.rule.file == str(policies / "a.yaml")


def test_engine_from_env_with_embedded_registry_dir(tmp_path, one_rule):
    """REGISTRY_URL as a directory (or file:// path) is the embedded registry."""
    registry = tmp_path / "reg"
    (registry / "shop.Order").mkdir(parents=True)
    (registry / "shop.Order" / "v1.json").write_text('{"type": "object", "required": ["id"]}')
    policies = tmp_path / "pol"
    policies.mkdir()
    (policies / "a.yaml").write_text(one_rule("shop.Order", "mode: strict"))
    for url in (str(registry), f"file://{registry}"):
        env = {"POLICY_PATHS": str(policies), "REGISTRY_URL": url}
        with PolicyEngine.from_env(environ=env) as eng:
            d = eng.evaluate("shop.Order", {}, key="k")
            assert (d.track, d.action) == ("v1", Action.REJECTED)


def test_missing_default_policies_dir_is_an_empty_set(tmp_path, monkeypatch, source):
    """POLICY_PATHS unset and no ./policies: an empty policy set, the global default applies."""
    monkeypatch.chdir(tmp_path)
    with PolicyEngine.from_env(environ={"REGISTRY_ENFORCEMENT": "strict"}, registry=source) as eng:
        assert eng.policy_set.files == ()
        d = eng.evaluate("shop.Order", {"id": "x", "price": -1}, key="k")
        assert (d.rule, d.action) == (None, Action.REJECTED)


def test_explicit_missing_policy_path_is_an_error(tmp_path, source):
    """POLICY_PATHS naming a directory that does not exist is a PolicyLoadError at start."""
    env = {"POLICY_PATHS": str(tmp_path / "nope")}
    with pytest.raises(PolicyLoadError):
        PolicyEngine.from_env(environ=env, registry=source)


def test_from_env_bad_setting_fails_at_start(source):
    """A bad variable fails PolicyEngine.from_env before anything is evaluated."""
    with pytest.raises(ConfigError, match="REGISTRY_ENFORCEMENT"):
        PolicyEngine.from_env(environ={"REGISTRY_ENFORCEMENT": "loud"}, registry=source)


def test_with_overrides_returns_a_changed_copy():
    """with_overrides gives a new Settings with the change and leaves the original alone."""
    base = Settings()
    changed = base.with_overrides(enforcement=Mode.STRICT)
    assert (base.enforcement, changed.enforcement) == (Mode.WARN, Mode.STRICT)


def test_empty_variables_count_as_unset():
    """`VAR=` (empty) means the default for every variable, as env files write unset values."""
    names = [
        "POLICY_PATHS", "POLICY_WATCH", "POLICY_FORCE_MODE", "REGISTRY_ENABLED", "REGISTRY_URL",
        "REGISTRY_TOKEN", "REGISTRY_CACHE_TTL", "REGISTRY_TIMEOUT", "SCHEMA_PREFER_TRACK",
        "SCHEMA_FALLBACK_TRACK", "REGISTRY_ENFORCEMENT", "METRICS_PORT", "POLICY_VALIDATOR",
    ]  # fmt: skip
    assert Settings.from_env({name: "" for name in names}) == Settings()
    assert Settings.from_env({name: "  " for name in names}) == Settings()
