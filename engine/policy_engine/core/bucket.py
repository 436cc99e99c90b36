"""Canary bucketing (SPEC §3.5): which keys fall inside a canary, the same everywhere.

The formula is deliberately simple so that any language can reproduce it; ``docs/bucketing.md``
publishes test vectors and ``tests/policy/test_bucket.py`` checks them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

import mmh3

#: Buckets per canary: a canary of ``c`` percent covers buckets ``0 .. round(c * 100) - 1``.
BUCKETS: Final = 10_000


def bucket_for(salt_prefix: str, key: str) -> int:
    """The canary bucket of ``key``, 0..9999 (SPEC §3.5).

    ``salt_prefix`` is the rule's salt followed by ``":"``. The bucket is
    ``(murmur3_x86_32(utf8(salt + ":" + key), seed=0) * 10000) >> 32``, so it is the same in every
    process, host and language; a key is inside a canary of ``c`` percent iff
    ``bucket < round(c * 100)``.

    >>> bucket_for("telemetry.FeedbackEvent:v2:", "p-42")
    4321
    """
    text = salt_prefix + key
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (JSON "\ud800") cannot be UTF-8; hash its surrogatepass bytes instead.
        # Never hand mmh3 such a str itself: mmh3 5.x crashes the process (segfault) on it.
        data = text.encode("utf-8", "surrogatepass")
    return (mmh3.hash(data, 0, False) * BUCKETS) >> 32


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys: the form payload hashes and non-string keys are taken from."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def payload_hash_key(payload: Any) -> str:
    """The key of a payload that has none: sha256 of its canonical JSON, as 32 hex digits.

    A redelivered message has the same canonical JSON, so it lands in the same bucket. A payload
    that cannot be serialised (too deep, not JSON data) hashes its type name instead: it still
    gets a decision, just not a spread-out one.
    """
    try:
        text = canonical_json(payload)
    except (TypeError, ValueError, RecursionError):
        text = type(payload).__name__
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def canary_threshold(canary: float) -> int:
    """The number of buckets inside a canary of ``canary`` percent (0..10000)."""
    return round(canary * 100)


def key_text(value: Any) -> str:
    """A key as text: strings as they are, anything else as compact JSON (``42`` -> ``"42"``)."""
    if isinstance(value, str):  # a str subclass (StrEnum) is a string key, not JSON text
        return str.__str__(value)
    try:
        return canonical_json(value)
    except (TypeError, ValueError, RecursionError):
        return str(value)


def key_from_payload(payload: Any, path: tuple[str, ...]) -> str | None:
    """The key at the dotted ``path`` in ``payload`` as text; ``None`` if absent or null."""
    value = payload
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
        if value is None:
            return None
    return key_text(value)
