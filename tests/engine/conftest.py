"""Fixtures for the engine tests: an in-memory schema source, a settable clock, policy files.

Everything here is a real implementation (no mock library): ``InMemorySchemaSource`` implements
the ``SchemaSource`` protocol of ``policy_engine.sources`` with switches that make it answer
"not found" or fail like an unreachable registry, and counts every fetch.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mmh3
import pytest

from policy_engine import PolicyEngine, Settings
from policy_engine.errors import RegistryError, RegistryUnavailableError, SchemaNotFoundError
from policy_engine.sources import SchemaDocument

#: 2026-06-01T00:00:00Z, the default time of the test clock.
T0 = datetime(2026, 6, 1, tzinfo=UTC).timestamp()

ORDER_V2: dict[str, Any] = {
    "type": "object",
    "required": ["id", "price"],
    "properties": {
        "id": {"type": "string", "minLength": 1},
        "price": {"type": "number", "minimum": 0},
        "placed_at": {"type": "string", "format": "date-time"},
        "email": {"type": "string", "format": "email"},
        "producer": {"type": "object", "properties": {"id": {"type": "string"}}},
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["sku"],
                "properties": {"sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]+$"}},
            },
        },
    },
}
ORDER_V1: dict[str, Any] = {
    "type": "object",
    "required": ["order_id"],
    "properties": {"order_id": {"type": "string"}},
}
LEGACY_V1: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}},
}


class InMemorySchemaSource:
    """A ``SchemaSource`` holding schemas in a dict, with fault switches and a fetch counter.

    - a (schema, track) not in ``documents`` answers ``SchemaNotFoundError`` (a definite "no");
    - ``unavailable = True`` makes every call fail with ``RegistryUnavailableError``;
    - ``failures[(schema, track)] = SomeRegistryError`` makes only that pair fail;
    - ``hold``: when set to an event, every fetch waits until it is set (a slow registry whose
      answer the test releases); ``fetching`` is set as soon as a fetch has started;
    - ``fetches`` counts fetch calls per (schema, track), ``fetch_threads`` records who called.
    """

    description = "in-memory"

    def __init__(self, documents: Mapping[tuple[str, str], Any] | None = None) -> None:
        self.documents: dict[tuple[str, str], tuple[str, Any]] = {}
        for (schema, track), document in (documents or {}).items():
            self.put(schema, track, document)
        self.unavailable = False
        self.failures: dict[tuple[str, str], type[RegistryError]] = {}
        self.hold: threading.Event | None = None
        self.fetching = threading.Event()
        self.fetches: Counter[tuple[str, str]] = Counter()
        self.fetch_threads: list[int] = []
        self.closed = False

    def put(self, schema: str, track: str, document: Any, version: str | None = None) -> None:
        """Store ``document``; its version is its content hash unless given."""
        if version is None:
            text = json.dumps(document, sort_keys=True).encode()
            version = hashlib.sha256(text).hexdigest()[:12]
        self.documents[(schema, track)] = (version, document)

    def fetch(self, schema: str, track: str) -> SchemaDocument:
        """The stored schema, or the error the switches ask for."""
        self.fetches[(schema, track)] += 1
        self.fetch_threads.append(threading.get_ident())
        self.fetching.set()
        if self.hold is not None:
            self.hold.wait(30)  # bounded: a test that never releases fails instead of hanging
        if self.unavailable:
            raise RegistryUnavailableError("registry is down", schema=schema, track=track)
        failure = self.failures.get((schema, track))
        if failure is not None:
            raise failure(f"{failure.__name__} for {schema} {track}", schema=schema, track=track)
        try:
            version, document = self.documents[(schema, track)]
        except KeyError:
            raise SchemaNotFoundError(
                f"no schema {schema} track {track}", schema=schema, track=track
            ) from None
        return SchemaDocument(schema=schema, track=track, version=version, document=document)

    def known_schemas(self) -> Mapping[str, tuple[str, ...]]:
        """Every stored schema name with its tracks."""
        if self.unavailable:
            raise RegistryUnavailableError("registry is down")
        known: dict[str, list[str]] = {}
        for schema, track in self.documents:
            known.setdefault(schema, []).append(track)
        return {name: tuple(sorted(tracks)) for name, tracks in known.items()}

    def close(self) -> None:
        """Remember that the engine closed the source."""
        self.closed = True

    @property
    def total_fetches(self) -> int:
        """Fetch calls over every (schema, track)."""
        return sum(self.fetches.values())


class Clock:
    """A clock the test moves by hand: ``PolicyEngine(..., clock=clock)``."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds


def bucket_of(salt: str, key: str) -> int:
    """SPEC §3.5 written out: ``(murmur3_x86_32(salt + ":" + key, seed 0) * 10000) >> 32``."""
    return mmh3.hash(salt + ":" + key, 0, signed=False) * 10000 >> 32


def find_key(salt: str, accept: Callable[[int], bool], prefix: str = "k-") -> str:
    """The first key ``<prefix><n>`` whose bucket under ``salt`` satisfies ``accept``."""
    for n in range(200_000):
        key = f"{prefix}{n}"
        if accept(bucket_of(salt, key)):
            return key
    raise AssertionError(f"no key with a matching bucket for salt {salt!r}")


@pytest.fixture
def clock() -> Clock:
    """A clock standing at ``T0`` until the test moves it."""
    return Clock()


@pytest.fixture
def source() -> InMemorySchemaSource:
    """shop.Order with tracks v1 and v2, shop.Legacy with v1 only."""
    return InMemorySchemaSource(
        {
            ("shop.Order", "v1"): ORDER_V1,
            ("shop.Order", "v2"): ORDER_V2,
            ("shop.Legacy", "v1"): LEGACY_V1,
        }
    )


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """An empty directory for policy files."""
    path = tmp_path / "policies"
    path.mkdir()
    return path


@pytest.fixture
def make_engine(
    policy_dir: Path, source: InMemorySchemaSource, clock: Clock
) -> Iterator[Callable[..., PolicyEngine]]:
    """Build engines over ``policy_dir`` (with ``policy`` written to ``rules.yaml`` if given)."""
    engines: list[PolicyEngine] = []

    def build(
        policy: str | None = None,
        *,
        settings: Settings | None = None,
        hooks: tuple[object, ...] = (),
        registry: Any = None,
    ) -> PolicyEngine:
        if policy is not None:
            (policy_dir / "rules.yaml").write_text(policy, encoding="utf-8")
        engine = PolicyEngine(
            policies=str(policy_dir),
            registry=source if registry is None else registry,
            settings=settings,
            clock=clock,
            hooks=hooks,
        )
        engines.append(engine)
        return engine

    yield build
    for engine in engines:
        engine.close()


def one_rule(schema: str, body: str) -> str:
    """A policy file (format version 1) with one schema rule; ``body`` is its YAML block."""
    indented = "\n".join("    " + line if line else line for line in body.strip().splitlines())
    return f"version: 1\nschemas:\n  {schema}:\n{indented}\n"


@pytest.fixture(name="bucket_of")
def _bucket_of() -> Callable[[str, str], int]:
    """SPEC §3.5's bucket formula, written out independently of the engine."""
    return bucket_of


@pytest.fixture(name="find_key")
def _find_key() -> Callable[..., str]:
    """Search for a key whose bucket under a salt satisfies a predicate."""
    return find_key


@pytest.fixture(name="one_rule")
def _one_rule() -> Callable[[str, str], str]:
    """Build a policy file with one schema rule."""
    return one_rule


@pytest.fixture
def new_source() -> type[InMemorySchemaSource]:
    """The in-memory source class, for tests that need their own schemas or switches."""
    return InMemorySchemaSource
