"""The loop's fast paths write and read exactly what the plain ones do: a Decision's JSON
(``Decision.to_json``) against ``to_dict`` encoded by ``json``, and ``read_envelope`` against
``envelope.parse_envelope``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loop_support import ORDER

from policy_engine import Mode, PolicyEngine, Settings
from policy_engine.envelope import Envelope, EnvelopeError, parse_envelope
from policy_engine.loop.records import read_envelope
from policy_engine.loop.transports.redis_streams import encode_fields, entry_arguments
from policy_engine.loop.transports.wire import compact_json, decision_json, envelope_with_decision

ROOT = Path(__file__).resolve().parents[2]

#: Text a JSON encoder must escape, or must keep as it is (non-ASCII, U+2028).
ODD = 'quote " backslash \\ tab \t newline \n nul \x00 bell \x07 é ☃ \u2028 \U0001f600 /'


def _standard(decision) -> bytes:
    """What the loop wrote before ``to_json``: ``to_dict`` encoded by ``json``."""
    return compact_json(decision.to_dict())


def _feed_engine(**settings) -> PolicyEngine:
    return PolicyEngine(
        settings=Settings(
            policy_paths=(str(ROOT / "policies"),),
            policy_paths_explicit=True,
            registry_url=str(ROOT / "schemas"),
            policy_watch=False,
            **settings,
        ),
        metrics=False,
    )


def _feed_decisions(engine: PolicyEngine, passes: int = 1) -> list:
    """The decisions of ``passes`` runs through the example feed."""
    envelopes = []
    for line in (ROOT / "examples" / "feed.jsonl").read_bytes().splitlines():
        try:
            envelopes.append(parse_envelope(line))
        except EnvelopeError:
            continue
    return [
        engine.evaluate(envelope.schema, envelope.payload, envelope.key, envelope.track)
        for _ in range(passes)
        for envelope in envelopes
    ]


@pytest.mark.parametrize(
    ("force", "note"), [(None, "guardrail tripped"), (Mode.WARN, "capped by POLICY_FORCE_MODE")]
)
def test_to_json_writes_the_feeds_decisions_as_json_does(force, note):
    """Every decision of four passes through the example feed (rules, both sides of the
    canaries, violations, a tripped guardrail's note or a force cap's) encodes to the same bytes
    as its to_dict through json, twice (the second time from the kept pieces)."""
    with _feed_engine(force_mode=force) as engine:
        decisions = _feed_decisions(engine, passes=4)
    assert any(note in decision.reason for decision in decisions)
    for decision in decisions:
        assert decision.to_json() == _standard(decision)
        assert decision.to_json() == _standard(decision)


def test_to_json_escapes_violation_messages_and_names_as_json_does(tmp_path):
    """Payload values quoted in violation messages and a policy path full of characters JSON
    escapes (quotes, backslashes, control characters) or keeps (non-ASCII, U+2028) come out as
    json writes them."""
    schemas, policies = tmp_path / "schemas", tmp_path / 'pol "i\\cies" é \u2028'
    name = "shop.Odd"
    (schemas / name).mkdir(parents=True)
    (schemas / name / "v1.json").write_text(
        json.dumps({**ORDER, "properties": {**ORDER["properties"], "id": {"enum": ["a"]}}})
    )
    policies.mkdir()
    (policies / "rules.yaml").write_text(
        f"version: 1\nschemas:\n  {json.dumps(name)}:\n    mode: warn\n", encoding="utf-8"
    )
    engine = PolicyEngine(
        policies=str(policies),
        registry=str(schemas),
        settings=Settings(policy_watch=False),
        metrics=False,
    )
    with engine:
        invalid = engine.evaluate(name, {"id": ODD, "price": -1}, key=ODD)
        unruled = engine.evaluate("other.Schema", {"x": 1})
    assert any('\\"' in v.message and "\u2028" in v.message for v in invalid.violations)
    assert invalid.rule is not None
    assert unruled.rule is None
    for decision in (invalid, unruled):
        assert decision.to_json() == _standard(decision)


def test_both_transports_write_the_decision_json_writes():
    """A Redis entry's decision field and a JSONL line's decision object are the standard
    encoding of to_dict, the producer's bytes kept around it; a field list for XADD is the
    entry's fields in order with the decision last."""
    from policy_engine.loop.records import Message, Passed, Position

    with _feed_engine() as engine:
        decision = engine.evaluate("telemetry.FeedbackEvent", {"rating": 9}, key="k", track="v2")
    data = b'{"schema":"telemetry.FeedbackEvent","payload":{"rating":9}}'
    message = Message(data, Position("redis", "s", "1-0"), {b"data": data, b"trace": b"t"})
    record = Passed(message, decision)
    assert decision_json(decision) == _standard(decision)
    assert envelope_with_decision(data, decision) == (
        data[:-1] + b',"decision":' + _standard(decision) + b"}"
    )
    fields = {b"data": data, b"trace": b"t", b"decision": _standard(decision)}
    assert encode_fields(record) == fields
    assert entry_arguments(record) == [
        b"data",
        data,
        b"trace",
        b"t",
        b"decision",
        fields[b"decision"],
    ]


def test_an_entry_with_a_decision_field_gets_it_replaced_in_place():
    """An entry that already has a decision field (a stream consumed twice) keeps its field
    order, with the new decision in the old one's place: not a second decision field."""
    from policy_engine.loop.records import Message, Passed, Position

    with _feed_engine() as engine:
        decision = engine.evaluate("telemetry.FeedbackEvent", {}, key="k", track="v1")
    fields = {b"decision": b"old", b"data": b"{}"}
    record = Passed(Message(b"{}", Position("redis", "s", "1-0"), fields), decision)
    assert entry_arguments(record) == [b"decision", _standard(decision), b"data", b"{}"]


# ---------------------------------------------------------------------------------------------
# read_envelope
# ---------------------------------------------------------------------------------------------


def _outcome(parse, data: bytes) -> tuple[str, str]:
    """What a parser makes of ``data``, types included (1 and 1.0 differ; so do NaN's)."""
    try:
        envelope = parse(data)
    except EnvelopeError as exc:
        return "error", str(exc)
    assert isinstance(envelope, Envelope)
    return "envelope", repr((envelope.schema, envelope.payload, envelope.track, envelope.key))


CASES = [
    b'{"schema":"s","payload":{"a":1}}',
    b'{"schema":"s","track":"v2","key":"k-1","payload":[1,2.5,-0.0,1e2,"x",null,true]}',
    b'{"schema":"s","payload":{"big":123456789012345678901234567890}}',
    b'{"schema":"s","payload":{"min":-9223372036854775809,"max":18446744073709551616}}',
    b'{"schema":"s","payload":{"ns":1700000000000000000,"neg":-922337203685477580}}',
    b'{"schema":"s","payload":{"id":"12345678901234567890123"}}',
    b'{"schema":"s","payload":{"a":1,"a":2},"payload":{"b":3}}',
    b'{"schema":"s","payload":{"x":1e400}}',
    b'{"schema":"s","payload":{"x":NaN}}',
    b'{"schema":"s","payload":{"x":-Infinity}}',
    b'\xef\xbb\xbf{"schema":"s","payload":{}}',
    b'{"schema":"s","payload":"\\ud800"}',
    b'{"schema":"s","payload":"\xed\xa0\x80"}',
    b'{"schema":"s","payload":"\xff"}',
    '{"schema":"sé","payload":"☃ \u2028"}'.encode(),
    b'{"schema":"s","payload":"a\tb"}',
    b"  \n" + b'{"schema":"s","payload":{}}' + b"\n ",
    b'{"schema":"s","payload":' + b"[" * 2000 + b"]" * 2000 + b"}",
    b'{"schema":"s","payload":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"schema":"","payload":{}}',
    b'{"schema":1,"payload":{}}',
    b'{"schema":"s"}',
    b'{"schema":"s","payload":{},"track":""}',
    b'{"schema":"s","payload":{},"track":2}',
    b'{"schema":"s","payload":{},"track":null}',
    b'{"schema":"s","payload":{},"key":{"a":1}}',
    b'{"schema":"s","payload":{},"key":[1]}',
    b'{"schema":"s","payload":{},"key":7.5}',
    b'["schema","payload"]',
    b"not json",
    b"",
    b'{"schema":"s","payload":{}} trailing',
]


@pytest.mark.parametrize("data", CASES)
def test_read_envelope_answers_as_parse_envelope(data):
    """Valid envelopes (long integers, duplicate keys, whitespace, non-ASCII, deep nesting)
    and bad ones (NaN, a BOM, lone surrogates, bytes that are not UTF-8, wrong fields) give the
    same envelope, or the same error message, as parse_envelope."""
    assert _outcome(read_envelope, data) == _outcome(parse_envelope, data)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    payload=JSON,
    schema=st.one_of(st.text(), st.integers()),
    track=st.one_of(st.none(), st.text(), st.integers()),
    key=JSON,
    order=st.permutations(["schema", "payload", "track", "key"]),
    ascii_only=st.booleans(),
)
def test_read_envelope_agrees_with_parse_envelope_on_any_json(
    payload, schema, track, key, order, ascii_only
):
    """For any JSON envelope, however its fields are ordered and whatever they hold, both
    parsers give the same envelope (same types and values) or the same error."""
    fields = {"schema": schema, "payload": payload, "track": track, "key": key}
    data = json.dumps({name: fields[name] for name in order}, ensure_ascii=ascii_only)
    encoded = data.encode("utf-8", "surrogatepass")
    assert _outcome(read_envelope, encoded) == _outcome(parse_envelope, encoded)


def test_read_envelope_works_without_orjson():
    """Where orjson cannot be imported, read_envelope is parse_envelope."""
    code = (
        "import sys; sys.modules['orjson'] = None\n"
        "from policy_engine.loop.records import read_envelope\n"
        'print(read_envelope(b\'{"schema":"s","payload":[1.0, 2]}\'))\n'
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "Envelope(schema='s', payload=[1.0, 2], track=None, key=None)"


def test_a_sink_with_maxlen_trims_its_stream_as_xadd_would(redis_client, streams):
    """?maxlen=N sends XADD stream MAXLEN ~ N * (what redis-py's xadd sends with
    approximate=True): a thousand records leave the stream trimmed near N, never under it."""
    from policy_engine.loop.records import Message, Position, Redriven
    from policy_engine.loop.transports.redis_streams import RedisStreamSink, parse_redis_url

    name = streams("trimmed")
    sink = RedisStreamSink(parse_redis_url(f"redis://127.0.0.1:6379/0?stream={name}&maxlen=10"))
    try:
        assert sink.xadd_head == ("XADD", name, "MAXLEN", "~", "10", "*")
        records = [
            Redriven(Message(b"{}", Position("memory", "m", str(i)), {b"data": b"%d" % i}))
            for i in range(1000)
        ]
        sink.write(records)
    finally:
        sink.close()
    length = redis_client.xlen(name)
    assert 10 <= length < 1000
    assert redis_client.xrevrange(name, count=1)[0][1] == {b"data": b"999"}
