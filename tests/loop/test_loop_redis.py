"""Redis Streams with consumer groups, against the real local Redis on 127.0.0.1:6379."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
import redis.asyncio as aioredis
from loop_support import REDIS_URL, order

from policy_engine import SinkError
from policy_engine.loop import (
    AsyncConsumeLoop,
    AsyncRedisStreamSink,
    AsyncRedisStreamSource,
    ConsumeLoop,
    IoRetry,
    MemorySink,
    RedisStreamSink,
    RedisStreamSource,
    ThreadedSink,
    default_dlq,
    parse_redis_url,
)


def _url(stream, **query):
    extra = "".join(f"&{k}={v}" for k, v in query.items())
    return f"{REDIS_URL}?stream={stream}{extra}"


def _fill(client, stream, items):
    pipe = client.pipeline()
    for item in items:
        pipe.xadd(stream, {"data": item})
    return pipe.execute()


def _pending(client, stream, group="policy-engine"):
    return client.xpending(stream, group)["pending"]


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_stream_to_streams_with_decision_and_dlq(engine, redis_client, streams):
    """Entries flow to the output stream with a decision field and rejects to the DLQ stream;
    the group has nothing pending afterwards."""
    src, out, dlq = streams("src"), streams("out"), streams("dlq")
    _fill(redis_client, src, [order(i, valid=i % 4 != 0) for i in range(1, 21)])
    source = RedisStreamSource(parse_redis_url(_url(src, consumer="c1")), drain=True)
    loop = ConsumeLoop(
        engine,
        source,
        output=RedisStreamSink(parse_redis_url(_url(out))),
        dlq=RedisStreamSink(parse_redis_url(_url(dlq))),
        batch_size=6,
        poll_timeout=0.05,
    )
    stats = loop.run()
    source.close()
    passed = redis_client.xrange(out)
    dead = redis_client.xrange(dlq)
    assert len(passed) == 15
    assert len(dead) == 5
    fields = passed[0][1]
    assert json.loads(fields[b"data"])["payload"]["seq"] == 1
    assert json.loads(fields[b"decision"])["action"] == "accepted"
    context = json.loads(dead[0][1][b"dlq"])
    assert context["reason"] == "rejected"
    assert context["source"]["stream"] == src
    assert dead[0][1][b"data"] == order(4, valid=False)
    assert _pending(redis_client, src) == 0
    assert stats.ended_by == "end"
    assert stats.acked == 20


def test_entry_fields_pass_through_unchanged(engine, redis_client, streams):
    """Extra fields of an entry are kept on the output entry next to the decision."""
    src, out = streams("src"), streams("out")
    redis_client.xadd(src, {"data": order(1), "trace": "t-1"})
    source = RedisStreamSource(parse_redis_url(_url(src)), consumer="c", drain=True)
    ConsumeLoop(
        engine,
        source,
        output=RedisStreamSink(parse_redis_url(_url(out))),
        dlq=MemorySink(),
        poll_timeout=0.05,
    ).run()
    ((_, fields),) = redis_client.xrange(out)
    assert fields[b"trace"] == b"t-1"
    assert fields[b"data"] == order(1)
    assert set(fields) == {b"data", b"trace", b"decision"}


def test_dlq_on_a_redis_that_is_down_leaves_messages_pending(engine, redis_client, streams):
    """With the DLQ's Redis refusing connections, the rejected batch stays unacknowledged."""
    src = streams("src")
    _fill(redis_client, src, [order(1), order(2, valid=False)])
    source = RedisStreamSource(parse_redis_url(_url(src)), consumer="c", drain=True)
    down = f"redis://127.0.0.1:{_free_port()}/0?stream=dlq"
    loop = ConsumeLoop(
        engine,
        source,
        dlq=RedisStreamSink(parse_redis_url(down)),
        retry=IoRetry(attempts=2, backoff=0.01),
        poll_timeout=0.05,
    )
    with pytest.raises(SinkError):
        loop.run()
    source.close()
    assert _pending(redis_client, src) == 2


def test_dlq_stream_refusing_writes_leaves_messages_pending(engine, redis_client, streams):
    """A DLQ key Redis refuses to XADD to (WRONGTYPE) keeps the batch pending, then a fixed
    DLQ gets it on the next run: nothing lost."""
    src, dlq = streams("src"), streams("dlq")
    redis_client.set(dlq, "not a stream")
    _fill(redis_client, src, [order(1, valid=False)])
    url = _url(src, consumer="c")
    loop = ConsumeLoop(
        engine,
        RedisStreamSource(parse_redis_url(url), drain=True),
        dlq=RedisStreamSink(parse_redis_url(_url(dlq))),
        retry=IoRetry(attempts=2, backoff=0.01),
        poll_timeout=0.05,
    )
    with pytest.raises(SinkError, match="WRONGTYPE"):
        loop.run()
    assert _pending(redis_client, src) == 1
    redis_client.delete(dlq)
    stats = ConsumeLoop(
        engine,
        RedisStreamSource(parse_redis_url(url), drain=True),
        dlq=RedisStreamSink(parse_redis_url(_url(dlq))),
        poll_timeout=0.05,
    ).run()
    assert stats.redelivered == 1
    assert redis_client.xlen(dlq) == 1
    assert _pending(redis_client, src) == 0


def test_restarted_consumer_reads_its_own_pending_first(engine, redis_client, streams):
    """Entries a consumer read but never acknowledged (it crashed) come back to it on restart."""
    src, out = streams("src"), streams("out")
    _fill(redis_client, src, [order(i) for i in range(1, 6)])
    crashed = RedisStreamSource(parse_redis_url(_url(src, consumer="same")))
    assert len(crashed.read(3, 0.05)) == 3  # read, then "crash": never acknowledged
    sink = RedisStreamSink(parse_redis_url(_url(out)))
    source = RedisStreamSource(parse_redis_url(_url(src, consumer="same")), drain=True)
    stats = ConsumeLoop(engine, source, output=sink, dlq=MemorySink(), poll_timeout=0.05).run()
    assert stats.read == 5
    assert stats.redelivered == 3
    seqs = sorted(json.loads(f[b"data"])["payload"]["seq"] for _, f in redis_client.xrange(out))
    assert seqs == [1, 2, 3, 4, 5]
    assert _pending(redis_client, src) == 0


def test_pending_of_a_dead_consumer_is_claimed(engine, redis_client, streams):
    """XAUTOCLAIM hands entries left pending by another (dead) consumer to a live one."""
    src, out = streams("src"), streams("out")
    _fill(redis_client, src, [order(i) for i in range(1, 5)])
    dead = RedisStreamSource(parse_redis_url(_url(src, consumer="dead")))
    assert len(dead.read(10, 0.05)) == 4
    time.sleep(0.15)
    live = RedisStreamSource(
        parse_redis_url(_url(src, consumer="live", claim_idle_ms=100)), drain=True
    )
    sink = RedisStreamSink(parse_redis_url(_url(out)))
    stats = ConsumeLoop(engine, live, output=sink, dlq=MemorySink(), poll_timeout=0.05).run()
    assert stats.read == 4
    assert stats.redelivered == 4
    assert redis_client.xlen(out) == 4
    assert _pending(redis_client, src) == 0


def test_young_pending_entries_are_not_claimed(redis_client, streams):
    """Entries another consumer holds for less than claim_idle are left to it."""
    src = streams("src")
    _fill(redis_client, src, [order(1)])
    other = RedisStreamSource(parse_redis_url(_url(src, consumer="other")))
    assert len(other.read(10, 0.05)) == 1
    mine = RedisStreamSource(parse_redis_url(_url(src, consumer="me")), claim_idle=60.0)
    assert mine.read(10, 0.05) == []
    pending = redis_client.xpending(src, "policy-engine")
    assert pending["consumers"] == [{"name": b"other", "pending": 1}]


def test_deleted_pending_entries_are_acknowledged_and_skipped(engine, redis_client, streams):
    """A pending entry whose data was deleted is acknowledged, not passed on as empty."""
    src = streams("src")
    ids = _fill(redis_client, src, [order(1), order(2)])
    first = RedisStreamSource(parse_redis_url(_url(src, consumer="c")))
    assert len(first.read(10, 0.05)) == 2
    redis_client.xdel(src, ids[0])
    out = MemorySink()
    source = RedisStreamSource(parse_redis_url(_url(src, consumer="c")), drain=True)
    ConsumeLoop(engine, source, output=out, dlq=MemorySink(), poll_timeout=0.05).run()
    assert [r.message.position.id for r in out.records] == [ids[1].decode()]
    assert _pending(redis_client, src) == 0


def test_group_and_consumer_come_from_the_url(redis_client, streams):
    """group= and consumer= in the URL name the consumer group and the consumer."""
    src = streams("src")
    _fill(redis_client, src, [order(1)])
    source = RedisStreamSource(parse_redis_url(_url(src, group="billing", consumer="pod-7")))
    assert len(source.read(10, 0.05)) == 1
    pending = redis_client.xpending(src, "billing")
    assert pending["consumers"] == [{"name": b"pod-7", "pending": 1}]


def test_default_dlq_is_a_stream_next_to_the_source():
    """Without --dlq a Redis source dead-letters to '<stream>:dlq' on the same server."""
    url = "redis://127.0.0.1:6379/3?stream=orders&group=g&consumer=c"
    assert default_dlq(url) == "redis://127.0.0.1:6379/3?stream=orders%3Adlq"
    assert parse_redis_url(default_dlq(url)).stream == "orders:dlq"
    assert default_dlq("feed.jsonl") is None


def test_password_is_not_in_the_description():
    """A Redis URL's password never shows in descriptions (logs, summaries, errors)."""
    endpoint = parse_redis_url("redis://user:s3cret@db.example:6380/2?stream=s")
    assert "s3cret" not in endpoint.description
    assert endpoint.description == "redis://user@db.example:6380/2?stream=s"


def test_async_redis_loop(engine, redis_client, streams):
    """The asyncio Redis source and sinks move the same entries with the same decisions."""
    src, out, dlq = streams("src"), streams("out"), streams("dlq")
    _fill(redis_client, src, [order(i, valid=i != 3) for i in range(1, 8)])

    async def main():
        source = AsyncRedisStreamSource(parse_redis_url(_url(src, consumer="a")), drain=True)
        output = AsyncRedisStreamSink(parse_redis_url(_url(out)))
        dead = AsyncRedisStreamSink(parse_redis_url(_url(dlq)))
        loop = AsyncConsumeLoop(
            engine, source, output=output, dlq=dead, batch_size=3, poll_timeout=0.05
        )
        try:
            return await loop.run()
        finally:
            await source.close()
            await output.close()
            await dead.close()

    stats = asyncio.run(main())
    assert stats.read == 7
    assert redis_client.xlen(out) == 6
    assert redis_client.xlen(dlq) == 1
    assert _pending(redis_client, src) == 0


class _CountingReads:
    """Wraps a redis-py client and counts the XREADGROUPs that wait for new entries (``>``)."""

    def __init__(self, client):
        self._client = client
        self.new_reads = 0

    def __getattr__(self, name):
        return getattr(self._client, name)

    def xreadgroup(self, group, consumer, streams, **kwargs):
        if ">" in streams.values():
            self.new_reads += 1
        return self._client.xreadgroup(group, consumer, streams, **kwargs)


class _AsyncCountingReads(_CountingReads):
    """``_CountingReads`` for a redis.asyncio client."""

    async def xreadgroup(self, group, consumer, streams, **kwargs):
        if ">" in streams.values():
            self.new_reads += 1
        return await self._client.xreadgroup(group, consumer, streams, **kwargs)


def test_drain_ends_after_one_empty_wait_for_new_entries(engine, redis_client, streams):
    """Once caught up, --drain waits for new entries once (one BLOCK), sweeps the claims and
    ends: it does not block a second time (a long block_ms would double the tail)."""
    src = streams("src")
    _fill(redis_client, src, [order(1), order(2)])
    endpoint = parse_redis_url(_url(src, consumer="c", block_ms=50))
    counting = _CountingReads(redis_client)
    source = RedisStreamSource(endpoint, drain=True, client=counting)
    stats = ConsumeLoop(engine, source, dlq=MemorySink(), batch_size=10).run()
    assert (stats.acked, stats.ended_by) == (2, "end")
    assert counting.new_reads == 2  # the one that got both entries, then the empty one


def test_async_drain_ends_after_one_empty_wait_too(engine, redis_client, streams):
    """The asyncio source ends a drain after one empty wait for new entries as well."""
    src = streams("src")
    _fill(redis_client, src, [order(1)])

    async def main():
        client = aioredis.Redis(host="127.0.0.1", port=6379)
        counting = _AsyncCountingReads(client)
        endpoint = parse_redis_url(_url(src, consumer="c", block_ms=50))
        source = AsyncRedisStreamSource(endpoint, drain=True, client=counting)
        try:
            stats = await AsyncConsumeLoop(engine, source, dlq=ThreadedSink(MemorySink())).run()
        finally:
            await client.aclose()
        return stats, counting.new_reads

    stats, new_reads = asyncio.run(main())
    assert (stats.acked, new_reads) == (1, 2)
