"""The scheme -> transport table: every endpoint that consume and redrive open goes through it."""

from __future__ import annotations

import io
import json

import pytest
from loop_support import RELAXED, order

from policy_engine import ConfigError
from policy_engine.cli import main
from policy_engine.loop import (
    TRANSPORTS,
    ConsumeLoop,
    DeadLetter,
    MemoryTransport,
    Message,
    Passed,
    Position,
    Redriven,
    Transport,
    default_dlq,
    describe_endpoint,
    open_async_message_source,
    open_message_sink,
    open_message_source,
    redrive_dead_letters,
    transport_for,
)
from policy_engine.loop.endpoints import scheme_of
from policy_engine.loop.transports import jsonl, redis_streams


@pytest.fixture
def memq(monkeypatch: pytest.MonkeyPatch) -> MemoryTransport:
    """A MemoryTransport registered under ``memq://`` for this test only."""
    transport = MemoryTransport("memq")
    monkeypatch.setitem(TRANSPORTS, "memq", transport)  # the one line a new transport needs
    return transport


def _cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(args, stdin=io.BytesIO(), stdout=out, stderr=err, environ={})
    return code, out.getvalue(), err.getvalue()


def test_unknown_scheme_is_a_config_error_naming_the_known_ones():
    """A URL whose scheme no transport is registered for fails with ConfigError listing the
    known schemes, and without echoing the rest of the URL (it may hold a password)."""
    with pytest.raises(ConfigError) as caught:
        open_message_source("nats://bob:s3cret@broker:4222/events", stdin=io.BytesIO())
    message = str(caught.value)
    assert "unknown endpoint scheme 'nats://'" in message
    assert "redis://, rediss://, unix://" in message
    assert "s3cret" not in message


def test_unknown_scheme_stops_consume_with_a_usage_error(tmp_path, policy_dir, schema_dir):
    """consume with a source of an unknown scheme exits 2 and says which schemes it knows."""
    code, _, stderr = _cli(
        [
            "consume",
            "kafka://broker:9092/events",
            "--dlq",
            str(tmp_path / "dlq.jsonl"),
            "--policies",
            str(policy_dir),
            "--registry",
            str(schema_dir),
        ]
    )
    assert code == 2
    assert "unknown endpoint scheme 'kafka://'" in stderr


@pytest.mark.parametrize("text", ["-", "feed.jsonl", "/var/dlq.jsonl", "a:b.jsonl", r"C:\f.jsonl"])
def test_plain_paths_and_dash_go_to_the_file_transport(text):
    """Anything without ``scheme://`` (stdin/stdout, paths, a colon in a name) is a file."""
    assert scheme_of(text) is None
    assert transport_for(text) is jsonl.TRANSPORT


def test_redis_schemes_go_to_the_redis_transport():
    """redis://, rediss:// and unix:// (in any letter case) are Redis Streams endpoints."""
    for text in ("redis://h/0?stream=s", "rediss://h/0?stream=s", "REDIS://h/0?stream=s"):
        assert transport_for(text) is redis_streams.TRANSPORT
    assert transport_for("unix:///run/redis.sock?stream=s") is redis_streams.TRANSPORT


def test_built_in_transports_are_complete():
    """Each built-in transport has every method of the Transport protocol."""
    for transport in (jsonl.TRANSPORT, redis_streams.TRANSPORT, MemoryTransport()):
        assert isinstance(transport, Transport)


def test_registered_transport_opens_sources_and_sinks(memq):
    """A transport registered under a scheme is what open_message_source/_sink and the other
    endpoint functions use for that scheme."""
    assert open_message_source("memq://in", stdin=io.BytesIO()) is memq.source("in")
    assert open_message_sink("memq://out", stdout=io.StringIO()) is memq.sink("out")
    assert default_dlq("memq://in") == "memq://in:dlq"
    assert describe_endpoint("memq://out") == "memq://out"
    source = open_async_message_source("memq://in", stdin=io.BytesIO())
    assert source.source is memq.source("in")


def test_consume_runs_over_a_registered_transport(memq, policy_dir, schema_dir):
    """consume needs nothing but the table to read, pass on and dead-letter through a new
    transport, its default DLQ included."""
    for seq in range(1, 6):
        memq.source("in").put(order(seq, valid=seq != 3))
    code, stdout, _ = _cli(
        [
            "consume",
            "memq://in",
            "--output",
            "memq://out",
            "--json",
            "--policies",
            str(policy_dir),
            "--registry",
            str(schema_dir),
        ]
    )
    summary = json.loads(stdout)
    assert code == 0
    assert (summary["source"], summary["dlq"]) == ("memq://in", "memq://in:dlq")
    assert [r.message.position.id for r in memq.sink("out").records] == ["1", "2", "4", "5"]
    (letter,) = memq.sink("in:dlq").records
    assert isinstance(letter, DeadLetter)
    assert letter.context["source"] == {"kind": "memory", "stream": "memq://in", "id": "3"}
    assert len(memq.source("in").acked) == 5


def test_async_consume_runs_over_a_registered_transport(memq, policy_dir, schema_dir):
    """consume --async opens the registered transport's asyncio forms."""
    memq.source("in").put(order(1))
    memq.source("in").put(order(2, valid=False))
    code, _, _ = _cli(
        [
            "consume",
            "memq://in",
            "--output",
            "memq://out",
            "--dlq",
            "memq://dead",
            "--async",
            "--policies",
            str(policy_dir),
            "--registry",
            str(schema_dir),
        ]
    )
    assert code == 0
    assert len(memq.sink("out").records) == 1
    assert len(memq.sink("dead").records) == 1


def test_redrive_runs_over_a_registered_transport(memq, engine, policy_dir):
    """redrive reads a DLQ, publishes back to the recorded source and cleans the DLQ through
    the table alone."""
    source = memq.source("in")
    for seq in (1, 2):
        source.put(order(seq, valid=False))
    ConsumeLoop(engine, source, dlq=memq.sink("dlq")).run()
    assert len(memq.sink("dlq").records) == 2
    (policy_dir / "rules.yaml").write_text(RELAXED, encoding="utf-8")
    assert engine.reload()
    report = redrive_dead_letters(engine, "memq://dlq")
    assert (report.total, report.passing, report.published, report.removed) == (2, 2, 2, 2)
    assert report.targets == {"memq://in": 2}
    back = memq.sink("in").records
    assert [type(r) for r in back] == [Redriven, Redriven]
    assert [r.message.data for r in back] == [order(1, valid=False), order(2, valid=False)]
    assert memq.sink("dlq").records == []


def test_redriven_record_is_the_original_on_every_wire():
    """A redriven message is written as it was read: the original line, or the original entry
    fields, with nothing added."""
    fields = {b"data": b'{"schema": "s", "payload": 1}', b"trace": b"t-1"}
    from_redis = Redriven(Message(fields[b"data"], Position("dlq", "d", "1-0"), fields))
    from_file = Redriven(Message(b'{"schema": "s", "payload": 1}\r\n', Position("dlq", "d", "7")))
    assert jsonl.encode_line(from_file) == b'{"schema": "s", "payload": 1}\n'
    assert redis_streams.encode_fields(from_redis) == fields
    assert redis_streams.encode_fields(from_file) == {b"data": from_file.message.data}


def test_passed_record_is_encoded_by_the_sink_that_writes_it(engine):
    """The same Passed record is a JSONL line with the decision spliced in and Redis fields with
    a decision field: each transport encodes the plain record its own way."""
    message = Message(order(1), Position("memory", "m", "1"))
    record = Passed(message, engine.evaluate("shop.Order", json.loads(order(1))["payload"]))
    line = jsonl.encode_line(record)
    fields = redis_streams.encode_fields(record)
    assert line.startswith(order(1)[:-1] + b',"decision":{')
    assert line.endswith(b"}}\n")
    assert fields[b"data"] == order(1)
    assert json.loads(line)["decision"] == json.loads(fields[b"decision"])


def test_file_source_refuses_consumer_group_options():
    """--group and --consumer are refused for a file source rather than ignored."""
    with pytest.raises(ConfigError, match="--group and --consumer"):
        open_message_source("feed.jsonl", stdin=io.BytesIO(), group="g")
