"""Code written against the old global switch keeps working (see docs/migration.md).

The old pipeline configured validation with ``RegistryConfig`` (environment variables) and
validated with ``SchemaManager``::

    cfg = RegistryConfig()
    if cfg.enabled:
        async with SchemaManager(
            registry_url=cfg.url,
            token=cfg.token,
            cache_ttl=cfg.cache_ttl,
            enforcement_mode=cfg.enforcement_mode,     # "warn" | "strict": all or nothing
        ) as manager:
            ok, errors = await manager.validate_payload("telemetry.FeedbackEvent", payload)

Both keep their constructor arguments, environment variables and return values: warn returns
``(False, errors)`` for a bad payload, strict raises ``SchemaValidationError`` (with
``schema_name``, ``errors``, ``track``, ``enforcement_mode``), a valid payload gives
``(True, [])``, and a registry that cannot serve a schema gives ``(True, [])`` (the old graceful
degradation; ``on_registry_error: reject`` in a policy file changes that per schema).

Behind them is a ``PolicyEngine`` whose global default is ``enforcement_mode``: with no policy
files it behaves exactly as the switch did; policy files found through ``POLICY_PATHS``
(default ``policies``) then set modes per schema and track, with canaries, without touching this
code. ``docs/migration.md`` walks through it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from policy_engine.decision import Decision
from policy_engine.engine import PolicyEngine, PolicyPaths, raise_for_rejection
from policy_engine.errors import ConfigError, EngineError, RegistryError, SchemaNotFoundError
from policy_engine.modes import Action, Mode
from policy_engine.settings import Secret, Settings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger("policy_engine.compat")

#: The registry ``RegistryConfig`` points at when ``REGISTRY_URL`` is unset: the embedded one.
DEFAULT_REGISTRY_URL = "schemas"
_MODES = ("warn", "strict")


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "")
    return value if value.strip() else default


def _env_int(name: str, default: int) -> int:
    raw = _env(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None


def _env_float(name: str, default: float) -> float:
    raw = _env(name, str(default))
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None


@dataclass(frozen=True)
class RegistryConfig:
    """The old pipeline's registry settings, read from the environment when created.

    Environment variables (unchanged): ``REGISTRY_ENABLED`` (default false), ``REGISTRY_URL``,
    ``REGISTRY_TOKEN``, ``REGISTRY_CACHE_TTL`` (300), ``REGISTRY_TIMEOUT`` (30.0),
    ``SCHEMA_PREFER_TRACK`` (v2), ``SCHEMA_FALLBACK_TRACK`` (v1), ``REGISTRY_ENFORCEMENT``
    (warn | strict, default warn), ``REGISTRY_POLL_SECONDS`` (60). ``REGISTRY_URL`` defaults to
    the embedded registry directory ``schemas``; an ``http(s)://`` URL is a Confluent-compatible
    registry.
    """

    enabled: bool = field(
        default_factory=lambda: _env("REGISTRY_ENABLED", "false").lower() == "true"
    )
    url: str = field(default_factory=lambda: _env("REGISTRY_URL", DEFAULT_REGISTRY_URL))
    token: str | None = field(default_factory=lambda: os.environ.get("REGISTRY_TOKEN") or None)
    cache_ttl: int = field(default_factory=lambda: _env_int("REGISTRY_CACHE_TTL", 300))
    timeout: float = field(default_factory=lambda: _env_float("REGISTRY_TIMEOUT", 30.0))
    prefer_track: str = field(default_factory=lambda: _env("SCHEMA_PREFER_TRACK", "v2"))
    fallback_track: str | None = field(default_factory=lambda: _env("SCHEMA_FALLBACK_TRACK", "v1"))
    enforcement_mode: str = field(default_factory=lambda: _env("REGISTRY_ENFORCEMENT", "warn"))
    poll_seconds: int = field(default_factory=lambda: _env_int("REGISTRY_POLL_SECONDS", 60))

    def validate(self) -> None:
        """Raise ``ValueError`` (a ``ConfigError``) for a setting the pipeline cannot use."""
        if self.enabled and not self.url:
            raise ConfigError("REGISTRY_URL must be set when REGISTRY_ENABLED=true")
        if self.cache_ttl < 0:
            raise ConfigError("REGISTRY_CACHE_TTL must be >= 0")
        if self.timeout <= 0:
            raise ConfigError("REGISTRY_TIMEOUT must be > 0")
        if self.enforcement_mode not in _MODES:
            raise ConfigError("REGISTRY_ENFORCEMENT must be 'warn' or 'strict'")


class _RegistryStats:
    """A ``RegistryObserver`` hook feeding ``get_stats()``'s cache and registry counters."""

    def __init__(self, stats: dict[str, int]) -> None:
        self.stats = stats

    def registry_request(self, outcome: str) -> None:
        """Count requests that failed as ``registry_errors``."""
        if outcome != "ok":
            self.stats["registry_errors"] += 1

    def registry_cache(self, result: str) -> None:
        """Count cache hits and misses (a stale entry is a miss: it is fetched again)."""
        self.stats["cache_hits" if result == "hit" else "cache_misses"] += 1


class SchemaManager:
    """The old pipeline's ``SchemaManager``, backed by a ``PolicyEngine``.

    >>> async with SchemaManager(registry_url="schemas", enforcement_mode="strict") as m:
    ...     ok, errors = await m.validate_payload("telemetry.FeedbackEvent", payload)
    ...                                                                   # doctest: +SKIP

    ``enforcement_mode`` becomes the engine's global default (``REGISTRY_ENFORCEMENT``); policy
    files (``policies=``, else ``POLICY_PATHS``, else ``policies`` if it exists) override it per
    schema and track. ``enabled=False`` validates nothing (every payload is ``(True, [])``).
    Keyword-only additions: ``policies``, ``metrics_registry``, ``environ`` (for the other
    settings, the variables of docs/configuration.md).
    """

    def __init__(
        self,
        registry_url: str,
        token: str | None = None,
        enabled: bool = True,
        cache_ttl: int = 300,
        timeout: float = 30.0,
        enforcement_mode: str = "warn",
        *,
        policies: PolicyPaths | None = None,
        metrics_registry: CollectorRegistry | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.registry_url = registry_url
        self.token = token
        self.enabled = enabled
        self.cache_ttl = cache_ttl
        self.timeout = timeout
        self.enforcement_mode = enforcement_mode
        if enforcement_mode not in _MODES:
            raise ConfigError("enforcement_mode must be 'warn' or 'strict'")
        self._policies = policies
        self._metrics_registry = metrics_registry
        self._environ = environ
        self._engines: dict[tuple[str, str | None], PolicyEngine] = {}
        self._default_tracks: tuple[str, str | None] = ("v2", "v1")
        self._started = False
        self._lock = asyncio.Lock()
        self._stats: dict[str, int] = {
            "cache_hits": 0,
            "cache_misses": 0,
            "validation_success": 0,
            "validation_failure": 0,
            "registry_errors": 0,
            "enforcement_warnings": 0,
            "enforcement_rejections": 0,
        }
        self._observer = _RegistryStats(self._stats)
        self._seen: set[str] = set()

    # ------------------------------------------------------------------ lifecycle

    def _settings(self, prefer: str | None = None, fallback: str | None = None) -> Settings:
        base = Settings.from_env(self._environ)
        changes: dict[str, Any] = {
            "registry_url": self.registry_url,
            "registry_token": Secret(self.token or ""),
            "registry_cache_ttl": float(self.cache_ttl),
            "registry_timeout": float(self.timeout),
            "enforcement": Mode(self.enforcement_mode),
            "registry_enabled": True,
        }
        if prefer is not None:
            changes["prefer_track"] = prefer
            changes["fallback_track"] = fallback or prefer  # no fallback: only `prefer`
        return base.with_overrides(**changes)

    def _build(self, settings: Settings) -> PolicyEngine:
        engine = PolicyEngine(
            self._policies,
            settings=settings,
            hooks=(self._observer,),
            metrics_registry=self._metrics_registry,
        )
        if settings.policy_watch:
            engine.start_watching()
        return engine

    async def start(self) -> None:
        """Load the policies and open the registry. ``RuntimeError`` if that fails (the old
        contract; the cause is chained)."""
        if not self.enabled:
            log.info("schema registry disabled (enabled=False): payloads are not validated")
            return
        async with self._lock:
            if self._started:
                return
            try:
                settings = self._settings()
                engine = await asyncio.to_thread(self._build, settings)
            except EngineError as exc:
                self.enabled = False
                raise RuntimeError(f"Registry client initialization failed: {exc}") from exc
            self._default_tracks = (settings.prefer_track, settings.fallback_track)
            self._engines[self._default_tracks] = engine
            self._started = True

    async def close(self) -> None:
        """Stop watching the policies and close the registry connections."""
        engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            await asyncio.to_thread(engine.close)
        self._started = False

    async def __aenter__(self) -> SchemaManager:
        await self.start()
        return self

    async def __aexit__(self, *args: object) -> None:
        await self.close()

    @property
    def engine(self) -> PolicyEngine:
        """The engine doing the work (after ``start()``)."""
        if not self._started:
            raise RuntimeError("SchemaManager is not started: call start() or use async with")
        return self._engines[self._default_tracks]

    async def _engine_for(self, prefer: str | None, fallback: str | None) -> PolicyEngine:
        if not self._started:
            await self.start()
        default = self._default_tracks
        if prefer is None or (prefer, fallback) == default:
            return self._engines[default]
        engine = self._engines.get((prefer, fallback))
        if engine is None:  # another pair of tracks than configured: an engine of its own
            try:
                engine = await asyncio.to_thread(self._build, self._settings(prefer, fallback))
            except EngineError as exc:
                raise RuntimeError(
                    f"cannot validate with tracks {prefer}/{fallback}: {exc}"
                ) from exc
            self._engines[(prefer, fallback)] = engine
        return engine

    # ------------------------------------------------------------------ the old API

    async def get_schema(
        self, name: str, prefer: str = "v2", fallback: str | None = "v1"
    ) -> dict[str, Any]:
        """The JSON Schema of ``name``: track ``prefer``, else ``fallback`` if ``prefer`` does
        not exist. Raises ``SchemaNotFoundError`` (neither exists), ``RuntimeError`` (disabled)
        or another ``RegistryError``."""
        if not self.enabled:
            raise RuntimeError(
                "Schema registry is disabled or not initialized. "
                "Call start() first or enable registry."
            )
        engine = await self._engine_for(None, None)
        tracks = [prefer] + ([fallback] if fallback and fallback != prefer else [])
        error: RegistryError | None = None
        for track in tracks:
            try:
                document = await asyncio.to_thread(engine.source.fetch, name, track)
            except SchemaNotFoundError as exc:
                error = exc
                continue
            except RegistryError:
                self._stats["registry_errors"] += 1
                raise
            content = document.document
            return content if isinstance(content, dict) else {"const": content}
        self._stats["registry_errors"] += 1
        assert error is not None
        raise error

    async def validate_payload(
        self,
        schema_name: str,
        payload: Any,
        prefer: str | None = None,
        fallback: str | None = None,
        *,
        key: Any = None,
    ) -> tuple[bool, list[str]]:
        """``(True, [])`` valid or not validated, ``(False, errors)`` invalid in warn mode;
        raises ``SchemaValidationError`` when rejected (strict).

        ``prefer``/``fallback`` default to ``SCHEMA_PREFER_TRACK``/``SCHEMA_FALLBACK_TRACK``;
        ``key`` is the canary key (default: the rule's ``key`` path, else a payload hash).
        """
        if not self.enabled:
            return True, []  # the old graceful degradation: disabled means "valid"
        engine = await self._engine_for(prefer, fallback)
        decision = await engine.aevaluate(schema_name, payload, key=key)
        if len(self._seen) < 10_000:
            self._seen.add(schema_name)
        return self._result(decision)

    def _result(self, decision: Decision) -> tuple[bool, list[str]]:
        stats = self._stats
        if decision.action is Action.REJECTED and decision.valid is None:
            # no usable schema and the rule says on_registry_error: reject (strict only)
            stats["enforcement_rejections"] += 1
            raise_for_rejection(decision)
        if decision.valid is None:  # mode off, or no usable schema with allow: not validated
            return True, []
        if decision.valid:
            stats["validation_success"] += 1
            return True, []
        stats["validation_failure"] += 1
        if decision.action is Action.REJECTED:
            stats["enforcement_rejections"] += 1
            raise_for_rejection(decision)
        stats["enforcement_warnings"] += 1
        return False, [f"{v.path or '(root)'}: {v.message}" for v in decision.violations]

    def get_stats(self) -> dict[str, Any]:
        """Counters as the old pipeline reported them, plus ``cache``/``enabled``/``started``."""
        return {
            **self._stats,
            "cache": {"size": len(self._seen), "ttl_seconds": self.cache_ttl},
            "enabled": self.enabled,
            "started": self._started,
        }

    async def clear_cache(self) -> None:
        """Forget cached schemas: the next payloads fetch them again."""
        if not self._started:
            return
        old = list(self._engines.values())
        self._engines = {}
        self._seen.clear()
        self._started = False
        for engine in old:
            await asyncio.to_thread(engine.close)
        await self.start()


__all__ = ["RegistryConfig", "SchemaManager"]
