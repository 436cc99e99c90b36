"""The HTTP schema registry: a Confluent-compatible REST API as a ``SchemaSource``.

Serves what Confluent Schema Registry, Apicurio's ccompat API and Karapace serve:

- ``GET /subjects/{subject}/versions/latest``: the schema of a (schema, track), one subject per
  track (``{schema}-{track}`` by default, ``REGISTRY_SUBJECT_TEMPLATE``);
- ``GET /subjects/{subject}/versions/{n}`` and ``GET /schemas/ids/{id}``: immutable, cached
  forever (bounded LRU); registry ``references`` are resolved through them, never elsewhere;
- ``GET /subjects``: the subject list, read back through the template (``known_schemas``).

The answer's ``schema`` field is a JSON string and is parsed; ``schemaType`` must be ``JSON``
(absent means AVRO). Errors become the engine's typed errors::

    HTTP 404 + error_code 40401/40402/40403   SubjectNotFoundError / VersionNotFoundError /
                                              SchemaIdNotFoundError (all SchemaNotFoundError)
    HTTP 5xx (error_code 5xxxx)               RegistryServerError (a RegistryUnavailableError)
    timeout, connection error, garbage,       RegistryUnavailableError
    401/403, a 404 without an error code
    AVRO, a schema string that is not JSON    InvalidSchemaError

Caching and outages (docs/registry.md): ``latest`` is kept for ``cache_ttl`` seconds; only one
request per subject is in flight (concurrent callers, threads or asyncio tasks, wait for it); when
the registry fails (timeout, connection error, 5xx, garbage) the last good schema is served and the
subject is not asked again before a backoff with jitter has passed. A request that cannot reach the
registry at all (timeout, connection error) also opens a registry-wide backoff: no subject asks
until it has passed, so a hung registry costs one ``timeout`` per backoff period in all, not one per
subject. Meanwhile a subject with no cached schema fails at once with ``RegistryUnavailableError``.

How it is built (sans-I/O, so the sync and async forms share every decision):

- *request scripts* are generators that yield a ``_Call`` (one GET) and receive its parsed JSON
  answer (or have the typed error thrown in): paths, parsing and reference resolution, no
  sockets;
- ``_Cache`` is the cache state machine (fresh, in flight, backing off, stale, not found) under
  one lock; it decides, the drivers act;
- ``classify`` turns a ``_Reply`` (a status and body, or a transport failure) into JSON or a
  typed error;
- two drivers run scripts: ``fetch`` and friends through ``httpx.Client``, ``afetch`` and friends
  through ``httpx.AsyncClient``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import ssl
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType, TracebackType
from typing import Any, Literal, TypeAlias, TypeVar, cast
from urllib.parse import quote, urljoin

import httpx

from policy_engine.errors import (
    ConfigError,
    InvalidSchemaError,
    RegistryError,
    RegistryServerError,
    RegistryUnavailableError,
    SchemaIdNotFoundError,
    SchemaNotFoundError,
    SubjectNotFoundError,
    VersionNotFoundError,
)
from policy_engine.hooks import RegistryObserver
from policy_engine.settings import DEFAULT_SUBJECT_TEMPLATE, Secret, Settings
from policy_engine.sources import SchemaDocument
from policy_engine.sources.embedded import MAX_SCHEMA_FILE_BYTES, check_schema_name
from policy_engine.sources.subjects import SubjectTemplate

log = logging.getLogger("policy_engine.registry")

T = TypeVar("T")

#: An answer larger than this is refused (and counted as an error) rather than parsed.
MAX_RESPONSE_BYTES = MAX_SCHEMA_FILE_BYTES
#: Cache entries kept (``latest`` per subject, versions, ids, "not found" answers), LRU.
MAX_CACHE_ENTRIES = 10_000
#: Raw schemas kept for reference resolution (immutable: subject versions and ids), LRU.
MAX_RAW_SCHEMAS = 1_000
#: Most schemas one schema may pull in through ``references``, transitively.
MAX_REFERENCES = 256
#: First backoff after a failed request, doubled per failure up to ``BACKOFF_MAX`` (seconds).
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 60.0
#: "Serving a stale schema" is logged at most once per this many seconds per subject.
STALE_LOG_INTERVAL = 60.0
#: Registry error messages quoted in our errors are cut to this many characters.
MAX_MESSAGE_CHARS = 200

ACCEPT = (
    "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json; q=0.9, "
    "application/json; q=0.5"
)

RequestOutcome = Literal["ok", "not_found", "error", "timeout"]
CacheResult = Literal["hit", "miss", "stale"]


# ---------------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class SchemaReference:
    """One entry of a registry schema's ``references``: ``$ref: "<name>"`` means that schema."""

    name: str
    subject: str
    version: int


def _no_references() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RegistrySchema:
    """One JSON Schema as the registry stores it, with its references resolved when asked to.

    ``schema_id`` is the registry's global id (it changes whenever the content or its references
    do); ``subject`` and ``version`` are known when it was read through a subject.
    ``resolved`` maps every name a ``$ref`` may use to the referenced document.
    """

    schema_id: int | None
    subject: str | None
    version: int | None
    document: Any
    references: tuple[SchemaReference, ...] = ()
    resolved: Mapping[str, Any] = field(default_factory=_no_references)
    #: A content hash, the version when the registry sent no id.
    fingerprint: str = ""

    @property
    def version_key(self) -> str:
        """What ``SchemaDocument.version`` is: the schema id, else the content hash."""
        if self.schema_id is not None:
            return str(self.schema_id)
        return f"sha256:{self.fingerprint}"

    def as_document(self, schema: str, track: str) -> SchemaDocument:
        """This schema as the ``SchemaDocument`` of ``schema``/``track``."""
        return SchemaDocument(
            schema=schema,
            track=track,
            version=self.version_key,
            document=self.document,
            references=self.resolved,
        )


@dataclass(frozen=True, slots=True)
class _Call:
    """One GET the protocol logic wants made; ``path`` is relative to the registry URL."""

    path: str
    what: str  # for messages: "subject 'x-v2' latest version"
    expect: Literal["schema", "subjects"]
    schema: str | None = None
    track: str | None = None
    schema_id: int | None = None


@dataclass(frozen=True, slots=True)
class _Reply:
    """What came back: a status and body, or a transport failure (``timeout`` / ``error``).

    ``reached`` is false when the registry could not be reached at all (no connection, no
    answer in time): that, unlike one bad answer, puts the whole registry in backoff.
    """

    status: int = 0
    body: bytes = b""
    failure: Literal["timeout", "error"] | None = None
    detail: str = ""
    reached: bool = True


RequestScript: TypeAlias = Generator[_Call, Any, T]

_NOT_JSON = object()


# ---------------------------------------------------------------------------- pure protocol logic


def _loads(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return _NOT_JSON


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


def _error_body(body: Any) -> tuple[int | None, str]:
    """The ``error_code`` and ``message`` of a Confluent error body, where there is one."""
    if not isinstance(body, dict):
        return None, ""
    code = body.get("error_code")
    message = body.get("message")
    return (
        code if isinstance(code, int) and not isinstance(code, bool) else None,
        _short(message) if isinstance(message, str) else "",
    )


_NOT_FOUND: Mapping[int, type[SchemaNotFoundError]] = {
    40401: SubjectNotFoundError,
    40402: VersionNotFoundError,
    40403: SchemaIdNotFoundError,
}


def classify(call: _Call, reply: _Reply, where: str) -> tuple[RequestOutcome, Any]:
    """The outcome of one exchange and its JSON answer, or the typed error it amounts to.

    Pure: no I/O, no state. ``where`` names the registry (its URL without user info).
    """
    ctx: dict[str, Any] = {"schema": call.schema, "track": call.track}
    prefix = f"schema registry {where}: {call.what}"
    if reply.failure == "timeout":
        return "timeout", RegistryUnavailableError(f"{prefix}: {reply.detail}", **ctx)
    if reply.failure is not None:
        return "error", RegistryUnavailableError(f"{prefix}: {reply.detail}", **ctx)
    status = reply.status
    body = _loads(reply.body)
    if 200 <= status < 300:
        if body is _NOT_JSON:
            return "error", RegistryUnavailableError(
                f"{prefix}: the answer is not JSON (HTTP {status}, {len(reply.body)} bytes)", **ctx
            )
        if call.expect == "schema" and not (
            isinstance(body, dict) and isinstance(body.get("schema"), str)
        ):
            return "error", RegistryUnavailableError(
                f"{prefix}: unexpected answer: an object with a 'schema' string was expected",
                **ctx,
            )
        if call.expect == "subjects" and not (
            isinstance(body, list) and all(isinstance(s, str) for s in body)
        ):
            return "error", RegistryUnavailableError(
                f"{prefix}: unexpected answer: a list of subject names was expected", **ctx
            )
        return "ok", body
    code, message = _error_body(body)
    detail = f"HTTP {status}" + (f", error {code}" if code is not None else "")
    detail += f": {message}" if message else ""
    if status == 404 and code is not None and 40400 <= code < 40500:
        cls = _NOT_FOUND.get(code, SchemaNotFoundError)
        return "not_found", cls(f"{prefix}: not found ({detail})", error_code=code, **ctx)
    if status >= 500:
        return "error", RegistryServerError(
            f"{prefix}: server error ({detail})", error_code=code, **ctx
        )
    if status in (401, 403):
        return "error", RegistryUnavailableError(
            f"{prefix}: access denied ({detail}); check REGISTRY_TOKEN or the user info in "
            "REGISTRY_URL",
            error_code=code,
            **ctx,
        )
    if status == 404:
        return "error", RegistryUnavailableError(
            f"{prefix}: HTTP 404 without a not-found error code (40401, 40402, 40403); is "
            "REGISTRY_URL the registry's base URL?",
            **ctx,
        )
    if 300 <= status < 400:
        return "error", RegistryUnavailableError(
            f"{prefix}: redirected (HTTP {status}); redirects are not followed, point "
            "REGISTRY_URL at the registry itself",
            **ctx,
        )
    return "error", RegistryUnavailableError(
        f"{prefix}: unexpected answer ({detail})", error_code=code, **ctx
    )


def _positive_int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def parse_schema_answer(call: _Call, body: dict[str, Any], where: str) -> RegistrySchema:
    """A ``RegistrySchema`` from a version or id answer (``classify`` checked its shape).

    Raises ``InvalidSchemaError`` for an answer the engine cannot use: a ``schemaType`` other
    than ``JSON`` (absent means AVRO), a schema string that is not JSON or not a JSON Schema,
    malformed references.
    """
    ctx: dict[str, Any] = {"schema": call.schema, "track": call.track}
    prefix = f"schema registry {where}: {call.what}"
    raw_type = body.get("schemaType")
    type_name = raw_type if isinstance(raw_type, str) else "AVRO"
    if type_name.upper() != "JSON":
        absent = " (no schemaType means AVRO)" if raw_type is None else ""
        raise InvalidSchemaError(
            f"{prefix}: schemaType is {_short(str(type_name))}{absent}; policy-engine validates "
            "JSON Schemas only: register it with schemaType JSON",
            **ctx,
        )
    text: str = body["schema"]
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidSchemaError(
            f"{prefix}: the 'schema' string is not JSON: {_short(str(exc))}", **ctx
        ) from exc
    if not isinstance(document, dict | bool):
        raise InvalidSchemaError(
            f"{prefix}: the 'schema' string is not a JSON Schema (an object or a boolean)", **ctx
        )
    raw_refs = body.get("references") or []
    if not isinstance(raw_refs, list):
        raise InvalidSchemaError(f"{prefix}: 'references' is not a list", **ctx)
    references = []
    for item in raw_refs:
        name = item.get("name") if isinstance(item, dict) else None
        subject = item.get("subject") if isinstance(item, dict) else None
        version = _positive_int(item.get("version")) if isinstance(item, dict) else None
        if not (isinstance(name, str) and name and isinstance(subject, str) and subject):
            raise InvalidSchemaError(
                f"{prefix}: a reference needs a name, a subject and a version: "
                f"{_short(repr(item))}",
                **ctx,
            )
        if version is None:
            raise InvalidSchemaError(
                f"{prefix}: reference {name!r} has no version number (a positive integer)", **ctx
            )
        references.append(SchemaReference(name, subject, version))
    digest = hashlib.sha256(text.encode())
    for ref in references:
        digest.update(f"\0{ref.name}\0{ref.subject}\0{ref.version}".encode())
    return RegistrySchema(
        schema_id=_positive_int(body.get("id")) or call.schema_id,
        subject=body["subject"] if isinstance(body.get("subject"), str) else None,
        version=_positive_int(body.get("version")),
        document=document,
        references=tuple(references),
        fingerprint=digest.hexdigest()[:16],
    )


def _absolute_id(document: Any) -> str | None:
    """A schema's ``$id`` when it is an absolute URI (a base for relative ``$ref``s)."""
    base = document.get("$id") if isinstance(document, dict) else None
    return base if isinstance(base, str) and "://" in base else None


def _reference_keys(name: str, bases: tuple[str, ...]) -> tuple[str, ...]:
    """The URIs under which a reference is registered for ``$ref`` resolution.

    The name itself (what ``$ref`` says), and the name resolved against each absolute base URI
    the referencing schema has (its ``$id``, or the URIs it is registered under itself), as
    Confluent's own clients do: ``{"$id": "https://x/order.json", "$ref": "customer.json"}``
    looks for ``https://x/customer.json``.
    """
    keys = [name]
    for base in bases:
        joined = urljoin(base, name)
        if joined not in keys:
            keys.append(joined)
    return tuple(keys)


def _with_context(error: RegistryError, schema: str | None, track: str | None) -> RegistryError:
    """A fresh copy of ``error`` for one caller: cached errors are never raised twice.

    (An exception object carries its traceback; raising one instance from several threads
    would mix them.)
    """
    copy = type(error)(
        str(error),
        schema=schema if schema is not None else error.schema,
        track=track if track is not None else error.track,
        error_code=error.error_code,
    )
    copy.__cause__ = error.__cause__
    return copy


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {_short(text)}" if text else type(exc).__name__


# ---------------------------------------------------------------------------- cache state machine


@dataclass(frozen=True, slots=True)
class _LookupResult:
    """How one lookup ended: a value or an error, and what the cache did for it."""

    value: Any = None
    error: RegistryError | None = None
    result: CacheResult = "miss"
    retry: bool = False  # the request was abandoned (its caller was cancelled): try again


class _Flight:
    """One request in progress for a cache key; everyone else who wants that key waits for it.

    Sync callers wait on a ``threading.Event``; asyncio callers on a future of their own loop,
    woken thread-safely, so a thread and a task can share one request either way round.
    """

    __slots__ = (
        "_lock",
        "_waiters",
        "deadline",
        "done",
        "is_async",
        "outcome",
        "started",
        "thread",
    )

    def __init__(self, is_async: bool, started: float, deadline: float) -> None:
        self.is_async = is_async
        self.thread = threading.get_ident()
        self.started = started  # cache clock: a fresh answer's TTL counts from here
        self.deadline = deadline  # time.monotonic(): when the request gives up
        self.done = threading.Event()
        self.outcome = _LookupResult(retry=True)
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def blocks_this_thread(self) -> bool:
        """Whether a sync wait here would deadlock: the request runs on this thread's loop."""
        return self.is_async and self.thread == threading.get_ident()

    def finish(self, outcome: _LookupResult) -> None:
        """Record the outcome and wake every waiter."""
        with self._lock:
            self.outcome = outcome
            self.done.set()
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            # A closed loop raises RuntimeError: nobody is waiting there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_wake, future)

    async def wait(self) -> _LookupResult:
        """Wait (asyncio) until the request finishes, at most until its deadline plus a second."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self.done.is_set():
                return self.outcome
            self._waiters.append((loop, future))
        try:
            async with asyncio.timeout(max(self.deadline - time.monotonic(), 0.0) + 1.0):
                await future
        except TimeoutError:
            return _LookupResult(
                error=RegistryUnavailableError("waited too long for a registry request")
            )
        return self.outcome

    def wait_sync(self) -> _LookupResult:
        """Wait (blocking) until the request finishes, at most until its deadline plus a second."""
        if not self.done.wait(max(self.deadline - time.monotonic(), 0.0) + 1.0):
            return _LookupResult(
                error=RegistryUnavailableError("waited too long for a registry request")
            )
        return self.outcome


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Entry:
    """What the cache knows about one key (a subject's latest version, a version, an id)."""

    __slots__ = (
        "error",
        "expires",
        "failures",
        "flight",
        "last_failure",
        "logged",
        "retry_at",
        "value",
    )

    def __init__(self) -> None:
        self.value: Any = None  # the last good answer, kept through outages
        self.error: RegistryError | None = None  # a definite answer: not found, unusable
        self.expires = float("-inf")  # value or error is fresh until then
        self.failures = 0  # consecutive failed requests
        self.retry_at = float("-inf")  # no request before then (backoff)
        self.last_failure: RegistryError | None = None
        self.flight: _Flight | None = None
        self.logged = float("-inf")


@dataclass(slots=True)
class _Step:
    """What a lookup must do next, as ``_Cache.begin`` decided."""

    kind: Literal["hit", "stale", "fail", "wait", "fetch"]
    key: tuple[Any, ...]
    entry: _Entry
    flight: _Flight | None = None


class _Cache:
    """The cache state machine: fresh → hit; in flight → wait; backing off → stale or fail;
    else → fetch (this caller becomes the one request in flight).

    Two backoffs: per key after any failed request (5xx, garbage, timeout, ...), and for the
    whole registry after a request that could not reach it (timeout, connection error). While
    the registry is unreachable no key asks it, so a hung registry costs one timeout per
    backoff period in all, not one per subject.

    Pure state under one lock, no I/O: the sync and async drivers both run through it.
    """

    def __init__(
        self,
        *,
        ttl: float,
        timeout: float,
        backoff_initial: float,
        backoff_max: float,
        clock: Callable[[], float],
        rng: Callable[[], float],
        where: str,
        max_entries: int = MAX_CACHE_ENTRIES,
    ) -> None:
        self.ttl = ttl
        self.timeout = timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.clock = clock
        self._rng = rng
        self._where = where
        self._max = max_entries
        self._entries: OrderedDict[tuple[Any, ...], _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._down_until = float("-inf")  # the registry is unreachable until then
        self._down_failures = 0
        self._down_error: RegistryError | None = None

    def reached(self, failure: RegistryError | None) -> None:
        """Whether one request reached the registry (any HTTP answer) or not (``failure``).

        Failures while the registry is already known unreachable (requests that started
        before) do not lengthen the backoff: only a failed retry does.
        """
        now = self.clock()
        with self._lock:
            if failure is None:
                self._down_until, self._down_failures, self._down_error = float("-inf"), 0, None
            elif now >= self._down_until:
                self._down_failures += 1
                self._down_until = now + self.backoff(self._down_failures)
                self._down_error = failure

    def begin(self, key: tuple[Any, ...], *, is_async: bool) -> _Step:
        """Decide how to answer a lookup of ``key`` now."""
        now = self.clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
                if len(self._entries) > self._max:
                    self._entries.popitem(last=False)
            else:
                self._entries.move_to_end(key)
            if now < entry.expires:
                return _Step("hit", key, entry)
            if entry.flight is not None:
                return _Step("wait", key, entry, entry.flight)
            if now < entry.retry_at or now < self._down_until:
                return _Step("stale" if entry.value is not None else "fail", key, entry)
            entry.flight = _Flight(is_async, now, time.monotonic() + self.timeout)
            return _Step("fetch", key, entry, entry.flight)

    def unshared(self, step: _Step) -> _Step:
        """A fetch outside single-flight, for a sync caller that cannot wait for ``step``."""
        now = self.clock()
        return _Step(
            "fetch", step.key, step.entry, _Flight(False, now, time.monotonic() + self.timeout)
        )

    def served(self, step: _Step) -> _LookupResult:
        """The outcome of a lookup answered without a request (hit, stale, or fail)."""
        entry = step.entry
        now = self.clock()
        with self._lock:
            value, error, failure = entry.value, entry.error, entry.last_failure
            own = now < entry.retry_at
            retry_in = max(entry.retry_at, self._down_until) - now
            down = self._down_error
        if step.kind == "hit":
            return _LookupResult(value=value, error=error, result="hit")
        if step.kind == "stale":
            return _LookupResult(value=value, result="stale")
        wait = f"not asked again for {max(retry_in, 0.0):.1f} s"
        if own and failure is not None:
            note = RegistryUnavailableError(
                f"{failure}; {wait}",
                schema=failure.schema,
                track=failure.track,
                error_code=failure.error_code,
            )
        else:
            note = RegistryUnavailableError(
                f"schema registry {self._where} is unreachable (last error: {down}); {wait}"
            )
        return _LookupResult(error=note)

    def finish(
        self, step: _Step, *, value: Any = None, error: RegistryError | None = None, pinned: bool
    ) -> _LookupResult:
        """Record what the request of ``step`` brought and wake whoever waits for it.

        A value is fresh for the TTL from when the request started (forever when ``pinned``:
        a subject version or an id never changes). A definite answer (not found, unusable
        schema) is kept for the TTL too. A failure starts or extends the backoff and serves the
        last good value, stale, if there is one.
        """
        flight = step.flight
        assert flight is not None
        entry = step.entry
        now = self.clock()
        recovered = 0
        stale_log = False
        with self._lock:
            if error is None:
                recovered = entry.failures
                entry.value, entry.error = value, None
                entry.expires = float("inf") if pinned else flight.started + self.ttl
                entry.failures, entry.retry_at, entry.last_failure = 0, float("-inf"), None
                outcome = _LookupResult(value=value)
            elif isinstance(error, SchemaNotFoundError | InvalidSchemaError):
                entry.value, entry.error = None, error
                entry.expires = flight.started + self.ttl
                entry.failures, entry.retry_at, entry.last_failure = 0, float("-inf"), None
                outcome = _LookupResult(error=error)
            else:
                entry.failures += 1
                entry.retry_at = now + self.backoff(entry.failures)
                entry.last_failure = error
                if entry.value is not None:
                    outcome = _LookupResult(value=entry.value, result="stale")
                    if now - entry.logged >= STALE_LOG_INTERVAL:
                        entry.logged, stale_log = now, True
                else:
                    outcome = _LookupResult(error=error)
            if entry.flight is flight:
                entry.flight = None
            retry_in = entry.retry_at - now
        flight.finish(outcome)
        if stale_log:
            log.warning(
                "%s; serving the cached schema until the registry answers (next try in %.1f s)",
                error,
                retry_in,
                extra={"schema": error.schema if error else None},
            )
        if recovered:
            log.info(
                "schema registry %s answers again for %s after %d failed request(s)",
                self._where,
                " ".join(str(k) for k in step.key),
                recovered,
            )
        return outcome

    def abandon(self, step: _Step) -> None:
        """The request of ``step`` was cancelled: waiters try again, nothing is recorded."""
        flight = step.flight
        assert flight is not None
        with self._lock:
            if step.entry.flight is flight:
                step.entry.flight = None
        flight.finish(_LookupResult(retry=True))

    def backoff(self, failures: int) -> float:
        """Seconds before the next request after ``failures`` failed ones: exponential, with
        "equal jitter" (half fixed, half random) so that many processes do not retry together."""
        delay = min(self.backoff_max, self.backoff_initial * 2.0 ** min(failures - 1, 30))
        return delay / 2 + delay / 2 * self._rng()


class _RawSchemas:
    """Immutable schemas (subject versions, ids) for reference resolution: a bounded LRU."""

    def __init__(self, limit: int = MAX_RAW_SCHEMAS) -> None:
        self._items: OrderedDict[tuple[Any, ...], RegistrySchema] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> RegistrySchema | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, schema: RegistrySchema) -> None:
        """Remember ``schema`` under its subject version and its id (whichever are known)."""
        with self._lock:
            if schema.subject is not None and schema.version is not None:
                self._items[("version", schema.subject, schema.version)] = schema
            if schema.schema_id is not None:
                self._items[("id", schema.schema_id)] = schema
            while len(self._items) > self._limit:
                self._items.popitem(last=False)


# ---------------------------------------------------------------------------- the source


class HttpSchemaSource:
    """A ``SchemaSource`` over a Confluent-compatible schema registry (sync and asyncio).

    >>> source = HttpSchemaSource("https://registry:8081", token="…")   # doctest: +SKIP
    >>> source.fetch("telemetry.FeedbackEvent", "v2").version          # doctest: +SKIP
    '42'

    Auth: ``token`` is sent as a bearer token; else user info in ``url``
    (``https://user:secret@host``) is sent as basic auth. Neither ever appears in logs, errors
    or ``repr``. TLS certificates are verified (``verify``; httpx honours ``SSL_CERT_FILE``).

    ``clock`` drives the cache and backoff (tests pass a settable clock); request timeouts are
    always real time. ``transport``/``async_transport`` replace httpx's network transports.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | Secret | None = None,
        timeout: float = 30.0,
        cache_ttl: float = 300.0,
        subject_template: str = DEFAULT_SUBJECT_TEMPLATE,
        observers: Sequence[RegistryObserver] = (),
        verify: bool | ssl.SSLContext = True,
        backoff_initial: float = BACKOFF_INITIAL,
        backoff_max: float = BACKOFF_MAX,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        parsed = _parse_url(url)
        self.url = str(parsed.copy_with(userinfo=b""))
        #: For logs and ``explain``: the URL without user info.
        self.description = self.url
        if timeout <= 0:
            raise ConfigError("REGISTRY_TIMEOUT must be > 0 seconds")
        if cache_ttl < 0:
            raise ConfigError("REGISTRY_CACHE_TTL must be >= 0 seconds")
        self.timeout = float(timeout)
        self.cache_ttl = float(cache_ttl)
        self.subjects_template = SubjectTemplate(subject_template)
        self.observers: tuple[RegistryObserver, ...] = tuple(observers)
        secret = token if isinstance(token, Secret) else Secret(token or "")
        self._auth: httpx.Auth | None = None
        self._headers = {"Accept": ACCEPT, "User-Agent": "policy-engine"}
        if secret and parsed.userinfo:
            raise ConfigError(
                f"REGISTRY_URL {self.url!r} has user info and REGISTRY_TOKEN is set too; use one"
            )
        if secret:
            self._headers["Authorization"] = f"Bearer {secret.reveal()}"
            self.auth_kind: str | None = "bearer"
        elif parsed.userinfo:
            self._auth = httpx.BasicAuth(parsed.username, parsed.password)
            self.auth_kind = "basic"
        else:
            self.auth_kind = None
        self._verify = verify
        self._transport = transport
        self._async_transport = async_transport
        self._cache = _Cache(
            ttl=self.cache_ttl,
            timeout=self.timeout,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            clock=clock,
            rng=rng,
            where=self.url,
        )
        self._raw = _RawSchemas()
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient]
        self._aclients = weakref.WeakKeyDictionary()
        self._closed = False

    @classmethod
    def from_settings(
        cls, url: str, settings: Settings, observers: Sequence[RegistryObserver] = ()
    ) -> HttpSchemaSource:
        """The source ``REGISTRY_URL=url`` names, configured from ``settings``."""
        return cls(
            url,
            token=settings.registry_token,
            timeout=settings.registry_timeout,
            cache_ttl=settings.registry_cache_ttl,
            subject_template=settings.registry_subject_template,
            observers=observers,
        )

    def subject_for(self, schema: str, track: str) -> str:
        """The subject holding ``schema``/``track`` (``REGISTRY_SUBJECT_TEMPLATE``)."""
        return self.subjects_template(schema, track)

    # ------------------------------------------------------------------ sync API

    def fetch(self, schema: str, track: str) -> SchemaDocument:
        """The latest version of the subject of ``schema``/``track``, references resolved."""
        check_schema_name(schema, track)
        subject = self.subject_for(schema, track)
        found = self._lookup(
            ("latest", subject), lambda: self._latest_script(subject, schema, track), schema, track
        )
        return found.as_document(schema, track)

    def fetch_version(self, schema: str, track: str, version: int) -> SchemaDocument:
        """Version ``version`` of the subject of ``schema``/``track`` (cached for good)."""
        check_schema_name(schema, track)
        subject = self.subject_for(schema, track)
        found = self._lookup(
            ("version", subject, version),
            lambda: self._version_script(subject, version, schema, track),
            schema,
            track,
            pinned=True,
        )
        return found.as_document(schema, track)

    def schema_by_id(self, schema_id: int) -> RegistrySchema:
        """The schema with the registry's global id ``schema_id`` (cached for good)."""
        return self._lookup(
            ("id", schema_id), lambda: self._id_script(schema_id), None, None, pinned=True
        )

    def subjects(self) -> tuple[str, ...]:
        """Every subject of the registry (cached for the TTL, stale on errors)."""
        return self._lookup(("subjects",), self._subjects_script, None, None)

    def known_schemas(self) -> Mapping[str, tuple[str, ...]]:
        """Schemas and tracks, read from the subject list through the subject template."""
        return self._known(self.subjects())

    def close(self) -> None:
        """Close the connections; the source answers ``RegistryUnavailableError`` afterwards."""
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
            aclients = list(self._aclients.items())
            self._aclients.clear()
        if client is not None:
            client.close()
        for loop, aclient in aclients:
            _close_on_loop(loop, aclient.aclose())

    def __enter__(self) -> HttpSchemaSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ asyncio API

    async def afetch(self, schema: str, track: str) -> SchemaDocument:
        """``fetch`` for asyncio: the event loop is never blocked on the registry."""
        check_schema_name(schema, track)
        subject = self.subject_for(schema, track)
        found = await self._alookup(
            ("latest", subject), lambda: self._latest_script(subject, schema, track), schema, track
        )
        return found.as_document(schema, track)

    async def afetch_version(self, schema: str, track: str, version: int) -> SchemaDocument:
        """``fetch_version`` for asyncio."""
        check_schema_name(schema, track)
        subject = self.subject_for(schema, track)
        found = await self._alookup(
            ("version", subject, version),
            lambda: self._version_script(subject, version, schema, track),
            schema,
            track,
            pinned=True,
        )
        return found.as_document(schema, track)

    async def aschema_by_id(self, schema_id: int) -> RegistrySchema:
        """``schema_by_id`` for asyncio."""
        return await self._alookup(
            ("id", schema_id), lambda: self._id_script(schema_id), None, None, pinned=True
        )

    async def asubjects(self) -> tuple[str, ...]:
        """``subjects`` for asyncio."""
        return await self._alookup(("subjects",), self._subjects_script, None, None)

    async def aknown_schemas(self) -> Mapping[str, tuple[str, ...]]:
        """``known_schemas`` for asyncio."""
        return self._known(await self.asubjects())

    async def aclose(self) -> None:
        """``close``, awaiting the asyncio connections of the running loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            mine = self._aclients.pop(loop, None)
        if mine is not None:
            await mine.aclose()
        self.close()

    async def __aenter__(self) -> HttpSchemaSource:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"HttpSchemaSource({self.url!r}, auth={self.auth_kind!r}, timeout={self.timeout:g}, "
            f"cache_ttl={self.cache_ttl:g}, subject_template={self.subjects_template.template!r})"
        )

    # ------------------------------------------------------------------ scripts (no I/O)

    def _latest_script(
        self, subject: str, schema: str, track: str
    ) -> RequestScript[RegistrySchema]:
        call = _Call(
            f"subjects/{quote(subject, safe='')}/versions/latest",
            f"subject {subject!r} latest version",
            "schema",
            schema,
            track,
        )
        body = yield call
        root = parse_schema_answer(call, body, self.url)
        self._raw.put(root)
        return (yield from self._resolve_script(root, call))

    def _version_script(
        self, subject: str, version: int, schema: str | None, track: str | None
    ) -> RequestScript[RegistrySchema]:
        call = _Call(
            f"subjects/{quote(subject, safe='')}/versions/{version}",
            f"subject {subject!r} version {version}",
            "schema",
            schema,
            track,
        )
        root = yield from self._raw_script(("version", subject, version), call)
        return (yield from self._resolve_script(root, call))

    def _id_script(self, schema_id: int) -> RequestScript[RegistrySchema]:
        call = _Call(
            f"schemas/ids/{schema_id}", f"schema id {schema_id}", "schema", None, None, schema_id
        )
        root = yield from self._raw_script(("id", schema_id), call)
        return (yield from self._resolve_script(root, call))

    def _subjects_script(self) -> RequestScript[tuple[str, ...]]:
        body = yield _Call("subjects", "subject list", "subjects")
        return tuple(body)

    def _raw_script(self, key: tuple[Any, ...], call: _Call) -> RequestScript[RegistrySchema]:
        """An immutable schema from the raw LRU, else from the registry."""
        cached = self._raw.get(key)
        if cached is not None:
            return cached
        body = yield call
        found = parse_schema_answer(call, body, self.url)
        if key[0] == "version" and found.subject is None:
            found = replace(found, subject=key[1], version=key[2])
        self._raw.put(found)
        return found

    def _resolve_script(self, root: RegistrySchema, call: _Call) -> RequestScript[RegistrySchema]:
        """``root`` with every reference, transitively, in ``resolved`` (keyed by name).

        A reference the registry does not have makes the root unusable (``InvalidSchemaError``,
        never "not found": that would send the engine to the fallback track).
        """
        if not root.references:
            return root
        resolved: dict[str, Any] = {}
        origin: dict[str, tuple[str, int]] = {}
        seen: set[tuple[str, int]] = set()
        root_id = _absolute_id(root.document)
        root_bases: tuple[str, ...] = (root_id,) if root_id else ()
        # (absolute base URIs of the referencing schema, the reference)
        pending: list[tuple[tuple[str, ...], SchemaReference]] = [
            (root_bases, ref) for ref in root.references
        ]
        ctx: dict[str, Any] = {"schema": call.schema, "track": call.track}
        while pending:
            bases, ref = pending.pop(0)
            target_key = (ref.subject, ref.version)
            ref_call = _Call(
                f"subjects/{quote(ref.subject, safe='')}/versions/{ref.version}",
                f"reference {ref.name!r} (subject {ref.subject!r} version {ref.version}) of "
                f"{call.what}",
                "schema",
                call.schema,
                call.track,
            )
            try:
                target = yield from self._raw_script(("version", *target_key), ref_call)
            except SchemaNotFoundError as exc:
                raise InvalidSchemaError(f"{exc}: the reference cannot be resolved", **ctx) from exc
            keys = _reference_keys(ref.name, (*bases, *root_bases))
            for uri in keys:
                if origin.setdefault(uri, target_key) != target_key:
                    raise InvalidSchemaError(
                        f"schema registry {self.url}: {call.what}: reference name {uri!r} "
                        f"stands for two schemas ({origin[uri]} and {target_key})",
                        **ctx,
                    )
                resolved[uri] = target.document
            if target_key not in seen:
                seen.add(target_key)
                if len(seen) > MAX_REFERENCES:
                    raise InvalidSchemaError(
                        f"schema registry {self.url}: {call.what}: more than {MAX_REFERENCES} "
                        "referenced schemas",
                        **ctx,
                    )
                own = _absolute_id(target.document)
                target_bases = (own,) if own else tuple(k for k in keys if "://" in k)
                pending.extend((target_bases, r) for r in target.references)
        return replace(root, resolved=MappingProxyType(resolved))

    def _known(self, subjects: tuple[str, ...]) -> Mapping[str, tuple[str, ...]]:
        known: dict[str, set[str]] = {}
        for subject in subjects:
            pair = self.subjects_template.parse(subject)
            if pair is not None:
                known.setdefault(pair[0], set()).add(pair[1])
        return {name: tuple(sorted(tracks)) for name, tracks in sorted(known.items())}

    # ------------------------------------------------------------------ reporting

    def _report_request(self, outcome: RequestOutcome) -> None:
        for observer in self.observers:
            try:
                observer.registry_request(outcome)
            except Exception:
                log.exception("hook %r failed in registry_request; ignored", observer)

    def _report_cache(self, result: CacheResult) -> None:
        for observer in self.observers:
            try:
                observer.registry_cache(result)
            except Exception:
                log.exception("hook %r failed in registry_cache; ignored", observer)

    def _settle(self, outcome: _LookupResult, schema: str | None, track: str | None) -> Any:
        """Report the cache result; return the value or raise (a copy of) the error."""
        self._report_cache(outcome.result)
        if outcome.error is not None:
            raise _with_context(outcome.error, schema, track)
        return outcome.value

    def _unavailable_closed(self, schema: str | None, track: str | None) -> RegistryError:
        return RegistryUnavailableError(
            f"schema registry {self.url}: the source is closed", schema=schema, track=track
        )

    # ------------------------------------------------------------------ sync driver

    def _lookup(
        self,
        key: tuple[Any, ...],
        make_script: Callable[[], RequestScript[T]],
        schema: str | None,
        track: str | None,
        *,
        pinned: bool = False,
    ) -> T:
        while True:
            step = self._cache.begin(key, is_async=False)
            if step.kind == "wait":
                flight = step.flight
                assert flight is not None
                if flight.blocks_this_thread():
                    step = self._cache.unshared(step)
                else:
                    outcome = flight.wait_sync()
                    if outcome.retry:
                        continue
                    return cast(T, self._settle(outcome, schema, track))
            if step.kind != "fetch":
                return cast(T, self._settle(self._cache.served(step), schema, track))
            assert step.flight is not None
            try:
                value = self._run(make_script(), step.flight.deadline, schema, track)
            except RegistryError as exc:
                outcome = self._cache.finish(step, error=exc, pinned=pinned)
            except Exception as exc:  # a bug must not leave waiters hanging: count it as a fault
                error = RegistryUnavailableError(
                    f"schema registry {self.url}: unexpected {_describe(exc)}",
                    schema=schema,
                    track=track,
                )
                error.__cause__ = exc
                outcome = self._cache.finish(step, error=error, pinned=pinned)
            except BaseException:
                self._cache.abandon(step)
                raise
            else:
                outcome = self._cache.finish(step, value=value, pinned=pinned)
            return cast(T, self._settle(outcome, schema, track))

    def _run(
        self, script: RequestScript[T], deadline: float, schema: str | None, track: str | None
    ) -> T:
        """Drive ``script`` with blocking requests, all within ``deadline`` (``time.monotonic``)."""
        if self._closed:
            raise self._unavailable_closed(schema, track)
        try:
            call = next(script)
            while True:
                reply = self._send(call, deadline)
                outcome, answer = classify(call, reply, self.url)
                self._cache.reached(None if reply.reached else answer)
                self._report_request(outcome)
                call = (
                    script.throw(answer)
                    if isinstance(answer, RegistryError)
                    else script.send(answer)
                )
        except StopIteration as done:
            return cast(T, done.value)

    def _sync_client(self) -> httpx.Client:
        with self._lock:
            if self._closed:
                raise self._unavailable_closed(None, None)
            if self._client is None:
                self._client = httpx.Client(
                    base_url=self.url,
                    auth=self._auth,
                    headers=self._headers,
                    verify=self._verify,
                    transport=self._transport,
                    follow_redirects=False,
                )
            return self._client

    def _send(self, call: _Call, deadline: float) -> _Reply:
        """One blocking GET bounded by ``deadline``: connect, send, wait and read all count."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return _Reply(
                failure="timeout", detail=f"no answer within {self.timeout:g} s", reached=False
            )
        client = self._sync_client()
        request = client.build_request("GET", call.path, timeout=remaining)
        timeouts = request.extensions.get("timeout")
        if isinstance(timeouts, dict):
            request.extensions["trace"] = _deadline_trace(timeouts, deadline)
        try:
            response = client.send(request, stream=True)
            try:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        return _Reply(
                            failure="error",
                            detail=f"the answer is larger than {MAX_RESPONSE_BYTES} bytes",
                        )
                    if time.monotonic() > deadline:
                        return _Reply(
                            failure="timeout", detail=f"no answer within {self.timeout:g} s"
                        )
            finally:
                response.close()
        except httpx.TimeoutException:
            return _Reply(
                failure="timeout", detail=f"no answer within {self.timeout:g} s", reached=False
            )
        except httpx.HTTPError as exc:
            return _Reply(failure="error", detail=_describe(exc), reached=_reached(exc))
        return _Reply(status=response.status_code, body=bytes(body))

    # ------------------------------------------------------------------ asyncio driver

    async def _alookup(
        self,
        key: tuple[Any, ...],
        make_script: Callable[[], RequestScript[T]],
        schema: str | None,
        track: str | None,
        *,
        pinned: bool = False,
    ) -> T:
        while True:
            step = self._cache.begin(key, is_async=True)
            if step.kind == "wait":
                assert step.flight is not None
                outcome = await step.flight.wait()
                if outcome.retry:
                    continue
                return cast(T, self._settle(outcome, schema, track))
            if step.kind != "fetch":
                return cast(T, self._settle(self._cache.served(step), schema, track))
            assert step.flight is not None
            try:
                value = await self._arun(make_script(), step.flight.deadline, schema, track)
            except RegistryError as exc:
                outcome = self._cache.finish(step, error=exc, pinned=pinned)
            except Exception as exc:  # a bug must not leave waiters hanging: count it as a fault
                error = RegistryUnavailableError(
                    f"schema registry {self.url}: unexpected {_describe(exc)}",
                    schema=schema,
                    track=track,
                )
                error.__cause__ = exc
                outcome = self._cache.finish(step, error=error, pinned=pinned)
            except BaseException:  # cancelled: another waiter takes over
                self._cache.abandon(step)
                raise
            else:
                outcome = self._cache.finish(step, value=value, pinned=pinned)
            return cast(T, self._settle(outcome, schema, track))

    async def _arun(
        self, script: RequestScript[T], deadline: float, schema: str | None, track: str | None
    ) -> T:
        """Drive ``script`` with asyncio requests, all within ``deadline`` (``time.monotonic``)."""
        if self._closed:
            raise self._unavailable_closed(schema, track)
        try:
            call = next(script)
            while True:
                reply = await self._asend(call, deadline)
                outcome, answer = classify(call, reply, self.url)
                self._cache.reached(None if reply.reached else answer)
                self._report_request(outcome)
                call = (
                    script.throw(answer)
                    if isinstance(answer, RegistryError)
                    else script.send(answer)
                )
        except StopIteration as done:
            return cast(T, done.value)

    async def _async_client(self) -> httpx.AsyncClient:
        # One client per event loop: connections belong to the loop that opened them.
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._closed:
                raise self._unavailable_closed(None, None)
            entry = self._aclients.get(loop)
            created = entry is None
            if entry is None:
                entry = self._aclients[loop] = _LoopClient(
                    httpx.AsyncClient(
                        base_url=self.url,
                        auth=self._auth,
                        headers=self._headers,
                        verify=self._verify,
                        transport=self._async_transport,
                        follow_redirects=False,
                    )
                )
        if created:
            await entry.arm()
        return entry.client

    async def _asend(self, call: _Call, deadline: float) -> _Reply:
        """One asyncio GET; the whole exchange is cancelled at ``deadline``."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return _Reply(
                failure="timeout", detail=f"no answer within {self.timeout:g} s", reached=False
            )
        client = await self._async_client()
        try:
            async with asyncio.timeout(remaining):
                request = client.build_request("GET", call.path, timeout=remaining)
                response = await client.send(request, stream=True)
                try:
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_RESPONSE_BYTES:
                            return _Reply(
                                failure="error",
                                detail=f"the answer is larger than {MAX_RESPONSE_BYTES} bytes",
                            )
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            return _Reply(
                failure="timeout", detail=f"no answer within {self.timeout:g} s", reached=False
            )
        except httpx.HTTPError as exc:
            return _Reply(failure="error", detail=_describe(exc), reached=_reached(exc))
        return _Reply(status=response.status_code, body=bytes(body))


def _parse_url(url: str) -> httpx.URL:
    """``url`` as an httpx URL; ``ConfigError`` (without the user info) if it is not usable."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise ConfigError(f"REGISTRY_URL is not a valid URL: {type(exc).__name__}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        safe = str(parsed.copy_with(userinfo=b"")) if parsed.host else parsed.scheme + "://..."
        raise ConfigError(f"REGISTRY_URL {safe!r} is not an http:// or https:// URL with a host")
    return parsed


def _reached(exc: httpx.HTTPError) -> bool:
    """Whether a failed exchange still reached the registry (it answered, but badly: a
    truncated or malformed response) rather than not at all (no connection, proxy failure)."""
    return not isinstance(exc, httpx.NetworkError | httpx.ProxyError | httpx.UnsupportedProtocol)


def _deadline_trace(
    timeouts: dict[str, float | None], deadline: float
) -> Callable[[str, dict[str, Any]], None]:
    """An httpcore trace hook that shrinks every phase's timeout to the time left.

    httpx timeouts are per phase (connect, write, each read); the hook runs as each phase
    starts, so together the phases of a sync request stay within ``deadline``.
    """

    def trace(event: str, info: dict[str, Any]) -> None:
        if event.endswith(".started"):
            left = max(deadline - time.monotonic(), 0.001)
            for phase in ("connect", "read", "write", "pool"):
                timeouts[phase] = left

    return trace


def _close_on_loop(loop: asyncio.AbstractEventLoop, closing: Coroutine[Any, Any, None]) -> None:
    """Run ``closing`` (an AsyncClient's close) from sync code, on the loop that owns it."""
    if loop.is_closed():
        closing.close()  # its connections went with the loop
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    try:
        if running is loop:
            task = loop.create_task(closing)
            _PENDING_CLOSES.add(task)
            task.add_done_callback(_PENDING_CLOSES.discard)
        elif loop.is_running():
            asyncio.run_coroutine_threadsafe(closing, loop)
        else:
            loop.run_until_complete(closing)
    except RuntimeError:  # the loop is shutting down: nothing more we can do
        closing.close()


class _LoopClient:
    """The AsyncClient of one event loop, closed on that loop when the loop shuts down.

    ``arm`` starts an async generator on the loop; ``asyncio.run`` (any loop shut down with
    ``shutdown_asyncgens()``) finishes it at the end, and its ``finally`` closes the client's
    connections there, where they can still be closed cleanly.
    """

    __slots__ = ("_closer", "client")

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self._closer: AsyncGenerator[None, None] | None = None

    async def arm(self) -> None:
        """Register the close-at-shutdown hook on the running loop."""
        closer = _close_at_shutdown(self.client)
        await closer.asend(None)
        self._closer = closer

    async def aclose(self) -> None:
        """Close the client now."""
        if self._closer is not None:
            await self._closer.aclose()
        else:
            await self.client.aclose()


async def _close_at_shutdown(client: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await client.aclose()


#: Close tasks scheduled by ``close()`` inside a running loop, kept until they finish.
_PENDING_CLOSES: set[asyncio.Task[None]] = set()


__all__ = [
    "HttpSchemaSource",
    "RegistrySchema",
    "SchemaReference",
    "classify",
    "parse_schema_answer",
]
