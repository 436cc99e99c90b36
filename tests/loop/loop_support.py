"""Shared data for the loop tests: schemas, a policy file, envelope builders, the Redis URL."""

from __future__ import annotations

import json
import socket
from typing import Any

#: The local Redis every Redis test talks to (real server on loopback).
REDIS_URL = "redis://127.0.0.1:6379/0"

ORDER: dict[str, Any] = {
    "type": "object",
    "required": ["id", "price"],
    "properties": {
        "id": {"type": "string", "minLength": 1},
        "price": {"type": "number", "minimum": 0},
        "email": {"type": "string", "format": "email"},
        "seq": {"type": "integer"},
    },
}

#: shop.Order strict for every key, shop.Note warn, shop.Off not validated.
POLICY = """\
version: 1
schemas:
  shop.Order:
    mode: strict
    canary: 100
  shop.Note:
    mode: warn
  shop.Off:
    mode: off
"""

#: The same, with shop.Order relaxed to warn (a "fixed" policy for replay-dlq).
RELAXED = POLICY.replace("mode: strict", "mode: warn")


def envelope(schema: str, payload: Any, **extra: Any) -> bytes:
    """One envelope as compact JSON bytes (no newline)."""
    return json.dumps({"schema": schema, "payload": payload, **extra}).encode()


def order(seq: int, *, valid: bool = True) -> bytes:
    """A shop.Order envelope numbered ``seq``; an invalid one has a negative price."""
    return envelope("shop.Order", {"id": f"o-{seq}", "price": 1.5 if valid else -1, "seq": seq})


def free_port() -> int:
    """A TCP port nothing listens on right now (on loopback)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
