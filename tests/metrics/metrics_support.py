"""Shared data of the metrics tests: the schema, the policy file, payloads and a test clock.

A module with a unique name rather than ``conftest`` imports: test directories are not
packages, so ``import conftest`` would be ambiguous.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: The repository's example schemas (an absolute path: tests may run from anywhere).
SCHEMAS = str(Path(__file__).resolve().parents[2] / "schemas")

#: 2026-06-01T00:00:00Z, where the test clock starts.
T0 = datetime(2026, 6, 1, tzinfo=UTC).timestamp()

ORDER: dict[str, Any] = {
    "type": "object",
    "required": ["id", "price"],
    "properties": {
        "id": {"type": "string"},
        "price": {"type": "number", "minimum": 0},
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["sku"],
                "properties": {"sku": {"type": "string", "pattern": "^[A-Z]+$"}},
            },
        },
    },
    "additionalProperties": {"type": "integer"},
}

#: shop.Order is warn on v1 and strict on v2; shop.Off is off; shop.Gone is strict with no
#: schema in the registry and rejects then.
POLICY = """\
version: 1
schemas:
  shop.Order:
    mode: warn
    tracks:
      v2: {mode: strict}
  shop.Off:
    mode: "off"
  shop.Gone:
    mode: strict
    on_registry_error: reject
"""

VALID = {"id": "o-1", "price": 3}
INVALID = {"id": "o-1", "price": -1}


class Clock:
    """A clock the test moves by hand: ``PolicyEngine(..., clock=clock)``."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds
