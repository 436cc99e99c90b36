"""The metrics port's probes: /healthz, /readyz and /status beside /metrics, over real HTTP."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from policy_engine.metrics import Health, serve_metrics


def get(server, path: str, host: str = "127.0.0.1") -> tuple[int, str]:
    """Status code and body of ``GET path`` on the server (``host``: an IPv6 one in brackets)."""
    url = f"http://{host}:{server.server_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=30) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture
def served(make_engine, registry) -> Iterator[tuple[object, Health]]:
    """A server on a free port with the health of a loop that has not started yet."""
    engine = make_engine()
    health = Health(engine, source="redis://127.0.0.1:6379/0 stream events")
    server, _ = serve_metrics(0, addr="127.0.0.1", registry=registry, health=health)
    yield server, health
    server.shutdown()


def test_not_ready_until_the_loop_runs_and_the_source_answers(served):
    """/healthz is 503 before the loop runs; /readyz stays 503 with the reason until the
    source is connected, and goes back to 503 while the source is down."""
    server, health = served
    assert get(server, "/healthz")[0] == 503
    code, why = get(server, "/readyz")
    assert (code, why.strip()) == (503, "the loop is not running")
    health.running(True)
    assert get(server, "/healthz") == (200, "ok\n")
    code, why = get(server, "/readyz")
    assert code == 503
    assert "not connected yet" in why
    health.source_connected()
    assert get(server, "/readyz") == (200, "ready\n")
    health.source_down("ConnectionError: Connection refused")
    code, why = get(server, "/readyz")
    assert code == 503
    assert "Connection refused" in why


def test_status_says_what_the_replica_serves(served, make_engine):
    """/status is JSON with the checksum in force, its files, the reload state, the tripped
    guardrails and the source."""
    server, health = served
    health.running(True)
    health.source_connected()
    health.source_position(last_id="1700000000000-0", lag=12)
    code, body = get(server, "/status")
    assert code == 200
    status = json.loads(body)
    engine = health.engine
    assert status["checksum"] == engine.checksum
    assert status["files"] == list(engine.policy_set.files)
    assert status["healthy"] is True
    assert (status["last_error"], status["last_error_at"]) == (None, None)
    assert status["last_success_at"] > 0
    assert status["guardrails"] == []
    assert status["ready"] is True
    assert status["source"]["connected"] is True
    assert (status["source"]["last_id"], status["source"]["lag"]) == ("1700000000000-0", 12)


def test_metrics_are_still_served(served, make_engine):
    """/metrics (and /) keep serving the Prometheus exposition."""
    server, _ = served
    code, body = get(server, "/metrics")
    assert code == 200
    assert "# TYPE schema_validations_total counter" in body
    assert get(server, "/")[0] == 200
    assert get(server, "/nothing")[0] == 404


def test_without_health_only_metrics_and_trivial_probes(make_engine, registry):
    """An embedder's server without a Health object answers /healthz and /readyz 200 and has no
    /status."""
    server, _ = serve_metrics(0, addr="127.0.0.1", registry=registry)
    try:
        assert get(server, "/healthz")[0] == 200
        assert get(server, "/readyz")[0] == 200
        assert get(server, "/status")[0] == 404
    finally:
        server.shutdown()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no IPv6 loopback to bind to")
def test_an_ipv6_address_is_served_on_ipv6(registry):
    """METRICS_ADDR=::1 listens on IPv6 loopback (an IPv6 cluster's pods have no IPv4 to probe);
    the IPv4 loopback is not served by it."""
    server, _ = serve_metrics(0, addr="::1", registry=registry)
    try:
        assert server.socket.family == socket.AF_INET6
        assert get(server, "/healthz", host="[::1]") == (200, "ok\n")
        assert get(server, "/metrics", host="[::1]")[0] == 200
        with pytest.raises(urllib.error.URLError):
            get(server, "/healthz")  # 127.0.0.1: nothing listens there on this port
    finally:
        server.shutdown()


def test_an_ipv4_address_is_served_on_ipv4(registry):
    """The default family stays IPv4 for an IPv4 address."""
    server, _ = serve_metrics(0, addr="127.0.0.1", registry=registry)
    try:
        assert server.socket.family == socket.AF_INET
    finally:
        server.shutdown()
