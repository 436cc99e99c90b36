"""The JSON pieces every transport writes the same way: compact JSON, an envelope with its
decision spliced in, and bytes that may not be UTF-8 carried in JSON text.

Each transport decides how a record is laid out on its wire (a JSONL line, Redis entry fields);
these helpers make sure the parts they share come out byte for byte alike.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from policy_engine.decision import Decision

_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def compact_json(value: Any) -> bytes:
    """``value`` as UTF-8 JSON without spaces (non-ASCII kept as is, not ``\\u`` escaped)."""
    return _compact(value).encode()


def decision_json(decision: Decision) -> bytes:
    """The Decision's JSON form, compact: ``Decision.to_json``, which writes the bytes
    ``compact_json(decision.to_dict())`` would, encoded once per outcome rather than per
    message."""
    return decision.to_json()


def envelope_with_decision(data: bytes, decision: Decision) -> bytes:
    """The envelope ``data`` with a ``"decision"`` object added, as one JSON object.

    The original bytes are kept as they are and the field is spliced in before the closing
    brace (downstream sees the producer's bytes, and no re-encoding is paid for); only an
    envelope that already has a ``decision`` field is parsed and re-encoded, so it is replaced
    rather than duplicated.
    """
    data = data.strip()
    if data[:1] == b"{" and data[-1:] == b"}" and b'"decision"' not in data:
        return data[:-1] + b',"decision":' + decision_json(decision) + b"}"
    envelope = json.loads(data)
    envelope["decision"] = decision.to_dict()
    return compact_json(envelope)


def text_or_base64(name: str, value: bytes) -> dict[str, str]:
    """``{name: text}`` for UTF-8 bytes, else ``{name + "_base64": ...}``: JSON has no bytes."""
    try:
        return {name: value.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{name}_base64": base64.b64encode(value).decode("ascii")}


def field_value(value: bytes) -> str | dict[str, str]:
    """A broker field's bytes in JSON: the text, or ``{"base64": ...}`` when not UTF-8."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(value).decode("ascii")}


def field_bytes(value: Any) -> bytes:
    """The bytes ``field_value`` wrote; ``ValueError`` for anything else."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and isinstance(value.get("base64"), str):
        return base64.b64decode(value["base64"], validate=True)
    raise ValueError("a field value is a string or {base64: ...}")
