"""Serving ``/metrics`` over HTTP from a daemon thread (the CLI's ``--metrics-port``)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

from policy_engine.metrics.multiprocess import multiprocess_enabled, multiprocess_registry

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer


def serve_metrics(
    port: int, addr: str = "0.0.0.0", registry: CollectorRegistry | None = None
) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``/metrics`` over HTTP on ``port`` from a daemon thread; for embedders.

    ``registry`` defaults to the global one, or, in multiprocess mode, to a fresh registry
    reading every process's files through a ``MultiProcessCollector``. Returns the server and
    its thread (``server.shutdown()`` stops it; ``port=0`` picks a free port:
    ``server.server_port``).
    """
    if registry is None:
        registry = multiprocess_registry() if multiprocess_enabled() else REGISTRY
    return start_http_server(port, addr=addr, registry=registry)


__all__ = ["serve_metrics"]
