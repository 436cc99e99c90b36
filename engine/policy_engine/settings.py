"""Configuration from the environment (docs/configuration.md), validated once at start-up.

Every variable is listed, with a comment, in ``env.example``. A bad value raises ``ConfigError``
naming the variable and what it accepts, so a misconfigured deployment fails at start, not on the
first payload.
"""

from __future__ import annotations

import ipaddress
import os
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from policy_engine.errors import ConfigError
from policy_engine.modes import Mode
from policy_engine.policy.model import TRACK_RE

#: The validator backends (``POLICY_VALIDATOR``): jsonschema-rs, or the jsonschema reference.
Backend = Literal["rust", "python"]
BACKENDS: tuple[Backend, ...] = ("rust", "python")
#: The default subject of (schema, track) in an HTTP registry (``REGISTRY_SUBJECT_TEMPLATE``).
DEFAULT_SUBJECT_TEMPLATE = "{schema}-{track}"


def subject_template_problem(template: str) -> str | None:
    """Why ``template`` cannot name subjects, or ``None`` when it can.

    It must contain ``{schema}`` and ``{track}`` once each and no other ``{field}``; literal
    braces are written ``{{`` and ``}}`` as in ``str.format``.
    """
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"is not a format string ({exc})"
    fields = [name for _, name, spec, conv in parts if name is not None]
    for _, name, spec, conv in parts:
        if name is not None and (spec or conv):
            return f"{{{name}}} takes no format spec or conversion"
    unknown = sorted({f for f in fields if f not in ("schema", "track")})
    if unknown:
        return f"has unknown field(s) {', '.join('{' + f + '}' for f in unknown)}"
    if fields.count("schema") != 1 or fields.count("track") != 1:
        return "must contain {schema} and {track} once each"
    return None


#: A host name (RFC 1123 labels), for ``METRICS_ADDR``.
_HOST_NAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


def metrics_addr_problem(addr: str) -> str | None:
    """Why the metrics port cannot bind to ``addr``, or ``None`` when it can try: an IP address
    (``0.0.0.0``: every IPv4 interface; ``::``: every interface, IPv4 too where the system maps
    it) or a host name (bound to the first address it resolves to)."""
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        if _HOST_NAME.fullmatch(addr) and not addr.replace(".", "").isdigit():
            return None
        return "is neither an IP address nor a host name"
    return None


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class Secret:
    """A string that never shows itself in ``repr``/``str`` (tokens must not reach logs)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that needs it (an Authorization header)."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of the engine, with the defaults of docs/configuration.md."""

    policy_paths: tuple[str, ...] = ("policies",)
    #: False when ``policy_paths`` is the default: a missing default directory means "no policies".
    policy_paths_explicit: bool = False
    policy_watch: bool = True
    force_mode: Mode | None = None
    registry_enabled: bool = True
    registry_url: str = "schemas"
    registry_token: Secret = field(default_factory=lambda: Secret(""))
    registry_cache_ttl: float = 300.0
    registry_timeout: float = 30.0
    #: Subject of (schema, track) in an HTTP registry; ``{schema}`` and ``{track}`` once each.
    registry_subject_template: str = DEFAULT_SUBJECT_TEMPLATE
    prefer_track: str = "v2"
    fallback_track: str = "v1"
    enforcement: Mode = Mode.WARN
    metrics_port: int | None = None
    #: The address the metrics port (``/metrics``, ``/healthz``, ``/readyz``, ``/status``) binds
    #: to: ``METRICS_ADDR``, every IPv4 interface by default as Prometheus exporters do (``::``
    #: for IPv6); ``127.0.0.1`` keeps it to the host (or the pod).
    metrics_addr: str = "0.0.0.0"
    validator_backend: Backend = "rust"
    #: Put violation messages (which quote payload values) in failure logs: ``POLICY_LOG_VALUES``.
    log_values: bool = False
    #: Share guardrail windows and trips through Redis: ``GUARDRAIL_STORE``
    #: (``redis://host:port/db[?prefix=P]``); ``None`` keeps them per process.
    guardrail_store: str | None = None

    def __post_init__(self) -> None:
        if self.force_mode is Mode.STRICT:
            raise ConfigError("POLICY_FORCE_MODE caps modes: it can be 'warn' or 'off', not strict")
        for name, value in (
            ("prefer_track", self.prefer_track),
            ("fallback_track", self.fallback_track),
        ):
            if not TRACK_RE.match(value):
                raise ConfigError(f"{name} {value!r} is not a track name such as v1 or v2")
        if self.registry_cache_ttl < 0:
            raise ConfigError("REGISTRY_CACHE_TTL must be >= 0 seconds")
        if self.registry_timeout <= 0:
            raise ConfigError("REGISTRY_TIMEOUT must be > 0 seconds")
        problem = subject_template_problem(self.registry_subject_template)
        if problem is not None:
            raise ConfigError(
                f"REGISTRY_SUBJECT_TEMPLATE={self.registry_subject_template!r} {problem}"
            )
        if self.guardrail_store is not None and not self.guardrail_store.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ConfigError(
                "GUARDRAIL_STORE must be a redis:// URL (redis://host:port/db[?prefix=P])"
            )
        problem = metrics_addr_problem(self.metrics_addr)
        if problem is not None:
            raise ConfigError(f"METRICS_ADDR={self.metrics_addr!r} {problem}")
        if self.validator_backend not in BACKENDS:
            raise ConfigError(f"validator backend must be one of {', '.join(BACKENDS)}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the variables of docs/configuration.md from ``environ`` (default ``os.environ``).

        A variable set to the empty string counts as unset (``VAR=`` lines in env files).
        """
        source = os.environ if environ is None else environ
        env = {name: value for name, value in source.items() if value.strip()}
        values: dict[str, Any] = {}
        if "POLICY_PATHS" in env:
            values["policy_paths"] = tuple(p for p in env["POLICY_PATHS"].split(":") if p)
            values["policy_paths_explicit"] = True
        if "POLICY_WATCH" in env:
            values["policy_watch"] = _bool(env, "POLICY_WATCH")
        force = env.get("POLICY_FORCE_MODE", "").strip().lower()
        if force:
            if force not in ("warn", "off"):
                raise ConfigError(
                    f"POLICY_FORCE_MODE={env['POLICY_FORCE_MODE']!r}: use 'warn' or 'off' "
                    "(or leave it unset)"
                )
            values["force_mode"] = Mode(force)
        if "REGISTRY_ENABLED" in env:
            values["registry_enabled"] = _bool(env, "REGISTRY_ENABLED")
        if env.get("REGISTRY_URL", "").strip():
            values["registry_url"] = env["REGISTRY_URL"].strip()
        if env.get("REGISTRY_TOKEN"):
            values["registry_token"] = Secret(env["REGISTRY_TOKEN"])
        if "REGISTRY_CACHE_TTL" in env:
            values["registry_cache_ttl"] = _number(env, "REGISTRY_CACHE_TTL", minimum=0)
        if "REGISTRY_TIMEOUT" in env:
            values["registry_timeout"] = _number(env, "REGISTRY_TIMEOUT", minimum=0.001)
        if env.get("REGISTRY_SUBJECT_TEMPLATE", "").strip():
            values["registry_subject_template"] = env["REGISTRY_SUBJECT_TEMPLATE"].strip()
        for var, attr in (
            ("SCHEMA_PREFER_TRACK", "prefer_track"),
            ("SCHEMA_FALLBACK_TRACK", "fallback_track"),
        ):
            if env.get(var, "").strip():
                track = env[var].strip()
                if not TRACK_RE.match(track):
                    raise ConfigError(f"{var}={track!r} is not a track name such as v1 or v2")
                values[attr] = track
        if env.get("REGISTRY_ENFORCEMENT", "").strip():
            raw = env["REGISTRY_ENFORCEMENT"].strip().lower()
            if raw not in ("off", "warn", "strict"):
                raise ConfigError(
                    f"REGISTRY_ENFORCEMENT={env['REGISTRY_ENFORCEMENT']!r}: use off, warn or strict"
                )
            values["enforcement"] = Mode(raw)
        if env.get("METRICS_PORT", "").strip():
            port = _number(env, "METRICS_PORT", minimum=0)
            if port != int(port) or port > 65535:
                raise ConfigError(f"METRICS_PORT={env['METRICS_PORT']!r}: a port is 0-65535")
            values["metrics_port"] = int(port)
        if env.get("METRICS_ADDR", "").strip():
            values["metrics_addr"] = env["METRICS_ADDR"].strip()
        if env.get("POLICY_VALIDATOR", "").strip():
            backend = env["POLICY_VALIDATOR"].strip().lower()
            if backend not in BACKENDS:
                raise ConfigError(
                    f"POLICY_VALIDATOR={env['POLICY_VALIDATOR']!r}: use {' or '.join(BACKENDS)}"
                )
            values["validator_backend"] = backend
        if "POLICY_LOG_VALUES" in env:
            values["log_values"] = _bool(env, "POLICY_LOG_VALUES")
        if env.get("GUARDRAIL_STORE", "").strip():
            values["guardrail_store"] = env["GUARDRAIL_STORE"].strip()
        return cls(**values)

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some settings replaced (CLI flags over env, tests over defaults)."""
        return replace(self, **changes)


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = env[name].strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name}={env[name]!r}: use true or false")


def _number(env: Mapping[str, str], name: str, *, minimum: float) -> float:
    try:
        value = float(env[name])
    except ValueError:
        raise ConfigError(f"{name}={env[name]!r} is not a number") from None
    if not value >= minimum or value == float("inf"):
        raise ConfigError(f"{name}={env[name]!r} must be a finite number >= {minimum:g}")
    return value
