"""The metrics port: ``/metrics``, and the probes a fleet needs, from one daemon thread.

- ``GET /metrics``: the Prometheus exposition (also ``/``, as prometheus-client serves it);
- ``GET /healthz``: 200 while the process runs its loop, else 503;
- ``GET /readyz``: 200 once the policies are loaded and the source is connected, else 503 with
  the reason as text;
- ``GET /status``: one JSON object: the policy checksum in force, its files, whether the last
  reload worked (and its error and when), the tripped guardrails, the guardrail store, and the
  source (what it reads, connected or not, its position or lag).

Nothing served names a token, a password or a payload value: URLs are shown without their user
information, as in logs. ``Health`` holds what the probes report; the consume loop updates it,
an embedding application may too.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app

from policy_engine.errors import PolicyLoadError
from policy_engine.metrics.multiprocess import multiprocess_enabled, multiprocess_registry

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

    from policy_engine.engine import PolicyEngine


class Health:
    """What ``/healthz``, ``/readyz`` and ``/status`` report for one process.

    ``engine`` gives the policy side (checksum, files, reload errors, guardrails); the loop
    reports the source with ``source_connected`` / ``source_down`` / ``source_position`` and
    its own life with ``running``. Without a loop (``loop=False``) the process is live and the
    source counts as connected.
    """

    def __init__(self, engine: PolicyEngine, *, source: str | None = None, loop: bool = True):
        self.engine = engine
        self._lock = threading.Lock()
        self._source: dict[str, Any] = {
            "description": source,
            "connected": not loop,
            "error": None,
            "since": None,
        }
        self._running = not loop

    # -- reported by the loop

    def running(self, alive: bool) -> None:
        """The loop started (``True``) or ended (``False``)."""
        self._running = alive

    def source_connected(self) -> None:
        """The source answered (a read or an acknowledgement worked)."""
        with self._lock:
            if not self._source["connected"]:
                self._source.update(connected=True, error=None, since=time.time())

    def source_down(self, reason: str) -> None:
        """The source failed; ``reason`` must not hold credentials (it is served)."""
        with self._lock:
            if self._source["connected"] or self._source["error"] != reason:
                self._source.update(connected=False, error=reason, since=time.time())

    def source_position(self, **position: Any) -> None:
        """Where the loop is: a stream's last id and the group's lag, a file's offset."""
        with self._lock:
            self._source.update(position)

    # -- read by the endpoints

    def live(self) -> bool:
        """Whether the process runs its loop."""
        return self._running

    def ready(self) -> tuple[bool, str]:
        """Ready to take traffic, and why not when it is not."""
        if not self._running:
            return False, "the loop is not running"
        with self._lock:
            source = dict(self._source)
        if not source["connected"]:
            why = source["error"] or "not connected yet"
            name = source["description"] or "the source"
            if why.startswith(f"{name}: "):  # the reason names the source already
                why = why[len(name) + 2 :]
            return False, f"{name} is not connected: {why}"
        return True, "ready"

    def status(self) -> dict[str, Any]:
        """The ``/status`` document."""
        engine_status = self.engine.status()
        error = engine_status.last_error
        problems: list[str] | None = None
        if isinstance(error, PolicyLoadError):
            problems = [str(p) for p in error.problems]
        elif error is not None:
            problems = [str(error)]
        store = self.engine.guardrail_store
        with self._lock:
            source = dict(self._source)
        ready, why = self.ready()
        return {
            "checksum": engine_status.checksum,
            "files": list(engine_status.files),
            "healthy": engine_status.healthy,
            "ready": ready,
            "not_ready_because": None if ready else why,
            "last_error": problems,
            "last_error_at": engine_status.last_error_at,
            "last_success_at": engine_status.last_success_at,
            "watching": engine_status.watching,
            "guardrails": [
                {"schema": g.schema, "track": g.track, "until": g.until}
                for g in engine_status.guardrails
            ],
            "guardrail_store": store.to_dict() if store is not None else None,
            "source": source,
        }


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """One thread per request, not joined at exit: a slow scrape never holds the process."""

    daemon_threads = True


class _ThreadingWSGIServer6(_ThreadingWSGIServer):
    """The same, listening on IPv6 (``::`` also takes IPv4 where the system maps it)."""

    address_family = socket.AF_INET6


def _server_class(addr: str, port: int) -> type[_ThreadingWSGIServer]:
    """The server class for the family ``addr`` resolves to first (an IPv6 address, or a name
    whose first address is IPv6, needs an IPv6 socket); IPv4 when it does not resolve, so that
    the bind reports the problem."""
    try:
        first = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (OSError, IndexError):
        return _ThreadingWSGIServer
    return _ThreadingWSGIServer6 if first[0] == socket.AF_INET6 else _ThreadingWSGIServer


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: probes come every few seconds."""

    def log_message(self, format: str, *args: Any) -> None:
        del format, args


def endpoints_app(registry: CollectorRegistry, health: Health | None) -> WSGIApplication:
    """The WSGI application of the metrics port (see the module docstring)."""
    metrics = make_wsgi_app(registry)

    def text(
        start_response: StartResponse, status: str, body: str, kind: str = "text/plain"
    ) -> Iterable[bytes]:
        data = body.encode()
        start_response(
            status,
            [("Content-Type", f"{kind}; charset=utf-8"), ("Content-Length", str(len(data)))],
        )
        return [data]

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path in ("/metrics", "/"):
            served: Iterable[bytes] = metrics(environ, start_response)
            return served
        if path == "/healthz":
            live = health is None or health.live()
            return text(start_response, "200 OK" if live else "503 Service Unavailable",
                        "ok\n" if live else "the loop is not running\n")  # fmt: skip
        if path == "/readyz":
            ready, why = (True, "ready") if health is None else health.ready()
            status = "200 OK" if ready else "503 Service Unavailable"
            return text(start_response, status, why + "\n")
        if path == "/status" and health is not None:
            body = json.dumps(health.status(), ensure_ascii=False, indent=2) + "\n"
            return text(start_response, "200 OK", body, "application/json")
        return text(start_response, "404 Not Found", f"no {path} here: try /metrics\n")

    return app


def serve_metrics(
    port: int,
    addr: str = "0.0.0.0",
    registry: CollectorRegistry | None = None,
    health: Health | None = None,
) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``/metrics`` (and ``/healthz``, ``/readyz``, ``/status`` with ``health``) over
    HTTP on ``port`` from a daemon thread; for embedders and ``policy-engine consume``.

    ``registry`` defaults to the global one, or, in multiprocess mode, to a fresh registry
    reading every process's files through a ``MultiProcessCollector``. Returns the server and
    its thread (``server.shutdown()`` stops it; ``port=0`` picks a free port:
    ``server.server_port``).
    """
    if registry is None:
        registry = multiprocess_registry() if multiprocess_enabled() else REGISTRY
    server = make_server(
        addr,
        port,
        endpoints_app(registry, health),
        server_class=_server_class(addr, port),
        handler_class=_QuietHandler,
    )
    thread = threading.Thread(
        target=server.serve_forever, name="policy-engine-metrics", daemon=True
    )
    thread.start()
    return server, thread


__all__ = ["Health", "endpoints_app", "serve_metrics"]
