"""What flows through the consume loop: messages in, pass-on records and dead letters out.

A ``Message`` keeps the bytes it was read as, unchanged, and where it was read from. The loop
turns each one into either a ``Passed`` record (the message with its ``Decision`` added, for the
output) or a ``DeadLetter`` (the original bytes plus why it was dead-lettered, for the DLQ);
``redrive`` sends a dead letter back as a ``Redriven`` record (its original bytes only). Records
are plain data: each transport encodes them its own way when it writes them (a JSONL line in
``transports.jsonl``, Redis entry fields in ``transports.redis_streams``), so a message read
from Redis can be written to a file and the other way round.

The dead-letter context, as a JSONL DLQ writes it (plus ``original``; a Redis DLQ keeps the
entry's fields and adds the context as a ``dlq`` field)::

    {"reason": "rejected", "schema": "telemetry.FeedbackEvent", "track": "v2", "mode": "strict",
     "action": "rejected", "rule": {"file": "policies/telemetry.yaml", "line": 12},
     "policy_checksum": "b41baf136cb1ce65", "bucket": 1234, "canary": 25.0,
     "key_source": "payload",
     "violations": [{"path": "/rating", "keyword": "maximum", "message": "..."}],
     "source": {"kind": "redis", "stream": "events", "id": "1700000000000-0"},
     "time": "2026-11-20T00:29:56.199Z", "exception": "SchemaValidationError",
     "error": "telemetry.FeedbackEvent (v2) rejected in strict mode: 1 violation(s)",
     "original": "{\\"schema\\": ...}"}
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeAlias

from policy_engine.decision import Decision, Violation
from policy_engine.envelope import Envelope, parse_envelope


def _orjson_loads() -> Callable[[bytes], Any] | None:
    """orjson's parser, or ``None`` where orjson is not installed (it is a dependency, but a
    platform without its wheel still works, at the standard parser's pace)."""
    try:
        from orjson import loads
    except ImportError:
        return None
    return loads


_fast_loads = _orjson_loads()

#: Why a message went to the DLQ (the ``reason`` field and the label of ``dlq_messages_total``).
REJECTED = "rejected"
BAD_ENVELOPE = "bad_envelope"
EVALUATION_ERROR = "evaluation_error"
HANDLER_ERROR = "handler_error"
REASONS = (REJECTED, BAD_ENVELOPE, EVALUATION_ERROR, HANDLER_ERROR)

#: The field of a broker entry (``Message.fields``) that holds the envelope
#: (docs/consume.md, "Sources and sinks").
DATA_FIELD = b"data"
#: What a masked value is replaced with in violation messages.
MASK = "<masked>"


@dataclass(frozen=True, slots=True)
class Position:
    """Where a message was read: ``kind`` (``file``, ``stdin``, ``redis``, ``memory``, ...),
    ``stream`` (a file path or a stream name) and ``id`` (a Redis entry id, a line number).

    ``offset`` is the byte offset of a line in a file, else ``None``.
    """

    kind: str
    stream: str
    id: str
    offset: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, as in the DLQ record's ``source``."""
        out: dict[str, Any] = {"kind": self.kind, "stream": self.stream, "id": self.id}
        if self.offset is not None:
            out["offset"] = self.offset
        return out


@dataclass(frozen=True, slots=True)
class Message:
    """One message as read: the envelope bytes, unchanged, and where they came from.

    ``data`` is ``None`` when a Redis entry has no ``data`` field (it goes to the DLQ as a bad
    envelope, with its fields). ``fields`` holds every field of a Redis entry, unchanged;
    ``None`` for lines of a file.
    """

    data: bytes | None
    position: Position
    fields: Mapping[bytes, bytes] | None = None
    #: True when the broker delivered it before (read again after a crash, or claimed).
    redelivered: bool = False
    #: Why the source could not read it as bytes (a line over the size limit), else ``None``.
    problem: str | None = None


@dataclass(slots=True)
class Passed:
    """A message passed on: the envelope unchanged, with its Decision added."""

    message: Message
    decision: Decision


@dataclass(slots=True)
class DeadLetter:
    """A message for the dead-letter queue: the original bytes and why (docs/consume.md, "The
    dead-letter record").

    ``context`` is the JSON-ready record without the original (see the module docstring);
    ``schema`` is the schema name for metrics (``None`` when the envelope had none).
    """

    message: Message
    reason: str
    context: dict[str, Any]
    schema: str | None = None


@dataclass(frozen=True, slots=True)
class Redriven:
    """A dead letter sent back by ``redrive``: the original bytes (and a broker entry's
    original fields), unchanged, with nothing added."""

    message: Message


#: Anything a sink writes. A closed union, so a transport's encoder can check it handles each.
Record: TypeAlias = Passed | DeadLetter | Redriven


def format_time(epoch: float) -> str:
    """RFC 3339 UTC with milliseconds: ``2026-11-20T00:29:56.199Z``."""
    stamp = datetime.fromtimestamp(epoch, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def exception_name(exc: BaseException | type[BaseException]) -> str:
    """``SchemaValidationError`` for the engine's and Python's own classes, else
    ``module.QualName`` (an application's exception is found by its full name)."""
    cls = exc if isinstance(exc, type) else type(exc)
    module = cls.__module__
    if module == "builtins" or module.startswith("policy_engine."):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


# ---------------------------------------------------------------------------- envelopes

#: Every digit made ``0``: a message's digits ``translate``-d so that two substring searches
#: find the integers orjson would read as floats (past 64 bits), where ``json`` keeps them exact:
#: 20 digits or more, or a minus and 19 (a regular expression costs five times as much).
_ZERO_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_UNSIGNED_TOO_LONG = b"0" * 20
_SIGNED_TOO_LONG = b"-" + b"0" * 19


def _may_hold_a_long_integer(data: bytes) -> bool:
    """Whether ``data`` has a digit run orjson might read inexactly (strings are not told
    apart from numbers: a long digit string merely takes the standard parser)."""
    digits = data.translate(_ZERO_DIGITS)
    return _UNSIGNED_TOO_LONG in digits or _SIGNED_TOO_LONG in digits


def read_envelope(data: bytes) -> Envelope:
    """The envelope in a message's bytes: what ``envelope.parse_envelope`` returns, and
    ``EnvelopeError`` exactly where it raises, at a third of the cost.

    A usable envelope is parsed with orjson (about 2.5 us for the example feed's messages
    against 7 for ``json.loads``; the loop parses every message). Anything else (not JSON to
    orjson, not an envelope, a long integer orjson would read as a float, a ``NaN``, a BOM, a
    lone surrogate, nesting past orjson's limit) goes to ``parse_envelope``, the one authority
    on what a bad envelope is and on the words that say why. Where orjson answers, it answers
    as ``json`` does: same values and types, the last of duplicate keys.
    """
    if _fast_loads is not None and not _may_hold_a_long_integer(data):
        try:
            value = _fast_loads(data)
        except ValueError:  # orjson.JSONDecodeError: the standard parser says why
            value = None
        if type(value) is dict:
            schema = value.get("schema")
            track = value.get("track")
            key = value.get("key")
            if (
                type(schema) is str
                and schema
                and "payload" in value
                and (track is None or (type(track) is str and track))
                and type(key) is not dict
                and type(key) is not list
            ):
                return Envelope(schema, value["payload"], track, key)
    return parse_envelope(data)


# ---------------------------------------------------------------------------- masking


def value_at(payload: Any, pointer: str) -> tuple[bool, Any]:
    """``(True, value)`` at JSON Pointer ``pointer`` in ``payload``; ``(False, None)`` if absent."""
    if pointer == "":
        return True, payload
    node = payload
    for raw in pointer.lstrip("/").split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            if token not in node:
                return False, None
            node = node[token]
        elif isinstance(node, list) and token.isdigit():
            index = int(token)
            if index >= len(node):
                return False, None
            node = node[index]
        else:
            return False, None
    return True, node


def _renderings(value: Any) -> list[str]:
    """How validators quote a value in a message: JSON (jsonschema-rs), Python repr
    (jsonschema), longest first so a longer form is masked before a part of it."""
    forms: set[str] = set()
    for render in (
        lambda v: json.dumps(v, ensure_ascii=False),
        json.dumps,
        repr,
        lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":")),
    ):
        try:
            forms.add(render(value))
        except (TypeError, ValueError):
            continue
    return sorted((f for f in forms if f), key=len, reverse=True)


def mask_violation(violation: Violation, payload: Any) -> Violation:
    """``violation`` with the offending value replaced by ``<masked>`` in its message.

    The value is the one at the violation's path; property names and schema constants (a
    pattern, an enum's candidates) are not payload values and stay readable.
    """
    found, value = value_at(payload, violation.path)
    if not found or isinstance(value, bool) or value is None:
        return violation  # true/false/null say nothing private and appear in schema words too
    message = violation.message
    for form in _renderings(value):
        if form in message:
            message = message.replace(form, MASK)
    if message == violation.message:
        return violation
    return Violation(violation.path, violation.keyword, message)


def mask_violations(violations: Sequence[Violation], payload: Any) -> tuple[Violation, ...]:
    """Every violation masked with ``mask_violation``."""
    return tuple(mask_violation(v, payload) for v in violations)


# ---------------------------------------------------------------------------- building records


def rejection_context(
    decision: Decision,
    position: Position,
    *,
    now: float,
    payload: Any = None,
    mask_values: bool = False,
) -> dict[str, Any]:
    """The DLQ context of a payload strict mode rejected."""
    violations: Sequence[Violation] = decision.violations
    if mask_values:
        violations = mask_violations(violations, payload)
    context = _decision_context(REJECTED, decision, violations)
    context.update(
        source=position.to_dict(),
        time=format_time(now),
        exception="SchemaValidationError",
        error=(
            f"{decision.schema} ({decision.track}) rejected in {decision.mode.value} mode: "
            f"{len(decision.violations)} violation(s)"
        ),
    )
    return context


def _decision_context(
    reason: str, decision: Decision, violations: Sequence[Violation]
) -> dict[str, Any]:
    rule = decision.rule
    return {
        "reason": reason,
        "schema": decision.schema,
        "track": decision.track,
        "mode": decision.mode.value,
        "action": decision.action.value,
        "rule": None if rule is None else rule.to_dict(),
        "policy_checksum": decision.policy_checksum,
        "bucket": decision.bucket,
        "canary": decision.canary,
        "key_source": decision.key_source,
        "violations": [v.to_dict() for v in violations],
    }


def error_context(
    reason: str,
    error: BaseException,
    position: Position,
    *,
    now: float,
    schema: str | None = None,
    track: str | None = None,
    decision: Decision | None = None,
    attempts: int | None = None,
    mask_values: bool = False,
    payload: Any = None,
) -> dict[str, Any]:
    """The DLQ context of a message that failed for ``reason`` with ``error``: a bad envelope,
    an evaluation that raised, or a handler that kept failing."""
    if decision is not None:
        violations: Sequence[Violation] = decision.violations
        if mask_values:
            violations = mask_violations(violations, payload)
        context = _decision_context(reason, decision, violations)
    else:
        context = {
            "reason": reason,
            "schema": schema,
            "track": track,
            "mode": None,
            "action": None,
            "rule": None,
            "policy_checksum": None,
            "violations": [],
        }
    context.update(
        source=position.to_dict(),
        time=format_time(now),
        exception=exception_name(error),
        error=str(error) if not mask_values or reason == BAD_ENVELOPE else type(error).__name__,
    )
    if attempts is not None:
        context["attempts"] = attempts
    return context


# ---------------------------------------------------------------------------- reading DLQ records


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """A dead letter read back from a DLQ (for ``redrive``).

    ``data`` is the original envelope bytes; ``fields`` the original broker entry's fields
    (without the DLQ's own), or ``None`` for a message that came from a file; ``id`` is where it
    sits in the DLQ (a line number or an entry id). Each transport's ``DeadLetterStore`` decodes
    its own records into this.
    """

    id: str
    data: bytes | None
    fields: dict[bytes, bytes] | None
    context: dict[str, Any]

    def redriven(self, dlq: str) -> Redriven:
        """The record that publishes this dead letter again, read from the DLQ ``dlq``."""
        return Redriven(Message(self.data, Position("dlq", dlq, self.id), self.fields))


@dataclass(frozen=True, slots=True)
class UnreadableDeadLetter:
    """A record in a DLQ that is not a dead letter (a line that is not one): kept, counted."""

    id: str
    error: str


#: A clock: seconds since the epoch.
Clock = Callable[[], float]
default_clock: Clock = time.time
