"""Stream gauges from XLEN/XINFO and the source's position, against the real local Redis."""

from __future__ import annotations

import asyncio
import logging
import math

import redis
from loop_support import REDIS_URL, free_port, order

from policy_engine.loop import (
    AsyncConsumeLoop,
    AsyncRedisStreamSink,
    AsyncRedisStreamSource,
    ConsumeLoop,
    MemorySink,
    RedisStreamSink,
    RedisStreamSource,
    parse_redis_url,
)


def _endpoint(stream: str, url: str = REDIS_URL):
    return parse_redis_url(f"{url}?stream={stream}&group=workers&consumer=c1")


def _fill(client, stream, items):
    pipe = client.pipeline()
    for item in items:
        pipe.xadd(stream, {"data": item})
    return [entry_id.decode() for entry_id in pipe.execute()]


def test_a_source_sample_is_the_length_and_the_group_lag_and_pending(redis_client, streams):
    """XLEN and XINFO GROUPS give the stream's length, the group's lag (not yet delivered),
    pending (delivered, not acknowledged) and last delivered id."""
    src = streams("src")
    ids = _fill(redis_client, src, [order(i) for i in range(10)])
    source = RedisStreamSource(_endpoint(src))
    try:
        read = source.read(4, 0.05)
        sample = source.sample_stream()
    finally:
        source.close()
    assert len(read) == 4
    assert (sample.stream, sample.group, sample.length) == (src, "workers", 10)
    assert (sample.lag, sample.pending, sample.error) == (6, 4, None)
    assert sample.last_delivered_id == ids[3]
    assert source.position() == {
        "stream": src,
        "group": "workers",
        "consumer": "c1",
        "last_id": ids[3],
    }


def test_a_sink_sample_is_the_stream_length(redis_client, streams):
    """An output or DLQ stream's sample is its XLEN (0 before it exists)."""
    out = streams("out")
    sink = RedisStreamSink(_endpoint(out))
    try:
        before = sink.sample_stream()
        _fill(redis_client, out, [b"x", b"y", b"z"])
        after = sink.sample_stream()
    finally:
        sink.close()
    assert (before.length, after.length, after.group, after.error) == (0, 3, None, None)


def test_a_sample_of_an_unreachable_redis_is_an_error_not_an_exception():
    """With nothing listening, a sample comes back with every number unknown and the reason
    (host and port, never the password), instead of raising into the loop."""
    url = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"
    source = RedisStreamSource(_endpoint("nowhere", url))
    sink = RedisStreamSink(_endpoint("nowhere:dlq", url))
    try:
        samples = [source.sample_stream(), sink.sample_stream()]
    finally:
        source.close()
        sink.close()
    for sample in samples:
        assert (sample.length, sample.lag, sample.pending) == (None, None, None)
        assert sample.error is not None
        assert "hunter2" not in sample.error


def test_the_loop_reports_every_stream_it_touches(engine, registry, redis_client, streams):
    """A Redis-to-Redis run sets the source's length, lag and pending and the output's and
    DLQ's lengths (the DLQ depth) from XINFO, labelled by stream, role and group."""
    src, out, dlq = streams("src"), streams("out"), streams("dlq")
    _fill(redis_client, src, [order(i, valid=i % 5 != 0) for i in range(1, 21)])
    source = RedisStreamSource(_endpoint(src), drain=True)
    sinks = [RedisStreamSink(_endpoint(out)), RedisStreamSink(_endpoint(dlq))]
    try:
        ConsumeLoop(
            engine,
            source,
            output=sinks[0],
            dlq=sinks[1],
            batch_size=5,
            poll_timeout=0.05,
            sample_interval=0,
        ).run()
    finally:
        for item in (source, *sinks):
            item.close()

    def gauge(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert gauge("consume_stream_length", stream=src, role="source") == 20
    assert gauge("consume_group_lag", stream=src, group="workers") == 0
    assert gauge("consume_group_pending", stream=src, group="workers") == 0
    assert gauge("consume_stream_length", stream=out, role="output") == 16
    assert gauge("consume_stream_length", stream=dlq, role="dlq") == 4


def test_a_lagging_group_shows_in_the_gauge(engine, registry, redis_client, streams):
    """Stopped after 6 of 30 entries, the loop's last sample shows the group 24 behind."""
    src = streams("src")
    _fill(redis_client, src, [order(i) for i in range(30)])
    source = RedisStreamSource(_endpoint(src))
    try:
        ConsumeLoop(
            engine, source, dlq=MemorySink(), batch_size=3, max_messages=6, sample_interval=0
        ).run()
    finally:
        source.close()
    assert registry.get_sample_value("consume_group_lag", {"stream": src, "group": "workers"}) == 24


def test_xinfo_refused_never_breaks_the_loop(engine, registry, own_redis, tmp_path, caplog):
    """On a Redis whose ACL refuses XLEN and XINFO (reads and writes allowed), every sample
    fails: that is logged once per stream, the gauges read unknown, and every message is
    still passed on and acknowledged."""
    server = own_redis()
    acl = ["--user", "default", "on", "nopass", "~*", "&*", "+@all", "-xinfo", "-xlen"]
    server.start(*acl, directory=tmp_path)
    url = f"redis://127.0.0.1:{server.port}/0"
    client = redis.Redis(port=server.port)
    _fill(client, "src", [order(i) for i in range(9)])
    source = RedisStreamSource(_endpoint("src", url))
    output = RedisStreamSink(_endpoint("out", url))
    try:
        with caplog.at_level(logging.WARNING, logger="policy_engine.loop"):
            stats = ConsumeLoop(
                engine,
                source,
                output=output,
                dlq=MemorySink(),
                batch_size=3,
                max_messages=9,
                sample_interval=0,
            ).run()
    finally:
        source.close()
        output.close()
        client.close()
    assert stats.acked == 9
    said = [r.getMessage() for r in caplog.records if "sampling the" in r.getMessage()]
    assert len(said) == 2
    assert all("NoPermissionError" in line for line in said)
    length = registry.get_sample_value("consume_stream_length", {"stream": "src", "role": "source"})
    assert length is not None
    assert math.isnan(length)


def test_the_async_loop_samples_too(engine, registry, redis_client, streams):
    """The asyncio loop samples its redis.asyncio source and sinks the same way."""
    src, dlq = streams("src"), streams("dlq")
    _fill(redis_client, src, [order(i, valid=i != 2) for i in range(1, 7)])

    async def go() -> None:
        source = AsyncRedisStreamSource(_endpoint(src), drain=True)
        sink = AsyncRedisStreamSink(_endpoint(dlq))
        try:
            await AsyncConsumeLoop(
                engine, source, dlq=sink, batch_size=2, poll_timeout=0.05, sample_interval=0
            ).run()
        finally:
            await source.close()
            await sink.close()

    asyncio.run(go())
    assert (
        registry.get_sample_value("consume_stream_length", {"stream": src, "role": "source"}) == 6
    )
    assert registry.get_sample_value("consume_stream_length", {"stream": dlq, "role": "dlq"}) == 1
    pending = registry.get_sample_value(
        "consume_group_pending", {"stream": src, "group": "workers"}
    )
    assert pending == 0
