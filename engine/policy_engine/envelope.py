"""Envelopes: the JSONL line format of ``replay``, ``consume`` and ``plan --sample``.

::

    {"schema": "telemetry.FeedbackEvent", "track": "v2", "key": "p-42", "payload": {...}}

``schema`` and ``payload`` are required; ``track`` and ``key`` are optional; other fields are
kept but ignored, so producers can add metadata without breaking the reader.

Every envelope and every payload file (``validate``) is parsed by ``load_json``: strict JSON, so
``NaN``, ``Infinity`` and ``-Infinity``, which Python's ``json`` accepts but JSON does not have,
make the input "not JSON", with the line and column where they stand. One rule for ``validate``
(exit 2), ``replay`` (a bad line) and ``consume`` (a ``bad_envelope`` dead letter).
"""

from __future__ import annotations

import json
import re
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


#: A JSON string (skipped) or a constant Python's json accepts and JSON does not (group 1).
_STRING_OR_CONSTANT = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|(-?Infinity|NaN)', re.DOTALL)


class _NotJsonConstantError(Exception):
    """Raised by the parser's ``parse_constant`` hook; ``load_json`` turns it into a located
    ``json.JSONDecodeError``."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _refuse_constant(name: str) -> Any:
    raise _NotJsonConstantError(name)


def load_json(data: bytes | str) -> Any:
    """The JSON value in ``data``, refusing ``NaN``, ``Infinity`` and ``-Infinity``.

    Python's ``json`` accepts those three, JSON (RFC 8259) does not, and validators disagree on
    them (a NaN is neither below nor above a ``minimum``), so they are refused like any other
    non-JSON text: ``json.JSONDecodeError`` (a ``ValueError``) saying where, e.g.
    ``NaN is not a JSON value: line 1 column 8 (char 7)``.
    """
    try:
        return json.loads(data, parse_constant=_refuse_constant)
    except _NotJsonConstantError as exc:
        text = data if isinstance(data, str) else data.decode(json.detect_encoding(data))
        raise json.JSONDecodeError(
            f"{exc.name} is not a JSON value",
            text,
            _constant_position(text, exc.name),
        ) from None


def _constant_position(text: str, name: str) -> int:
    """Where the first ``name`` outside a string stands: the one the parser stopped at, as
    parsing goes left to right and stops at the first."""
    for match in _STRING_OR_CONSTANT.finditer(text):
        if match.group(1) == name:
            return match.start(1)
    return 0


def parse_envelope(line: bytes | str) -> Envelope:
    """The envelope in one line of JSON; ``EnvelopeError`` says what is wrong with a bad one."""
    try:
        data = load_json(line)
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
