"""Canary bucketing: which keys fall inside a canary, the same everywhere (docs/bucketing.md).

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
    """The canary bucket of ``key``, 0..9999, by the formula of docs/bucketing.md.

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
    that JSON cannot write (too deep, a huge integer, not JSON data) is hashed through
    ``structural_text``: still the same for the same payload, never an exception.
    """
    try:
        text = canonical_json(payload)
    except (TypeError, ValueError, RecursionError):
        text = structural_text(payload)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def canary_threshold(canary: float) -> int:
    """The number of buckets inside a canary of ``canary`` percent (0..10000)."""
    return round(canary * 100)


def key_text(value: Any) -> str:
    """A key as text: strings as they are, anything else as compact JSON (``42`` -> ``"42"``).

    A value JSON cannot write in Python (an integer of more than 4 300 digits, containers nested
    deeper than the recursion limit, a set) gets ``structural_text`` instead: deterministic, so
    it still lands in the same bucket everywhere, and never an exception.
    """
    if isinstance(value, str):  # a str subclass (StrEnum) is a string key, not JSON text
        return str.__str__(value)
    try:
        return canonical_json(value)
    except (TypeError, ValueError, RecursionError):
        return structural_text(value)


def structural_text(value: Any) -> str:
    """A deterministic text for any value, built without recursion: ``~`` and the sha256 of an
    iterative walk where integers are hexadecimal (no digit limit), mappings sorted by key, and
    other objects their type name. For keys and payloads JSON cannot write."""
    digest = hashlib.sha256()
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bool) or item is None:
            digest.update(f"c{item};".encode())
        elif isinstance(item, int):
            digest.update(f"i{item:x};".encode())
        elif isinstance(item, float):
            digest.update(f"f{item.hex()};".encode())
        elif isinstance(item, str):
            digest.update(b"s" + item.encode("utf-8", "surrogatepass") + b";")
        elif isinstance(item, dict):
            digest.update(f"d{len(item)};".encode())
            try:
                pairs = sorted(item.items(), key=lambda pair: str(pair[0]))
            except (TypeError, ValueError):
                pairs = list(item.items())
            for key, child in reversed(pairs):
                stack.append(child)
                stack.append(key if isinstance(key, str) else str(type(key).__name__))
        elif isinstance(item, list | tuple):
            digest.update(f"l{len(item)};".encode())
            stack.extend(reversed(item))
        else:
            digest.update(f"o{type(item).__name__};".encode())
    return "~" + digest.hexdigest()[:32]


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
