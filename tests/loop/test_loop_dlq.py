"""The dead-letter record of SPEC §10: original bytes unchanged, context, masking, read back."""

from __future__ import annotations

import json

from loop_support import envelope

from policy_engine import Violation
from policy_engine.loop import (
    ConsumeLoop,
    MemorySink,
    MemorySource,
    Message,
    Position,
    mask_violations,
)
from policy_engine.loop.transports.jsonl import encode_line, parse_dead_letter_line
from policy_engine.loop.transports.redis_streams import (
    DLQ_FIELD,
    encode_fields,
    parse_dead_letter_entry,
)

BAD_ORDER = envelope(
    "shop.Order", {"id": "o-7", "price": -12.5, "email": "jane.doe@", "seq": 7}, key="k-7"
)


def _dead(engine, items, **options):
    dlq = MemorySink()
    ConsumeLoop(engine, MemorySource(items), dlq=dlq, clock=lambda: 1795564800.25, **options).run()
    return dlq.records


def test_rejection_record_has_the_full_context(engine, policy_dir):
    """A rejected payload's record names schema, track, mode, rule, checksum, violations,
    position, time and exception class, and keeps the original bytes."""
    (letter,) = _dead(engine, [BAD_ORDER])
    record = json.loads(encode_line(letter))
    assert record["reason"] == "rejected"
    assert record["schema"] == "shop.Order"
    assert record["track"] == "v1"
    assert record["mode"] == "strict"
    assert record["action"] == "rejected"
    assert record["rule"] == {"file": str(policy_dir / "rules.yaml"), "line": 3}
    assert record["policy_checksum"] == engine.checksum
    assert record["source"] == {"kind": "memory", "stream": "memory", "id": "1"}
    assert record["time"] == "2026-11-25T00:00:00.250Z"
    assert record["exception"] == "SchemaValidationError"
    assert record["key_source"] == "argument"
    assert 0 <= record["bucket"] <= 9999
    assert {(v["path"], v["keyword"]) for v in record["violations"]} == {
        ("/price", "minimum"),
        ("/email", "format"),
    }
    assert record["original"].encode() == BAD_ORDER


def test_violation_messages_quote_values_unless_masked(engine):
    """Without masking a message quotes the bad value; with masking the value is replaced."""
    (plain,) = _dead(engine, [BAD_ORDER])
    (masked,) = _dead(engine, [BAD_ORDER], mask_values=True)
    plain_text = " ".join(v["message"] for v in plain.context["violations"])
    masked_text = " ".join(v["message"] for v in masked.context["violations"])
    assert "-12.5" in plain_text
    assert "jane.doe@" in plain_text
    assert "-12.5" not in masked_text
    assert "jane.doe@" not in masked_text
    assert masked_text.count("<masked>") == 2
    assert json.loads(encode_line(masked))["original"].encode() == BAD_ORDER


def test_masking_keeps_schema_words_readable():
    """Masking replaces the payload's value only: the schema's pattern and bounds stay."""
    payload = {"currency": "usd", "size": 0}
    violations = [
        Violation("/currency", "pattern", '"usd" does not match "^[A-Z]{3}$"'),
        Violation("/size", "minimum", "0 is less than the minimum of 1"),
        Violation("", "required", '"id" is a required property'),
    ]
    masked = mask_violations(violations, payload)
    assert [v.message for v in masked] == [
        '<masked> does not match "^[A-Z]{3}$"',
        "<masked> is less than the minimum of 1",
        '"id" is a required property',
    ]


def test_bad_envelope_record_keeps_the_line(engine):
    """A line that is not an envelope is dead-lettered whole, with the parse error."""
    (letter,) = _dead(engine, [b'{"schema": 5, "payload": {}}'])
    record = json.loads(encode_line(letter))
    assert record["reason"] == "bad_envelope"
    assert record["exception"] == "EnvelopeError"
    assert "schema" in record["error"]
    assert record["original"] == '{"schema": 5, "payload": {}}'
    assert record["schema"] is None


def test_bytes_that_are_not_utf8_survive_as_base64(engine):
    """Original bytes that are not UTF-8 are kept exactly, base64-encoded, and read back."""
    raw = b'{"schema": "shop.Order", "payload": "\xff\xfe"}'
    (letter,) = _dead(engine, [raw])
    record = json.loads(encode_line(letter))
    assert "original" not in record
    stored = parse_dead_letter_line(encode_line(letter), "1")
    assert stored.data == raw


def test_redis_fields_carry_the_entry_and_the_context(engine):
    """For a Redis DLQ the entry's own fields are kept and the context goes in a dlq field."""
    fields = {b"data": BAD_ORDER, b"trace": b"abc-123"}
    message = Message(BAD_ORDER, Position("redis", "orders", "1-0"), fields)
    (letter,) = _dead(engine, [message])
    entry = encode_fields(letter)
    assert entry[b"data"] == BAD_ORDER
    assert entry[b"trace"] == b"abc-123"
    context = json.loads(entry[DLQ_FIELD])
    assert context["source"] == {"kind": "redis", "stream": "orders", "id": "1-0"}
    stored = parse_dead_letter_entry("9-0", entry)
    assert stored.fields == fields
    assert stored.context["reason"] == "rejected"


def test_jsonl_record_of_a_redis_message_keeps_its_other_fields(engine):
    """A Redis message written to a JSONL DLQ keeps its other fields, and they read back."""
    fields = {b"data": BAD_ORDER, b"trace": b"abc-123"}
    message = Message(BAD_ORDER, Position("redis", "orders", "1-0"), fields)
    (letter,) = _dead(engine, [message])
    stored = parse_dead_letter_line(encode_line(letter), "1")
    assert stored.fields == fields
    assert stored.data == BAD_ORDER


def test_entry_without_data_is_a_bad_envelope(engine):
    """A Redis entry with no data field goes to the DLQ with all its fields."""
    fields = {b"payload": b"{}"}
    message = Message(None, Position("redis", "orders", "2-0"), fields)
    (letter,) = _dead(engine, [message])
    assert letter.reason == "bad_envelope"
    assert "no 'data' field" in letter.context["error"]
    assert encode_fields(letter)[b"payload"] == b"{}"
