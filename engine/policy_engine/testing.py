"""Test helpers for code that uses policy-engine (public API, like ``structlog.testing``).

- ``FakeSchemaRegistry``: a small Confluent-compatible schema registry, served from memory by a
  real HTTP server on 127.0.0.1 in a background thread, with fault injection (``Fault``): server
  errors, "not found" codes, slow, trickling or held answers (held until the test releases them,
  so a test about timeouts never races the clock), truncated or non-JSON bodies, and
  ``stop()``/``start()`` for connection refused and recovery;
- ``RecordingRegistryObserver``: a ``RegistryObserver`` hook that counts what it hears.

>>> with FakeSchemaRegistry() as registry:                      # doctest: +SKIP
...     registry.register("shop.Order-v2", {"type": "object"})
...     engine = PolicyEngine(policies=[], registry=registry.url)
...     registry.inject(Fault.server_error())                   # the registry starts failing
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from policy_engine.engine import PolicyEngine

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


@dataclass(frozen=True, slots=True)
class Fault:
    """How the fake registry misbehaves for the requests it applies to.

    ``status``: answer with this HTTP status and a Confluent error body
    (``{"error_code": error_code, "message": message}``) instead of the real answer;
    ``delay``: seconds to wait before answering at all; ``body``: send these bytes as the body
    (with ``status`` or 200); ``truncate``: promise the whole body, send half, hang up;
    ``body_delay``: seconds between the headers and the body; ``byte_delay``: seconds between
    the body's bytes (a trickle: every read gets data, the whole answer takes long);
    ``hold``: answer only once this event is set (never, if nobody sets it; a held request is
    dropped when the registry stops). ``path``: only requests whose path contains it;
    ``times``: only that many requests, then the fault is gone.
    """

    status: int | None = None
    error_code: int | None = None
    message: str = "injected fault"
    delay: float = 0.0
    body: bytes | None = None
    truncate: bool = False
    body_delay: float = 0.0
    byte_delay: float = 0.0
    hold: threading.Event | None = None
    path: str | None = None
    times: int | None = None

    @classmethod
    def server_error(cls, error_code: int = 50001, **options: Any) -> Fault:
        """HTTP 500 with a Confluent server error code (50001: backend data store error)."""
        return cls(status=500, error_code=error_code, **options)

    @classmethod
    def not_found(cls, error_code: int = 40401, **options: Any) -> Fault:
        """HTTP 404 with a Confluent "not found" code: 40401 subject, 40402 version, 40403 id."""
        return cls(status=404, error_code=error_code, **options)

    @classmethod
    def slow(cls, seconds: float, **options: Any) -> Fault:
        """Answer correctly, but only after ``seconds``."""
        return cls(delay=seconds, **options)

    @classmethod
    def hang(cls, release: threading.Event | None = None, **options: Any) -> Fault:
        """Answer correctly, but only once ``release`` is set: without one, never.

        A client timeout is then the only way out, however loaded the machine: tests about
        timeouts pin which error came back, not how long it took.
        """
        return cls(hold=release if release is not None else threading.Event(), **options)

    @classmethod
    def trickle(cls, byte_delay: float, **options: Any) -> Fault:
        """Headers at once, then the real body one byte every ``byte_delay`` seconds."""
        return cls(byte_delay=byte_delay, **options)

    @classmethod
    def garbage(cls, body: bytes = b"<html>502 Bad Gateway</html>", **options: Any) -> Fault:
        """HTTP 200 whose body is not JSON (a proxy's error page, say)."""
        return cls(body=body, **options)

    @classmethod
    def truncated(cls, **options: Any) -> Fault:
        """The real answer, cut off halfway (the connection drops mid-body)."""
        return cls(truncate=True, **options)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the fake registry received."""

    method: str
    path: str
    headers: Mapping[str, str]


@dataclass(slots=True)
class _Stored:
    schema_id: int
    text: str
    schema_type: str
    references: tuple[tuple[str, str, int], ...]


@dataclass(slots=True)
class _ActiveFault:
    fault: Fault
    remaining: int | None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128  # the default 5 drops connections when 100 clients arrive at once

    def __init__(self, address: tuple[str, int], registry: FakeSchemaRegistry) -> None:
        self.registry = registry
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up mid-answer (timeouts do that): not worth a traceback."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real registries do
    # Headers and body go out in two writes; with Nagle on, the second waits ~40 ms for the
    # client's delayed ACK of the first.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.registry._connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.registry._connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test output is not the place for access logs."""

    def do_GET(self) -> None:
        self.server.registry._handle(self)

    def do_POST(self) -> None:
        self.server.registry._send(self, 405, {"error_code": 405, "message": "read-only fake"})


class FakeSchemaRegistry:
    """A Confluent-compatible schema registry in memory, on ``127.0.0.1``, for tests.

    Serves ``GET /subjects``, ``/subjects/{subject}/versions``,
    ``/subjects/{subject}/versions/{latest|-1|n}`` and ``/schemas/ids/{id}`` with Confluent's
    answers and error codes (40401, 40402, 40403, 42202). ``schemaType`` is left out for AVRO,
    as Confluent does. Every request is recorded in ``requests``.

    With ``token`` (bearer) or ``username``/``password`` (basic) every request must carry them,
    else HTTP 401. ``prefix`` serves the API below a path (Apicurio: ``/apis/ccompat/v7``).
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        prefix: str = "",
        host: str = "127.0.0.1",
    ) -> None:
        self.token = token
        self.basic = (username, password or "") if username is not None else None
        self.prefix = prefix.rstrip("/")
        self.host = host
        self.port = 0
        self.requests: list[RecordedRequest] = []
        self._subjects: dict[str, list[int]] = {}
        self._schemas: dict[int, _Stored] = {}
        self._faults: list[_ActiveFault] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # notified on every recorded request
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.start()

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """The registry's base URL, e.g. ``http://127.0.0.1:40123``."""
        return f"http://{self.host}:{self.port}{self.prefix}"

    def start(self) -> None:
        """Serve (again): on a free port the first time, on the same port after ``stop()``."""
        if self._server is not None:
            return
        self._stopping.clear()
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"fake-schema-registry-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and drop every open connection: clients get "connection refused"."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        for conn in list(self._connections):
            with contextlib.suppress(OSError):  # already gone
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    close = stop

    def __enter__(self) -> FakeSchemaRegistry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "serving" if self._server is not None else "stopped"
        return f"FakeSchemaRegistry({self.url!r}, {state}, {len(self._subjects)} subject(s))"

    # ------------------------------------------------------------------ content

    def register(
        self,
        subject: str,
        schema: Any,
        *,
        schema_type: str = "JSON",
        references: Iterable[tuple[str, str, int]] = (),
    ) -> int:
        """Add ``schema`` as the subject's next version; return its id.

        ``schema`` is a JSON value (serialised) or a string sent as is (so a test can register
        text that is not JSON). ``references`` are ``(name, subject, version)``. As in Confluent,
        the same content gets the same id everywhere, and registering the subject's latest
        content again adds no version.
        """
        text = schema if isinstance(schema, str) else json.dumps(schema)
        refs = tuple((str(n), str(s), int(v)) for n, s, v in references)
        with self._lock:
            for stored in self._schemas.values():
                if (stored.text, stored.schema_type, stored.references) == (
                    text,
                    schema_type,
                    refs,
                ):
                    schema_id = stored.schema_id
                    break
            else:
                schema_id = len(self._schemas) + 1
                self._schemas[schema_id] = _Stored(schema_id, text, schema_type, refs)
            versions = self._subjects.setdefault(subject, [])
            if not versions or versions[-1] != schema_id:
                versions.append(schema_id)
            return schema_id

    def delete_subject(self, subject: str) -> None:
        """Forget a subject and its versions (ids stay readable, as in Confluent)."""
        with self._lock:
            self._subjects.pop(subject, None)

    # ------------------------------------------------------------------ faults and records

    def inject(self, fault: Fault) -> None:
        """Misbehave as ``fault`` says, for the requests it applies to, until ``heal()``."""
        with self._lock:
            self._faults.append(_ActiveFault(fault, fault.times))

    def heal(self) -> None:
        """Remove every injected fault."""
        with self._lock:
            self._faults.clear()

    def count(self, path: str = "") -> int:
        """How many requests were received whose path contains ``path``."""
        with self._lock:
            return sum(1 for r in self.requests if path in r.path)

    def wait_for_requests(self, count: int = 1, path: str = "", timeout: float = 30.0) -> bool:
        """Wait until ``count`` requests whose path contains ``path`` have arrived (held ones
        included); ``False`` if ``timeout`` passed first.

        >>> registry.inject(Fault.hang(release))                  # doctest: +SKIP
        >>> task = asyncio.create_task(source.afetch("shop.Order", "v2"))
        >>> await asyncio.to_thread(registry.wait_for_requests)   # the request is in flight
        """
        with self._arrived:
            return self._arrived.wait_for(
                lambda: sum(1 for r in self.requests if path in r.path) >= count, timeout
            )

    def reset_requests(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self.requests.clear()

    # ------------------------------------------------------------------ serving

    def _fault_for(self, path: str) -> Fault | None:
        with self._lock:
            for active in self._faults:
                if active.fault.path is not None and active.fault.path not in path:
                    continue
                if active.remaining is not None:
                    if active.remaining <= 0:
                        continue
                    active.remaining -= 1
                return active.fault
        return None

    def _held(self, release: threading.Event) -> bool:
        """Wait until ``release`` is set (``True``) or the registry stops (``False``)."""
        while not release.wait(0.05):  # the poll only bounds how late a stop is noticed
            if self._stopping.is_set():
                return False
        return True

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        given = headers.get("authorization", "")
        if self.token is not None:
            return given == f"Bearer {self.token}"
        if self.basic is not None:
            expected = base64.b64encode(f"{self.basic[0]}:{self.basic[1]}".encode()).decode()
            return given == f"Basic {expected}"
        return True

    def _handle(self, handler: _Handler) -> None:
        path = urlsplit(handler.path).path
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._arrived:
            self.requests.append(RecordedRequest(handler.command, path, headers))
            self._arrived.notify_all()
        fault = self._fault_for(path)
        if fault is not None and fault.delay and self._stopping.wait(fault.delay):
            handler.close_connection = True
            return
        if fault is not None and fault.hold is not None and not self._held(fault.hold):
            handler.close_connection = True
            return
        if not self._authorized(headers):
            self._send(handler, 401, {"error_code": 40101, "message": "Unauthorized"})
            return
        if fault is not None and fault.status is not None and fault.body is None:
            code = fault.error_code if fault.error_code is not None else fault.status * 100 + 1
            answer: tuple[int, Any] = (fault.status, {"error_code": code, "message": fault.message})
        else:
            answer = self._route(path)
        status, body = answer
        raw = json.dumps(body).encode()
        if fault is not None and fault.body is not None:
            status, raw = fault.status or 200, fault.body
        self._send(
            handler,
            status,
            raw,
            truncate=fault is not None and fault.truncate,
            body_delay=fault.body_delay if fault is not None else 0.0,
            byte_delay=fault.byte_delay if fault is not None else 0.0,
        )

    def _route(self, path: str) -> tuple[int, Any]:
        if self.prefix:
            if not path.startswith(self.prefix + "/"):
                return 404, {"error_code": 404, "message": "HTTP 404 Not Found"}
            path = path[len(self.prefix) :]
        parts = [unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
        with self._lock:
            if parts == ["subjects"]:
                return 200, sorted(s for s, versions in self._subjects.items() if versions)
            if len(parts) >= 3 and parts[0] == "subjects" and parts[2] == "versions":
                versions = self._subjects.get(parts[1])
                if not versions:
                    return 404, {
                        "error_code": 40401,
                        "message": f"Subject '{parts[1]}' not found.",
                    }
                if len(parts) == 3:
                    return 200, list(range(1, len(versions) + 1))
                if len(parts) == 4:
                    return self._version(parts[1], versions, parts[3])
            if len(parts) == 3 and parts[:2] == ["schemas", "ids"] and parts[2].isdigit():
                stored = self._schemas.get(int(parts[2]))
                if stored is None:
                    return 404, {"error_code": 40403, "message": f"Schema {parts[2]} not found"}
                return 200, self._answer(stored)
        return 404, {"error_code": 404, "message": "HTTP 404 Not Found"}

    def _version(self, subject: str, versions: Sequence[int], which: str) -> tuple[int, Any]:
        if which in ("latest", "-1"):
            number = len(versions)
        elif which.isdigit() and int(which) > 0:
            number = int(which)
        else:
            return 422, {
                "error_code": 42202,
                "message": f"The specified version '{which}' is not a valid version id.",
            }
        if number > len(versions):
            return 404, {"error_code": 40402, "message": f"Version {number} not found."}
        stored = self._schemas[versions[number - 1]]
        return 200, {"subject": subject, "version": number, **self._answer(stored)}

    @staticmethod
    def _answer(stored: _Stored) -> dict[str, Any]:
        body: dict[str, Any] = {"id": stored.schema_id, "schema": stored.text}
        if stored.schema_type != "AVRO":  # Confluent leaves schemaType out for AVRO
            body["schemaType"] = stored.schema_type
        if stored.references:
            body["references"] = [
                {"name": n, "subject": s, "version": v} for n, s, v in stored.references
            ]
        return body

    def _send(
        self,
        handler: _Handler,
        status: int,
        body: Any,
        *,
        truncate: bool = False,
        body_delay: float = 0.0,
        byte_delay: float = 0.0,
    ) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", CONTENT_TYPE)
        handler.send_header("Content-Length", str(len(raw)))
        if truncate:
            handler.send_header("Connection", "close")
        handler.end_headers()
        if body_delay and self._stopping.wait(body_delay):
            handler.close_connection = True
            return
        if truncate:
            handler.wfile.write(raw[: len(raw) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            return
        if byte_delay:
            for i in range(len(raw)):
                if self._stopping.wait(byte_delay):
                    handler.close_connection = True
                    return
                handler.wfile.write(raw[i : i + 1])  # a client that gave up: handle_error
            return
        handler.wfile.write(raw)


@dataclass
class RecordingRegistryObserver:
    """A ``RegistryObserver`` hook that counts outcomes: ``PolicyEngine(..., hooks=[observer])``.

    ``requests["timeout"]`` is how many registry requests timed out; ``cache["stale"]`` how many
    lookups were answered with a stale schema.
    """

    requests: Counter[str] = field(default_factory=Counter)
    cache: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def registry_request(self, outcome: str) -> None:
        """Count one registry request by outcome (``ok``, ``not_found``, ``error``, ``timeout``)."""
        with self._lock:
            self.requests[outcome] += 1

    def registry_cache(self, result: str) -> None:
        """Count one cache lookup by result (``hit``, ``miss``, ``stale``)."""
        with self._lock:
            self.cache[result] += 1


def wait_for_refreshes(engine: PolicyEngine, timeout: float = 30.0) -> bool:
    """Wait until ``engine`` has no schema refresh queued or running in the background.

    An expired schema the engine holds keeps serving while a background thread asks the
    registry again; a test that changes the registry and moves the clock waits with this before
    it looks at what the engine fetched. ``False`` if ``timeout`` passed first.
    """
    return engine._schemas.wait_for_refreshes(timeout)


__all__ = [
    "FakeSchemaRegistry",
    "Fault",
    "RecordedRequest",
    "RecordingRegistryObserver",
    "wait_for_refreshes",
]
