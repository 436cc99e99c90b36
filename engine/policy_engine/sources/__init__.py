"""Where schemas come from: the ``SchemaSource`` protocol and its implementations.

A source answers three ways, and the engine treats them differently (docs/registry.md):

- a ``SchemaDocument``: the schema of that track;
- ``SchemaNotFoundError``: a definite "no such schema or track" (track fallback applies);
- ``RegistryUnavailableError`` / ``InvalidSchemaError``: a fault; the engine keeps serving a
  cached schema, stale if need be, and never falls back to another track because of it.

Implementations: ``DirectorySchemaSource`` (``policy_engine.sources.embedded``, the embedded
registry) and ``HttpSchemaSource`` (``policy_engine.sources.http``, a Confluent-compatible
registry).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

from policy_engine.errors import ConfigError
from policy_engine.settings import Settings

if TYPE_CHECKING:
    from policy_engine.hooks import RegistryObserver


@dataclass(frozen=True, slots=True)
class SchemaDocument:
    """One schema of one track, as the registry serves it.

    ``version`` changes whenever the content does (a registry version number, or a content hash
    for files): compiled validators are cached by it. ``references`` maps URIs to the documents a
    ``$ref`` may point at; nothing outside it is ever fetched.
    """

    schema: str
    track: str
    version: str
    document: Any
    references: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@runtime_checkable
class SchemaSource(Protocol):
    """Anything that can hand out JSON Schemas by (schema name, track).

    A source may also offer ``async def afetch(schema, track) -> SchemaDocument``: the engine's
    asyncio API awaits it; without it, ``fetch`` runs in a worker thread.
    """

    #: A short description for logs and ``explain`` ("schemas/", "https://registry:8081").
    description: str

    def fetch(self, schema: str, track: str) -> SchemaDocument:
        """The schema of ``track``; raises ``SchemaNotFoundError`` or another ``RegistryError``."""
        ...

    def known_schemas(self) -> Mapping[str, tuple[str, ...]]:
        """Every schema name the source knows, with its tracks (for lint and label folding)."""
        ...

    def close(self) -> None:
        """Release connections or handles; the source is not used afterwards."""
        ...


def open_schema_source(
    registry: str | PathLike[str] | SchemaSource,
    settings: Settings | None = None,
    observers: Sequence[RegistryObserver] = (),
) -> SchemaSource:
    """The ``SchemaSource`` a ``REGISTRY_URL`` names, or ``registry`` if it is one.

    A directory or ``file://`` path is the embedded registry; an ``http://`` or ``https://`` URL
    is a Confluent-compatible registry (``HttpSchemaSource``), configured from ``settings``
    (token, timeout, cache TTL, subject template; the defaults without it) and reporting its
    requests and cache lookups to ``observers``.
    """
    if isinstance(registry, SchemaSource):
        return registry
    text = str(registry)
    if text.startswith(("http://", "https://")):
        from policy_engine.sources.http import HttpSchemaSource  # httpx: only when used

        return HttpSchemaSource.from_settings(text, settings or Settings(), observers)
    scheme, sep, _ = text.partition("://")
    if sep and scheme != "file" and scheme.isalpha():
        raise ConfigError(
            f"REGISTRY_URL={redact_url(text)!r}: use a directory, a file:// path or an "
            "http(s):// URL"
        )
    from policy_engine.sources.embedded import DirectorySchemaSource

    return DirectorySchemaSource(text.removeprefix("file://"))


def redact_url(url: str) -> str:
    """``url`` without the user info (``https://user:secret@host`` -> ``https://host``).

    For every message that names a registry: a password in ``REGISTRY_URL`` never reaches logs.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


__all__ = ["SchemaDocument", "SchemaSource", "open_schema_source", "redact_url"]
