"""Envelopes: the JSONL line format of ``replay``, ``consume`` and ``plan --sample`` (SPEC §6).

::

    {"schema": "telemetry.FeedbackEvent", "track": "v2", "key": "p-42", "payload": {...}}

``schema`` and ``payload`` are required; ``track`` and ``key`` are optional; other fields are
kept but ignored, so producers can add metadata without breaking the reader.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

#: A line longer than this is a bad line (read past, never held in memory whole).
MAX_LINE_BYTES = 64 * 1024 * 1024


class EnvelopeError(ValueError):
    """A line that is not a usable envelope; the message says why, in words."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message to evaluate."""

    schema: str
    payload: Any
    track: str | None = None
    key: Any = None


def _not_json(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON does not, and validators disagree on them.
    raise ValueError(f"{name} is not a JSON value")


def parse_envelope(line: bytes | str) -> Envelope:
    """The envelope in one line of JSON; ``EnvelopeError`` says what is wrong with a bad one."""
    try:
        data = json.loads(line, parse_constant=_not_json)
    except RecursionError:
        raise EnvelopeError("JSON nests too deeply") from None
    except ValueError as exc:
        raise EnvelopeError(f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise EnvelopeError(f"an envelope is a JSON object, got {type(data).__name__}")
    schema = data.get("schema")
    if not isinstance(schema, str) or not schema:
        raise EnvelopeError('"schema" is missing or not a non-empty string')
    if "payload" not in data:
        raise EnvelopeError('"payload" is missing')
    track = data.get("track")
    if track is not None and (not isinstance(track, str) or not track):
        raise EnvelopeError('"track" must be a non-empty string when present')
    key = data.get("key")
    if isinstance(key, dict | list):
        raise EnvelopeError('"key" must be a string or number when present')
    return Envelope(schema=schema, payload=data["payload"], track=track, key=key)


def read_lines(
    stream: IO[bytes], limit: int = MAX_LINE_BYTES
) -> Iterator[tuple[int, bytes | None]]:
    """``(line number, line)`` for each line; ``None`` for a line longer than ``limit`` bytes.

    Blank lines are skipped (they carry nothing) but still counted in the numbering.
    """
    number = 0
    while True:
        chunk = stream.readline(limit + 1)
        if not chunk:
            return
        number += 1
        if len(chunk) > limit and not chunk.endswith(b"\n"):
            while chunk and not chunk.endswith(b"\n"):  # skip the rest of the long line
                chunk = stream.readline(limit + 1)
            yield number, None
            continue
        if chunk.strip():
            yield number, chunk
