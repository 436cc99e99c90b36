"""The HTTP schema registry against a real Confluent-compatible server on 127.0.0.1.

``policy_engine.testing.FakeSchemaRegistry`` serves schemas from memory with fault injection.
The cache and backoff run on a settable clock shared by the engine and the source, so TTLs and
backoff periods pass without sleeping. Request timeouts are real: ordinary requests get a
generous one (``TIMEOUT``) that a loaded machine never misses; a test about timeouts makes the
registry hang (``Fault.hang``: no answer until the test releases it, if ever) and only then gives
the client a short one (``HANG_TIMEOUT``), so the timeout is the one possible outcome, and pins
which error came back and how many requests were made, never how long anything took.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import policy_engine.schemas
import policy_engine.sources.http
from policy_engine import (
    Action,
    ConfigError,
    HttpSchemaSource,
    InvalidSchemaError,
    PolicyEngine,
    RegistryServerError,
    RegistryUnavailableError,
    SchemaIdNotFoundError,
    SchemaNotFoundError,
    Settings,
    SubjectNotFoundError,
    VersionNotFoundError,
)
from policy_engine.cli import main
from policy_engine.sources import open_schema_source, redact_url
from policy_engine.sources.subjects import SubjectTemplate
from policy_engine.testing import (
    FakeSchemaRegistry,
    Fault,
    RecordingRegistryObserver,
    wait_for_refreshes,
)

#: For requests that are answered: long enough for any loaded machine.
TIMEOUT = 30.0
#: For requests the registry never answers (``Fault.hang``): any timeout times out; short is quick.
HANG_TIMEOUT = 0.25
TTL = 60.0
#: Past the engine's retry interval for a failed slot (10 s) and the first backoff (1 s).
RETRY = policy_engine.schemas.ERROR_RETRY_SECONDS + 1
LATEST_V2 = "/subjects/shop.Order-v2/versions/latest"
LATEST_V1 = "/subjects/shop.Order-v1/versions/latest"

ORDER_V2: dict[str, Any] = {
    "type": "object",
    "required": ["id", "price"],
    "properties": {"id": {"type": "string"}, "price": {"type": "number", "minimum": 0}},
}
ORDER_V2_STRICTER: dict[str, Any] = {**ORDER_V2, "required": ["id", "price", "currency"]}
ORDER_V1: dict[str, Any] = {"type": "object", "required": ["order_id"]}
LEGACY_V1: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}},
}
VALID = {"id": "o-1", "price": 3.5}
INVALID = {"id": "o-1", "price": -1}

STRICT_REJECT = """\
version: 1
schemas:
  shop.Order:
    mode: strict
    on_registry_error: reject
"""


class Clock:
    """A clock the test moves by hand, shared by the engine and the source."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    """A settable clock."""
    return Clock()


@pytest.fixture
def registry() -> Iterator[FakeSchemaRegistry]:
    """A registry with shop.Order (v1, v2) and shop.Legacy (v1 only)."""
    with FakeSchemaRegistry() as reg:
        reg.register("shop.Order-v2", ORDER_V2)
        reg.register("shop.Order-v1", ORDER_V1)
        reg.register("shop.Legacy-v1", LEGACY_V1)
        yield reg


@pytest.fixture
def observer() -> RecordingRegistryObserver:
    """Counts registry requests and cache lookups."""
    return RecordingRegistryObserver()


@pytest.fixture
def make_source(
    registry: FakeSchemaRegistry, clock: Clock, observer: RecordingRegistryObserver
) -> Iterator[Callable[..., HttpSchemaSource]]:
    """Build sources on the test clock with generous timeouts (closed after the test)."""
    sources: list[HttpSchemaSource] = []

    def build(url: str | None = None, **options: Any) -> HttpSchemaSource:
        settings: dict[str, Any] = {
            "timeout": TIMEOUT,
            "cache_ttl": TTL,
            "clock": clock,
            "rng": lambda: 1.0,  # the upper end of the jitter: backoff 1 s, 2 s, 4 s, ...
            "observers": [observer],
        }
        settings.update(options)
        source = HttpSchemaSource(url or registry.url, **settings)
        sources.append(source)
        return source

    yield build
    for source in sources:
        source.close()


@pytest.fixture
def make_engine(
    tmp_path: Path, make_source: Callable[..., HttpSchemaSource], clock: Clock
) -> Iterator[Callable[..., PolicyEngine]]:
    """Build engines over an HTTP source on the test clock (closed after the test)."""
    engines: list[PolicyEngine] = []

    def build(policy: str | None = None, **source_options: Any) -> PolicyEngine:
        policies: Any = []
        if policy is not None:
            (tmp_path / "rules.yaml").write_text(policy, encoding="utf-8")
            policies = str(tmp_path)
        eng = PolicyEngine(
            policies=policies,
            registry=make_source(**source_options),
            settings=Settings(registry_cache_ttl=TTL, registry_timeout=TIMEOUT),
            clock=clock,
        )
        engines.append(eng)
        return eng

    yield build
    for eng in engines:
        eng.close()


def time_out_soon(source: HttpSchemaSource, seconds: float = HANG_TIMEOUT) -> None:
    """From now on ``source``'s requests give up after ``seconds``: for a warm source that is
    about to meet a hung registry (each request's deadline is set when it starts)."""
    source.timeout = source._cache.timeout = seconds


# ---------------------------------------------------------------------------- reading


def test_fetch_parses_the_schema_string_and_uses_the_id_as_version(make_source, registry):
    """fetch reads the subject's latest version, parses its schema string, versions it by id."""
    schema_id = registry.register("shop.Order-v2", ORDER_V2)
    doc = make_source().fetch("shop.Order", "v2")
    assert (doc.schema, doc.track, doc.document) == ("shop.Order", "v2", ORDER_V2)
    assert doc.version == str(schema_id)
    assert registry.count(LATEST_V2) == 1


def test_latest_is_cached_for_the_ttl(make_source, registry, clock, observer):
    """A second fetch within the TTL is a cache hit; after it the registry is asked again."""
    source = make_source()
    source.fetch("shop.Order", "v2")
    clock.advance(TTL - 1)
    source.fetch("shop.Order", "v2")
    assert registry.count(LATEST_V2) == 1
    clock.advance(1)
    source.fetch("shop.Order", "v2")
    assert registry.count(LATEST_V2) == 2
    assert observer.cache == {"miss": 2, "hit": 1}
    assert observer.requests == {"ok": 2}


def test_versions_and_ids_are_cached_forever(make_source, registry, clock):
    """Numbered versions and ids never change, so they are fetched once whatever the TTL."""
    source = make_source()
    schema_id = registry.register("shop.Order-v2", ORDER_V2_STRICTER)
    assert source.fetch_version("shop.Order", "v2", 1).document == ORDER_V2
    assert source.schema_by_id(schema_id).document == ORDER_V2_STRICTER
    clock.advance(TTL * 100)
    assert source.fetch_version("shop.Order", "v2", 1).document == ORDER_V2
    assert source.schema_by_id(schema_id).document == ORDER_V2_STRICTER
    assert registry.count("/versions/1") == 1
    assert registry.count(f"/schemas/ids/{schema_id}") == 1


def test_async_forms_answer_like_the_sync_ones(make_source, registry):
    """afetch, afetch_version, aschema_by_id and aknown_schemas answer as their sync forms."""
    source = make_source()

    async def run() -> tuple[Any, ...]:
        return (
            (await source.afetch("shop.Order", "v2")).document,
            (await source.afetch_version("shop.Order", "v1", 1)).document,
            (await source.aschema_by_id(3)).document,
            dict(await source.aknown_schemas()),
        )

    assert asyncio.run(run()) == (
        ORDER_V2,
        ORDER_V1,
        LEGACY_V1,
        {"shop.Legacy": ("v1",), "shop.Order": ("v1", "v2")},
    )


def test_known_schemas_reads_subjects_through_the_template(make_source, registry):
    """The subject list is read back through the template; subjects it does not fit are left out."""
    registry.register("acme.shop.Order.v3", ORDER_V2)
    registry.register("orders-value", ORDER_V2)  # a Kafka-style subject
    source = make_source(subject_template="acme.{schema}.{track}")
    assert source.known_schemas() == {"shop.Order": ("v3",)}
    assert source.fetch("shop.Order", "v3").document == ORDER_V2


def test_engine_uses_the_subject_template_setting(registry, tmp_path):
    """REGISTRY_SUBJECT_TEMPLATE decides which subject the engine asks for."""
    registry.register("shop.Order/v2", ORDER_V2_STRICTER)
    settings = Settings.from_env(
        {"REGISTRY_SUBJECT_TEMPLATE": "{schema}/{track}", "REGISTRY_TIMEOUT": str(TIMEOUT)}
    )
    with PolicyEngine(policies=[], registry=registry.url, settings=settings) as eng:
        d = eng.evaluate("shop.Order", VALID, track="v2")
    assert d.violations[0].keyword == "required"
    assert registry.count("/subjects/shop.Order%2Fv2/versions/latest") == 1


@pytest.mark.parametrize(
    "template", ["{schema}", "{track}-{schema}-{track}", "{schema}-{track}-{env}", "{schema!r}"]
)
def test_bad_subject_templates_are_config_errors(template):
    """A template without {schema} and {track} once each is refused at start-up, by name."""
    with pytest.raises(ConfigError, match="REGISTRY_SUBJECT_TEMPLATE"):
        Settings.from_env({"REGISTRY_SUBJECT_TEMPLATE": template})
    with pytest.raises(ConfigError, match="REGISTRY_SUBJECT_TEMPLATE"):
        SubjectTemplate(template)


def test_subject_template_reads_dashed_schema_names():
    """With the default template the track is the last dash-separated part."""
    template = SubjectTemplate()
    assert template("a-b", "v2") == "a-b-v2"
    assert template.parse("a-b-v2") == ("a-b", "v2")
    assert template.parse("no_dash") is None


def test_registry_below_a_path_prefix_works(make_source):
    """A base URL with a path (Apicurio's /apis/ccompat/v7) keeps its path for every request."""
    with FakeSchemaRegistry(prefix="/apis/ccompat/v7") as apicurio:
        apicurio.register("shop.Order-v2", ORDER_V2)
        source = make_source(apicurio.url)
        assert source.fetch("shop.Order", "v2").document == ORDER_V2
        assert source.known_schemas() == {"shop.Order": ("v2",)}
        assert apicurio.count("/apis/ccompat/v7/subjects") == 2


def test_invalid_schema_names_are_not_sent_to_the_registry(make_source, registry):
    """A producer's junk name is "not found" without a request."""
    with pytest.raises(SchemaNotFoundError):
        make_source().fetch("../../etc/passwd", "v2")
    assert registry.count() == 0


# ---------------------------------------------------------------------------- references


CUSTOMER = {
    "type": "object",
    "required": ["name", "address"],
    "properties": {"name": {"type": "string"}, "address": {"$ref": "address.json"}},
}
ADDRESS = {"type": "object", "required": ["zip"], "properties": {"zip": {"type": "string"}}}
ORDER_WITH_CUSTOMER = {
    "type": "object",
    "required": ["customer"],
    "properties": {"customer": {"$ref": "customer.json"}},
}


def register_customer_chain(registry: FakeSchemaRegistry, root: dict[str, Any]) -> None:
    """root -> customer.json -> address.json, as registry references."""
    registry.register("address", ADDRESS)
    registry.register("customer", CUSTOMER, references=[("address.json", "address", 1)])
    registry.register("shop.Order-v2", root, references=[("customer.json", "customer", 1)])


@pytest.mark.parametrize("root_id", [None, "https://schemas.example.com/shop/order.json"])
def test_references_resolve_recursively(make_engine, registry, root_id):
    """$refs resolve through the registry's references, transitively, with or without $id."""
    root = dict(ORDER_WITH_CUSTOMER, **({"$id": root_id} if root_id else {}))
    register_customer_chain(registry, root)
    eng = make_engine()
    d = eng.evaluate("shop.Order", {"customer": {"name": "x", "address": {"zip": 7}}})
    assert [(v.path, v.keyword) for v in d.violations] == [("/customer/address/zip", "type")]
    ok = {"customer": {"name": "x", "address": {"zip": "75001"}}}
    assert eng.evaluate("shop.Order", ok).action is Action.ACCEPTED
    assert registry.count("/subjects/customer/versions/1") == 1
    assert registry.count("/subjects/address/versions/1") == 1


def test_reference_versions_are_fetched_once_for_every_schema(make_source, registry, clock):
    """A referenced version is cached for good: refreshing the root does not fetch it again."""
    register_customer_chain(registry, ORDER_WITH_CUSTOMER)
    source = make_source()
    doc = source.fetch("shop.Order", "v2")
    assert set(doc.references) == {"customer.json", "address.json"}
    clock.advance(TTL)
    source.fetch("shop.Order", "v2")
    assert registry.count(LATEST_V2) == 2
    assert registry.count("/subjects/customer/versions/1") == 1


def test_missing_reference_makes_the_schema_invalid_not_missing(make_engine, registry):
    """A reference the registry lacks is InvalidSchemaError, so the engine never falls back."""
    registry.register("shop.Order-v2", ORDER_WITH_CUSTOMER, references=[("customer.json", "c", 9)])
    eng = make_engine()
    with pytest.raises(InvalidSchemaError, match=r"reference 'customer\.json'"):
        eng.source.fetch("shop.Order", "v2")
    d = eng.evaluate("shop.Order", {"customer": {}})
    assert (d.track, d.action) == ("v2", Action.SKIPPED)
    assert registry.count(LATEST_V1) == 0


def test_reference_to_a_schema_outside_the_registry_is_unusable(make_engine, registry):
    """A $ref to a URL that no reference names is never fetched: the schema is unusable."""
    registry.register("shop.Order-v2", {"$ref": "https://evil.example.com/x.json"})
    d = make_engine().evaluate("shop.Order", VALID)
    assert d.action is Action.SKIPPED
    assert "nothing is fetched" in d.reason


# ---------------------------------------------------------------------------- not found


@pytest.mark.parametrize(
    ("code", "error"),
    [(40401, SubjectNotFoundError), (40402, VersionNotFoundError), (40403, SchemaIdNotFoundError)],
)
def test_not_found_codes_become_typed_errors(make_source, registry, observer, code, error):
    """Each Confluent not-found code is its own SchemaNotFoundError subclass with the code."""
    registry.inject(Fault.not_found(code, message="gone"))
    with pytest.raises(error) as info:
        make_source().fetch("shop.Order", "v2")
    assert info.value.error_code == code
    assert (info.value.schema, info.value.track) == ("shop.Order", "v2")
    assert "gone" in str(info.value)
    assert observer.requests == {"not_found": 1}


def test_real_not_found_answers(make_source):
    """Unknown subjects, versions and ids answer 40401, 40402 and 40403."""
    source = make_source()
    with pytest.raises(SubjectNotFoundError):
        source.fetch("shop.Nothing", "v2")
    with pytest.raises(VersionNotFoundError):
        source.fetch_version("shop.Order", "v2", 99)
    with pytest.raises(SchemaIdNotFoundError):
        source.schema_by_id(999)


def test_not_found_falls_back_to_the_fallback_track(make_engine, registry):
    """A schema without v2 is validated against v1, after one "not found" for v2."""
    eng = make_engine()
    for _ in range(5):
        d = eng.evaluate("shop.Legacy", {"name": 1})
    assert (d.track, d.action) == ("v1", Action.LOGGED)
    assert registry.count("/subjects/shop.Legacy-v2/versions/latest") == 1
    assert registry.count("/subjects/shop.Legacy-v1/versions/latest") == 1


def test_not_found_is_cached_for_the_ttl(make_source, registry, clock):
    """A "not found" answer is remembered for the TTL, then asked again (it may appear)."""
    source = make_source()
    for _ in range(3):
        with pytest.raises(SubjectNotFoundError):
            source.fetch("shop.New", "v2")
    assert registry.count("shop.New-v2") == 1
    registry.register("shop.New-v2", ORDER_V2)
    clock.advance(TTL)
    assert source.fetch("shop.New", "v2").document == ORDER_V2


def test_a_deleted_subject_stops_being_served(make_source, registry, clock):
    """When the registry says the subject is gone, the cached schema is dropped, not served."""
    source = make_source()
    source.fetch("shop.Order", "v2")
    registry.delete_subject("shop.Order-v2")
    clock.advance(TTL)
    with pytest.raises(SubjectNotFoundError):
        source.fetch("shop.Order", "v2")


# ---------------------------------------------------------------------------- unusable schemas


def test_avro_schema_is_a_clear_error(make_engine, registry):
    """schemaType absent (AVRO) is InvalidSchemaError saying so; no fallback to v1."""
    registry.register("shop.Order-v2", '{"type": "record", "name": "Order"}', schema_type="AVRO")
    eng = make_engine(STRICT_REJECT)
    with pytest.raises(InvalidSchemaError, match=r"no schemaType means AVRO.*schemaType JSON"):
        eng.source.fetch("shop.Order", "v2")
    d = eng.evaluate("shop.Order", VALID, key="k")
    assert (d.track, d.action) == ("v2", Action.REJECTED)
    assert "AVRO" in d.violations[0].message
    assert registry.count(LATEST_V1) == 0


def test_protobuf_schema_is_refused_too(make_source, registry):
    """Any schemaType other than JSON is refused, naming it."""
    registry.register("shop.Order-v2", "syntax = 'proto3';", schema_type="PROTOBUF")
    with pytest.raises(InvalidSchemaError, match="schemaType is PROTOBUF"):
        make_source().fetch("shop.Order", "v2")


def test_schema_string_that_is_not_json_is_invalid(make_source, registry):
    """A schema string that does not parse is InvalidSchemaError, not an outage."""
    registry.register("shop.Order-v2", '{"type": "object",')
    with pytest.raises(InvalidSchemaError, match="not JSON"):
        make_source().fetch("shop.Order", "v2")


#: Unusable new versions: (schema, register options)
BROKEN_UPSTREAM: dict[str, tuple[Any, dict[str, Any]]] = {
    "not-a-json-schema": ({"type": 12}, {}),
    "avro": ('{"type": "record", "name": "Order", "fields": []}', {"schema_type": "AVRO"}),
    "schema-string-not-json": ('{"type": ', {}),
    "missing-reference": ({"$ref": "x.json"}, {"references": [("x.json", "nowhere", 1)]}),
}


@pytest.mark.parametrize("broken", BROKEN_UPSTREAM)
def test_unusable_new_version_keeps_the_last_good_validator(make_engine, registry, clock, broken):
    """An unusable new version upstream leaves the cached validator serving, with no track
    fallback; a fix upstream is picked up after the TTL."""
    eng = make_engine()
    assert eng.evaluate("shop.Order", INVALID).action is Action.LOGGED
    schema, options = BROKEN_UPSTREAM[broken]
    registry.register("shop.Order-v2", schema, **options)
    clock.advance(TTL)
    for _ in range(2):  # before and after the background refresh fetched the broken version
        d = eng.evaluate("shop.Order", INVALID)
        assert (d.track, d.action, d.violations[0].keyword) == ("v2", Action.LOGGED, "minimum")
        assert wait_for_refreshes(eng)
    assert registry.count(LATEST_V1) == 0
    registry.register("shop.Order-v2", ORDER_V2_STRICTER)
    clock.advance(TTL)
    eng.evaluate("shop.Order", VALID)  # meets the expiry: served stale, refreshed behind
    assert wait_for_refreshes(eng)
    assert eng.evaluate("shop.Order", VALID).violations[0].keyword == "required"


def test_invalid_json_schema_on_a_cold_subject_gets_on_registry_error(make_engine, registry):
    """With no good schema ever seen, a schema that does not compile means no usable schema."""
    registry.register("shop.Order-v2", {"type": 12})
    d = make_engine(STRICT_REJECT).evaluate("shop.Order", VALID, key="k")
    assert (d.action, d.violations[0].keyword) == (Action.REJECTED, "registry")
    assert "not a usable JSON Schema" in d.reason


def test_changed_schema_is_picked_up_after_the_ttl_and_compiled_once(
    make_engine, registry, clock, monkeypatch
):
    """A new upstream version replaces the validator after the TTL, compiled exactly once."""
    compiled: list[str] = []
    real = policy_engine.schemas.compile_schema

    def counting(doc: Any, backend: Any) -> Any:
        compiled.append(doc.version)
        return real(doc, backend)

    monkeypatch.setattr(policy_engine.schemas, "compile_schema", counting)
    eng = make_engine()
    assert eng.evaluate("shop.Order", VALID).action is Action.ACCEPTED
    new_id = registry.register("shop.Order-v2", ORDER_V2_STRICTER)
    clock.advance(TTL - 1)
    assert eng.evaluate("shop.Order", VALID).action is Action.ACCEPTED
    clock.advance(1)
    # The payload meeting the expiry is served by the cached validator while the new version is
    # fetched behind it; once that refresh is done, the new version decides.
    assert eng.evaluate("shop.Order", VALID).action is Action.ACCEPTED
    assert wait_for_refreshes(eng)
    for _ in range(10):
        assert eng.evaluate("shop.Order", VALID).action is Action.LOGGED
    assert compiled == ["1", str(new_id)]


def test_changed_schema_is_picked_up_after_one_real_ttl(registry):
    """With real clocks, a change is seen after one TTL, not two (the source's own TTL cache
    has always expired when the engine's does): one refresh brings the new version."""
    ttl = 1.0
    observer = RecordingRegistryObserver()
    settings = Settings(registry_cache_ttl=ttl, registry_timeout=TIMEOUT)
    with PolicyEngine(
        policies=[], registry=registry.url, settings=settings, hooks=[observer]
    ) as eng:
        assert eng.evaluate("shop.Order", VALID).action is Action.ACCEPTED
        registry.register("shop.Order-v2", ORDER_V2_STRICTER)
        registry.reset_requests()
        observer.cache.clear()
        deadline = time.monotonic() + 60
        while True:
            # Requests made before the payload that sees the change: the ones that brought it
            # (a refresh that payload starts itself cannot have decided it).
            asked = registry.count(LATEST_V2)
            if eng.evaluate("shop.Order", VALID).action is Action.LOGGED:
                break
            assert time.monotonic() < deadline, "the new version never arrived"
            time.sleep(ttl / 10)
        assert asked == 1  # one refresh, not two TTLs' worth
        # The engine's refresh was never answered from the source's own (still fresh) cache.
        assert observer.cache["hit"] == 0


# ---------------------------------------------------------------------------- outages


def _stop(registry: FakeSchemaRegistry, source: HttpSchemaSource) -> None:
    registry.stop()


def _hang(registry: FakeSchemaRegistry, source: HttpSchemaSource) -> None:
    registry.inject(Fault.hang())
    time_out_soon(source)


def _injects(fault: Fault) -> Callable[[FakeSchemaRegistry, HttpSchemaSource], None]:
    return lambda registry, source: registry.inject(fault)


#: (id, how to break the registry (and the source that will meet it), exception class, outcome)
FAULTS: list[
    tuple[str, Callable[[FakeSchemaRegistry, HttpSchemaSource], None], type[Exception], str]
] = [
    ("http-500", _injects(Fault.server_error()), RegistryServerError, "error"),
    ("hung", _hang, RegistryUnavailableError, "timeout"),
    ("refused", _stop, RegistryUnavailableError, "error"),
    ("truncated", _injects(Fault.truncated()), RegistryUnavailableError, "error"),
    ("not-json", _injects(Fault.garbage()), RegistryUnavailableError, "error"),
    (
        "404-without-code",
        _injects(Fault(status=404, body=b"<h1>Not Found</h1>")),
        RegistryUnavailableError,
        "error",
    ),
    (
        "not-a-schema-answer",
        _injects(Fault(body=b'{"unexpected": true}')),
        RegistryUnavailableError,
        "error",
    ),
]
FAULT_IDS = [f[0] for f in FAULTS]


def heal(registry: FakeSchemaRegistry, source: HttpSchemaSource) -> None:
    """Undo any fault: clear injections, serve again, and wait for answers as long as usual."""
    registry.heal()
    registry.start()
    time_out_soon(source, TIMEOUT)


@pytest.mark.parametrize(("name", "breaks", "error", "outcome"), FAULTS, ids=FAULT_IDS)
def test_fault_is_a_typed_unavailable_error(
    make_source, registry, observer, name, breaks, error, outcome
):
    """Each fault is RegistryUnavailableError (RegistryServerError for 5xx), counted by outcome."""
    source = make_source()
    breaks(registry, source)
    with pytest.raises(error) as info:
        source.fetch("shop.Order", "v2")
    assert isinstance(info.value, RegistryUnavailableError)
    assert (info.value.schema, info.value.track) == ("shop.Order", "v2")
    assert registry.url.split("//")[1] in str(info.value)
    assert observer.requests == {outcome: 1}


@pytest.mark.parametrize(("name", "breaks", "error", "outcome"), FAULTS, ids=FAULT_IDS)
def test_fault_on_a_cold_subject_applies_on_registry_error(
    make_engine, registry, name, breaks, error, outcome
):
    """With no cached schema, a fault means on_registry_error; the track never falls back."""
    eng = make_engine(STRICT_REJECT)
    breaks(registry, eng.source)
    d = eng.evaluate("shop.Order", VALID, key="k")
    assert (d.track, d.action, d.valid) == ("v2", Action.REJECTED, None)
    assert d.violations[0].keyword == "registry"
    assert registry.count(LATEST_V1) == 0


@pytest.mark.parametrize(("name", "breaks", "error", "outcome"), FAULTS, ids=FAULT_IDS)
def test_fault_on_a_warm_subject_keeps_serving_the_cache(
    make_engine, registry, clock, observer, name, breaks, error, outcome
):
    """Past the TTL during an outage the cached schema keeps validating, after one request."""
    eng = make_engine(STRICT_REJECT)
    assert eng.evaluate("shop.Order", INVALID, key="k").action is Action.REJECTED
    breaks(registry, eng.source)
    registry.reset_requests()
    clock.advance(TTL)
    for n in range(20):
        assert eng.evaluate("shop.Order", INVALID, key="k").action is Action.REJECTED
        assert eng.evaluate("shop.Order", VALID, key="k").action is Action.ACCEPTED
        if n == 0:  # the first one queued the refresh that meets the fault
            assert wait_for_refreshes(eng)
    # One refresh of the schema and one of the registry's listing, both past their TTL ("refused"
    # never reaches the server); every payload meanwhile was served from the cache.
    assert registry.count(LATEST_V2) <= 1
    assert registry.count() <= 2
    assert observer.cache["stale"] == 2  # the source answered both from its stale cache
    # The schema and the listing are refreshed on two background threads: at most one request
    # each (an unreachable registry, refused or hung, may already be backed off when the second
    # one asks).
    assert observer.requests[outcome] in ((1, 2) if name in ("refused", "hung") else (2,))


@pytest.mark.parametrize(("name", "breaks", "error", "outcome"), FAULTS, ids=FAULT_IDS)
def test_fault_recovers_once_the_registry_answers(
    make_engine, registry, clock, name, breaks, error, outcome
):
    """After the registry comes back, the next retry fetches the schema and validation resumes."""
    eng = make_engine(STRICT_REJECT)
    breaks(registry, eng.source)
    assert eng.evaluate("shop.Order", INVALID, key="k").violations[0].keyword == "registry"
    heal(registry, eng.source)
    assert eng.evaluate("shop.Order", INVALID, key="k").violations[0].keyword == "registry"
    clock.advance(RETRY)
    d = eng.evaluate("shop.Order", INVALID, key="k")
    assert (d.action, d.violations[0].keyword) == (Action.REJECTED, "minimum")


def test_outage_costs_one_timeout_per_subject_per_backoff_period(
    make_source, registry, clock, observer
):
    """While backing off, fetch fails at once without a request; the backoff doubles."""
    source = make_source(timeout=HANG_TIMEOUT)
    registry.inject(Fault.hang())
    errors = []
    for _ in range(5):
        with pytest.raises(RegistryUnavailableError) as info:
            source.fetch("shop.Order", "v2")
        errors.append(str(info.value))
    # Only the first fetch asked and met the timeout; the others failed without a request.
    assert registry.count(LATEST_V2) == 1
    assert observer.requests == {"timeout": 1}
    assert "no answer within" in errors[0]
    assert all("not asked again" in e for e in errors[1:])
    with pytest.raises(RegistryUnavailableError, match=r"not asked again for 1\.0 s"):
        source.fetch("shop.Order", "v2")
    clock.advance(1.0)
    with pytest.raises(RegistryUnavailableError):
        source.fetch("shop.Order", "v2")
    assert registry.count(LATEST_V2) == 2
    with pytest.raises(RegistryUnavailableError, match=r"not asked again for 2\.0 s"):
        source.fetch("shop.Order", "v2")


def test_unreachable_registry_is_not_asked_for_other_subjects(
    make_source, registry, clock, observer
):
    """After a timeout no subject asks the registry until the backoff has passed: warm ones
    are served stale, cold ones fail at once."""
    source = make_source()
    source.fetch("shop.Order", "v1")
    clock.advance(TTL)  # v1 is due for a refresh
    registry.inject(Fault.hang())
    time_out_soon(source)
    with pytest.raises(RegistryUnavailableError, match="no answer within"):
        source.fetch("shop.Order", "v2")
    assert source.fetch("shop.Order", "v1").document == ORDER_V1
    with pytest.raises(RegistryUnavailableError, match=r"is unreachable .*not asked again"):
        source.fetch("shop.Legacy", "v1")
    assert registry.count("/versions/") == 2  # the warm-up and the one timeout
    assert observer.requests == {"ok": 1, "timeout": 1}
    clock.advance(1.0)
    with pytest.raises(RegistryUnavailableError, match="no answer within"):
        source.fetch("shop.Legacy", "v1")


@pytest.mark.parametrize("fault", [Fault.server_error, Fault.truncated, Fault.garbage])
def test_bad_answers_back_off_per_subject_only(make_source, registry, fault):
    """A subject the registry answers badly (5xx, cut off, not JSON) does not stop other
    subjects being asked: only an unreachable registry does."""
    source = make_source()
    registry.inject(fault(path="shop.Order-v2"))
    with pytest.raises(RegistryUnavailableError):
        source.fetch("shop.Order", "v2")
    assert source.fetch("shop.Order", "v1").document == ORDER_V1
    with pytest.raises(RegistryUnavailableError, match="not asked again"):
        source.fetch("shop.Order", "v2")


def test_backoff_has_jitter_and_a_ceiling(make_source):
    """Backoff doubles per failure within [half, full] of its step and stops at the maximum."""
    low = make_source(rng=lambda: 0.0, backoff_initial=1.0, backoff_max=8.0)._cache
    high = make_source(rng=lambda: 1.0, backoff_initial=1.0, backoff_max=8.0)._cache
    assert [low.backoff(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert [high.backoff(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_engine_under_outage_waits_for_at_most_one_timeout(make_engine, registry, clock, observer):
    """Only the first payload of a cold subject waits for the timeout; the rest answer at once."""
    eng = make_engine()
    eng.evaluate("shop.Legacy", {"name": "x"})  # a running engine: hooks have warmed up
    registry.inject(Fault.hang())
    time_out_soon(eng.source)
    observer.requests.clear()
    decisions = [eng.evaluate("shop.Order", VALID) for _ in range(50)]
    assert {d.action for d in decisions} == {Action.SKIPPED}
    assert "no answer within" in decisions[0].reason
    # The other 49 neither asked the registry nor waited for a request: there was only one.
    assert registry.count(LATEST_V2) == 1
    assert observer.requests == {"timeout": 1}


def test_registry_comes_back_after_an_outage(make_engine, registry, clock, observer):
    """Down, then back: stale answers during the outage, fresh schemas afterwards."""
    eng = make_engine()
    assert eng.evaluate("shop.Order", INVALID).action is Action.LOGGED
    registry.stop()
    clock.advance(TTL)
    assert eng.evaluate("shop.Order", INVALID).action is Action.LOGGED
    assert eng.evaluate("shop.Legacy", {"name": "x"}).action is Action.SKIPPED
    assert wait_for_refreshes(eng)
    registry.start()
    registry.register("shop.Order-v2", ORDER_V2_STRICTER)
    clock.advance(TTL)
    eng.evaluate("shop.Order", VALID)  # meets the expiry: served stale, refreshed behind
    assert wait_for_refreshes(eng)
    assert eng.evaluate("shop.Order", VALID).violations[0].keyword == "required"
    assert eng.evaluate("shop.Legacy", {"name": "x"}).action is Action.ACCEPTED
    assert observer.cache["stale"] == 1


def test_stale_schema_is_logged_once_per_outage(make_source, registry, clock, caplog):
    """Serving a stale schema is logged once a minute at most, and the recovery once."""
    source = make_source()
    source.fetch("shop.Order", "v2")
    registry.inject(Fault.server_error())
    caplog.set_level(logging.INFO, logger="policy_engine.registry")
    clock.advance(TTL)
    for step in (0, 2, 4):  # past each backoff (1 s, 2 s, 4 s): every fetch asks and fails
        clock.advance(step)
        assert source.fetch("shop.Order", "v2").document == ORDER_V2
    assert registry.count(LATEST_V2) == 4
    registry.heal()
    clock.advance(8)
    source.fetch("shop.Order", "v2")
    messages = [r.getMessage() for r in caplog.records]
    assert sum("serving the cached schema" in m for m in messages) == 1
    assert sum("answers again" in m for m in messages) == 1


@pytest.mark.parametrize(
    "fetch",
    [
        pytest.param(lambda source: source.fetch("shop.Order", "v2"), id="sync"),
        pytest.param(lambda source: asyncio.run(source.afetch("shop.Order", "v2")), id="async"),
    ],
)
def test_deadline_bounds_the_whole_request(make_source, registry, observer, fetch):
    """An answer that trickles in, each byte long before a read could time out, still ends in
    a timeout: REGISTRY_TIMEOUT bounds the whole request, not each read."""
    timeout = 1.0
    registry.inject(Fault.trickle(timeout / 20))  # the whole answer would take over 10 s
    source = make_source(timeout=timeout)
    started = time.monotonic()
    with pytest.raises(RegistryUnavailableError, match="no answer within"):
        fetch(source)
    # Bounded at all (a per-read timeout would have waited for the whole trickle, then answered).
    assert time.monotonic() - started < timeout + 5
    assert observer.requests == {"timeout": 1}


def test_oversized_answer_is_refused(make_source, registry, monkeypatch):
    """An answer larger than the limit is an error, not parsed."""
    monkeypatch.setattr(policy_engine.sources.http, "MAX_RESPONSE_BYTES", 100)
    registry.register("shop.Big-v2", {"description": "x" * 500})
    with pytest.raises(RegistryUnavailableError, match="larger than 100 bytes"):
        make_source().fetch("shop.Big", "v2")


# ---------------------------------------------------------------------------- single flight


def test_50_threads_on_a_cold_subject_make_one_request(make_engine, registry, monkeypatch):
    """Concurrent evaluations of a cold subject share one registry request and one compile."""
    compiled: list[str] = []
    real = policy_engine.schemas.compile_schema
    monkeypatch.setattr(
        policy_engine.schemas,
        "compile_schema",
        lambda doc, b: compiled.append(doc.version) or real(doc, b),
    )
    eng = make_engine()
    release = threading.Event()
    registry.inject(Fault.hang(release))
    barrier = threading.Barrier(50)
    calling = threading.Semaphore(0)
    actions: list[Action] = []

    def worker() -> None:
        barrier.wait()
        calling.release()
        actions.append(eng.evaluate("shop.Order", INVALID).action)

    threads = [threading.Thread(target=worker) for _ in range(50)]
    for t in threads:
        t.start()
    # The request is held until every thread is on its way in, however slowly they start.
    for _ in threads:
        assert calling.acquire(timeout=30)
    assert registry.wait_for_requests(1, "/versions/")
    release.set()
    for t in threads:
        t.join()
    assert actions == [Action.LOGGED] * 50
    assert registry.count("/versions/") == 1
    assert compiled == ["1"]


def test_50_tasks_on_a_cold_subject_make_one_request(make_engine, registry, observer):
    """Concurrent aevaluate calls of a cold subject share one registry request."""
    eng = make_engine()
    release = threading.Event()
    registry.inject(Fault.hang(release))

    async def run() -> list[Action]:
        evaluations = asyncio.gather(*(eng.aevaluate("shop.Order", INVALID) for _ in range(50)))
        # Every task started before the loop could learn that the request arrived: all are in.
        assert await asyncio.to_thread(registry.wait_for_requests, 1, "/versions/")
        release.set()
        return [d.action for d in await evaluations]

    assert asyncio.run(run()) == [Action.LOGGED] * 50
    assert registry.count("/versions/") == 1
    assert sum(observer.requests.values()) == registry.count()  # each request reported once


def test_aevaluate_fetches_on_the_event_loop_without_blocking_it(make_engine, registry):
    """A slow registry request in aevaluate lets other tasks run and uses no worker thread."""
    eng = make_engine()
    release = threading.Event()
    registry.inject(Fault.hang(release))
    threads: list[str] = []
    real_fetch = eng.source.fetch
    eng.source.fetch = lambda *a: threads.append("sync") or real_fetch(*a)  # type: ignore[method-assign]
    ticks = 0

    async def ticker() -> None:
        # Ticks while the request is held at the registry, then lets it be answered: a blocked
        # loop never ticks, and the request then ends in a timeout instead of a decision.
        nonlocal ticks
        while ticks < 10:
            if registry.count(LATEST_V2):
                ticks += 1
            await asyncio.sleep(0.001)
        release.set()

    async def run() -> Action:
        task = asyncio.create_task(ticker())
        decision = await eng.aevaluate("shop.Order", INVALID)
        await task
        return decision.action

    assert asyncio.run(run()) is Action.LOGGED
    assert registry.count(LATEST_V2) == 1
    assert threads == []


def test_sync_fetch_inside_the_loop_does_not_deadlock_on_an_async_request(make_source, registry):
    """Sync code on the event loop thread does its own request rather than wait for the loop."""
    source = make_source()
    release = threading.Event()
    registry.inject(Fault.hang(release, times=1))  # only the async request is held

    async def run() -> tuple[Any, Any]:
        task = asyncio.create_task(source.afetch("shop.Order", "v2"))
        assert await asyncio.to_thread(registry.wait_for_requests, 1, LATEST_V2)  # in flight
        sync_doc = source.fetch("shop.Order", "v2")  # blocks the loop the async request needs
        release.set()
        return sync_doc.document, (await task).document

    assert asyncio.run(run()) == (ORDER_V2, ORDER_V2)
    assert registry.count(LATEST_V2) == 2


def test_cancelled_request_hands_over_to_a_waiter(make_source, registry):
    """When the task making the request is cancelled, a waiting task makes it instead."""
    source = make_source()
    registry.inject(Fault.hang(times=1))  # the first request is never answered

    async def run() -> Any:
        first = asyncio.create_task(source.afetch("shop.Order", "v2"))
        assert await asyncio.to_thread(registry.wait_for_requests, 1, LATEST_V2)
        second = asyncio.create_task(source.afetch("shop.Order", "v2"))
        await asyncio.sleep(0)  # the second task starts: it waits for the first one's request
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        return (await second).document

    assert asyncio.run(run()) == ORDER_V2
    assert registry.count(LATEST_V2) == 2


def test_threads_wait_for_an_asyncio_request(make_source, registry, monkeypatch):
    """A thread asking while a task's request is in flight waits for it instead of asking too."""
    source = make_source()
    release = threading.Event()
    registry.inject(Fault.hang(release))  # a second request would be held too, and counted
    waiting = threading.Event()
    real_wait = policy_engine.sources.http._Flight.wait_sync

    def wait_sync(flight: Any) -> Any:
        waiting.set()
        return real_wait(flight)

    monkeypatch.setattr(policy_engine.sources.http._Flight, "wait_sync", wait_sync)
    result: list[Any] = []

    async def run() -> Any:
        task = asyncio.create_task(source.afetch("shop.Order", "v2"))
        assert await asyncio.to_thread(registry.wait_for_requests, 1, LATEST_V2)
        thread = threading.Thread(target=lambda: result.append(source.fetch("shop.Order", "v2")))
        thread.start()
        assert await asyncio.to_thread(waiting.wait, 30)  # the thread waits for the request
        release.set()
        doc = await task
        await asyncio.to_thread(thread.join)
        return doc

    assert asyncio.run(run()).document == result[0].document == ORDER_V2
    assert registry.count(LATEST_V2) == 1


# ---------------------------------------------------------------------------- auth and secrets


TOKEN = "tok-5ecret-ABC123"


def test_bearer_token_from_settings_is_sent(observer):
    """REGISTRY_TOKEN goes out as a bearer token, and the registry accepts the request."""
    with FakeSchemaRegistry(token=TOKEN) as reg:
        reg.register("shop.Order-v2", ORDER_V2)
        settings = Settings.from_env({"REGISTRY_TOKEN": TOKEN, "REGISTRY_TIMEOUT": str(TIMEOUT)})
        with PolicyEngine(policies=[], registry=reg.url, settings=settings) as eng:
            assert eng.evaluate("shop.Order", INVALID).action is Action.LOGGED
        assert reg.requests[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_wrong_token_is_an_outage_not_a_missing_schema(make_source):
    """HTTP 401 is RegistryUnavailableError naming REGISTRY_TOKEN, never "not found"."""
    with FakeSchemaRegistry(token=TOKEN) as reg:
        reg.register("shop.Order-v2", ORDER_V2)
        with pytest.raises(RegistryUnavailableError, match="REGISTRY_TOKEN") as info:
            make_source(reg.url, token="wrong-token").fetch("shop.Order", "v2")
    assert "wrong-token" not in str(info.value)
    assert not isinstance(info.value, SchemaNotFoundError)


def test_basic_auth_from_url_user_info(make_source):
    """User info in the URL becomes basic auth; the URL is shown without it."""
    with FakeSchemaRegistry(username="alice", password="p@ss:word") as reg:
        reg.register("shop.Order-v2", ORDER_V2)
        url = reg.url.replace("http://", "http://alice:p%40ss%3Aword@")
        source = make_source(url)
        assert source.fetch("shop.Order", "v2").document == ORDER_V2
        assert reg.requests[0].headers["authorization"].startswith("Basic ")
        assert source.description == reg.url
        assert "p%40ss" not in repr(source)
        assert "alice" not in repr(source)


def test_token_never_appears_in_logs_errors_or_repr(make_engine, registry, clock, caplog):
    """The token is in no log record (at DEBUG, httpx's included), error message or repr."""
    caplog.set_level(logging.DEBUG)
    eng = make_engine(token=TOKEN)
    errors: list[BaseException] = []
    eng.evaluate("shop.Order", VALID)
    # The hung registry comes last: from then on the source gives up soon.
    for fault in (Fault.server_error(), Fault(status=401, body=b"no"), Fault.hang()):
        registry.heal()
        registry.inject(fault)
        if fault.hold is not None:
            time_out_soon(eng.source)
        clock.advance(TTL * 10)
        eng.evaluate("shop.Order", VALID)
        try:
            eng.source.fetch("shop.Legacy", "v1")
        except RegistryUnavailableError as exc:
            errors.append(exc)
    assert len(errors) == 3
    texts = [caplog.text, repr(eng), repr(eng.source), eng.source.description]
    for error in errors:
        link: BaseException | None = error
        while link is not None:
            texts += [str(link), repr(link)]
            link = link.__cause__ or link.__context__
    assert not [t for t in texts if TOKEN in t]
    assert registry.requests[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_token_and_user_info_together_are_refused():
    """Two credentials at once is a configuration error (which one would win is a guess)."""
    with pytest.raises(ConfigError, match="use one") as info:
        HttpSchemaSource("https://bob:hunter2@registry:8081", token=TOKEN)
    assert "hunter2" not in str(info.value)
    assert TOKEN not in str(info.value)


def test_redact_url_strips_user_info():
    """URLs in messages never carry user info."""
    assert redact_url("https://bob:hunter2@registry:8081/x") == "https://registry:8081/x"
    assert redact_url("schemas") == "schemas"


def test_tls_verification_is_on_by_default(make_source):
    """The client verifies certificates and host names unless told otherwise."""
    client = make_source("https://registry.invalid:8081")._sync_client()
    context = client._transport._pool._ssl_context  # type: ignore[attr-defined]
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True


# ---------------------------------------------------------------------------- wiring


def test_open_source_builds_an_http_source_from_settings(observer):
    """An http(s) URL opens HttpSchemaSource with the token, timeout, TTL, template, hooks."""
    settings = Settings.from_env(
        {
            "REGISTRY_TOKEN": TOKEN,
            "REGISTRY_TIMEOUT": "2.5",
            "REGISTRY_CACHE_TTL": "42",
            "REGISTRY_SUBJECT_TEMPLATE": "{schema}.{track}",
        }
    )
    source = open_schema_source("https://registry:8081", settings, [observer])
    assert isinstance(source, HttpSchemaSource)
    assert (source.timeout, source.cache_ttl, source.subject_for("a", "v2")) == (2.5, 42.0, "a.v2")
    assert (source.auth_kind, source.observers) == ("bearer", (observer,))
    source.close()


def test_engine_passes_its_registry_hooks_to_the_source(registry):
    """PolicyEngine(registry=URL, hooks=[observer]) reports requests and cache lookups."""
    observer = RecordingRegistryObserver()
    settings = Settings(registry_timeout=TIMEOUT)
    with PolicyEngine(policies=[], registry=registry.url, settings=settings, hooks=[observer]) as e:
        e.evaluate("shop.Order", VALID)  # a running engine: other hooks have warmed up
        observer.requests.clear()
        observer.cache.clear()
        e.evaluate("shop.Legacy", {"name": "x"})
        e.evaluate("shop.Legacy", {"name": "x"})
    assert observer.requests == {"not_found": 1, "ok": 1}
    assert observer.cache == {"miss": 2}


def test_a_failing_hook_does_not_break_fetching(make_source, caplog):
    """A RegistryObserver that raises is logged and ignored."""

    class Broken:
        def registry_request(self, outcome: str) -> None:
            raise RuntimeError("boom")

        def registry_cache(self, result: str) -> None:
            raise RuntimeError("boom")

    assert make_source(observers=[Broken()]).fetch("shop.Order", "v2").document == ORDER_V2
    assert "failed in registry_request" in caplog.text


def test_closed_source_answers_unavailable(make_source):
    """After close() the source fails like an unreachable registry instead of reconnecting."""
    source = make_source()
    source.close()
    with pytest.raises(RegistryUnavailableError, match="closed"):
        source.fetch("shop.Order", "v2")


def test_asyncio_run_closes_the_async_connections(make_source):
    """The AsyncClient of a loop is closed on that loop when asyncio.run shuts it down."""
    source = make_source()

    async def run() -> asyncio.AbstractEventLoop:
        await source.afetch("shop.Order", "v2")
        return asyncio.get_running_loop()

    loop = asyncio.run(run())
    assert source._aclients[loop].client.is_closed


def test_other_url_schemes_are_config_errors():
    """REGISTRY_URL with a scheme other than file, http or https is refused, without user info."""
    with pytest.raises(ConfigError, match="http") as info:
        open_schema_source("ftp://bob:hunter2@registry/schemas")
    assert "hunter2" not in str(info.value)


def test_default_subject_template_is_schema_dash_track():
    """Unset or empty REGISTRY_SUBJECT_TEMPLATE means {schema}-{track}."""
    assert Settings.from_env({}).registry_subject_template == "{schema}-{track}"
    assert Settings.from_env({"REGISTRY_SUBJECT_TEMPLATE": ""}).registry_subject_template == (
        "{schema}-{track}"
    )


def test_check_lints_against_an_http_registry(registry, tmp_path):
    """policy-engine check warns about schemas the HTTP registry does not know."""
    (tmp_path / "p.yaml").write_text("version: 1\nschemas:\n  shop.Ordr:\n    mode: warn\n")
    code, out = _check(["--registry", registry.url, str(tmp_path)])
    assert code == 0
    assert "schema 'shop.Ordr' is not in the registry" in out


def test_check_never_prints_the_url_password(registry, tmp_path):
    """A registry that cannot be listed is reported without the URL's user info."""
    (tmp_path / "p.yaml").write_text("version: 1\n")
    registry.stop()
    url = registry.url.replace("http://", "http://bob:hunter2@")
    code, out = _check(["--registry", url, str(tmp_path)])
    assert code == 0
    assert "registry not checked" in out
    assert "hunter2" not in out


def _check(args: list[str]) -> tuple[int, str]:
    import io

    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["check", *args],
        stdin=io.BytesIO(),
        stdout=out,
        stderr=err,
        environ={"REGISTRY_TIMEOUT": str(TIMEOUT)},
    )
    return code, out.getvalue() + err.getvalue()
