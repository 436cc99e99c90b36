"""SOURCE and SINK as the CLI writes them (SPEC §6): a file path, ``-``, or a ``redis://`` URL.

>>> source = open_source("redis://127.0.0.1:6379/0?stream=events&group=g", stdin=sys.stdin.buffer)
...                                                                       # doctest: +SKIP
>>> dlq = open_sink("dlq.jsonl", stdout=sys.stdout, fsync=True)          # doctest: +SKIP
"""

from __future__ import annotations

from typing import IO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from policy_engine.errors import ConfigError
from policy_engine.loop.jsonl import JsonlSink, JsonlSource
from policy_engine.loop.protocols import (
    AsyncSink,
    AsyncSource,
    Sink,
    Source,
    ThreadedSink,
    ThreadedSource,
)
from policy_engine.loop.redis_streams import (
    AsyncRedisStreamSink,
    AsyncRedisStreamSource,
    RedisStreamSink,
    RedisStreamSource,
    is_redis_url,
    parse_redis_url,
)

#: The suffix of the DLQ stream next to a Redis source stream when no ``--dlq`` is given.
DLQ_SUFFIX = ":dlq"


def open_source(
    text: str,
    *,
    stdin: IO[bytes],
    follow: bool = False,
    drain: bool = False,
    group: str | None = None,
    consumer: str | None = None,
    claim_idle: float | None = None,
) -> Source:
    """The ``Source`` named by ``text``. A file stops at its end unless ``follow``; a Redis
    stream runs until stopped unless ``drain`` (stop when caught up)."""
    if is_redis_url(text):
        return RedisStreamSource(
            parse_redis_url(text),
            group=group,
            consumer=consumer,
            claim_idle=claim_idle,
            drain=drain,
        )
    _no_redis_options(text, group, consumer)
    if text == "-":
        return JsonlSource(stream=stdin, name="-")
    return JsonlSource(text, follow=follow)


def open_async_source(
    text: str,
    *,
    stdin: IO[bytes],
    follow: bool = False,
    drain: bool = False,
    group: str | None = None,
    consumer: str | None = None,
    claim_idle: float | None = None,
) -> AsyncSource:
    """``open_source`` for the asyncio loop (files are read in a worker thread)."""
    if is_redis_url(text):
        return AsyncRedisStreamSource(
            parse_redis_url(text),
            group=group,
            consumer=consumer,
            claim_idle=claim_idle,
            drain=drain,
        )
    return ThreadedSource(
        open_source(text, stdin=stdin, follow=follow, group=group, consumer=consumer)
    )


def open_sink(text: str, *, stdout: IO[str] | IO[bytes], fsync: bool = False) -> Sink:
    """The ``Sink`` named by ``text``; ``fsync=True`` for a DLQ file."""
    if is_redis_url(text):
        return RedisStreamSink(parse_redis_url(text))
    if text == "-":
        return JsonlSink(stream=stdout, fsync=fsync, name="-")
    return JsonlSink(text, fsync=fsync)


def open_async_sink(text: str, *, stdout: IO[str] | IO[bytes], fsync: bool = False) -> AsyncSink:
    """``open_sink`` for the asyncio loop."""
    if is_redis_url(text):
        return AsyncRedisStreamSink(parse_redis_url(text))
    return ThreadedSink(open_sink(text, stdout=stdout, fsync=fsync))


def default_dlq(source: str) -> str | None:
    """The DLQ next to a Redis source (same server, stream ``<stream>:dlq``); ``None`` for a
    file or stdin, whose DLQ must be named."""
    if not is_redis_url(source):
        return None
    endpoint = parse_redis_url(source)
    parts = urlsplit(source)
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k not in ("stream", "group", "consumer", "claim_idle_ms", "block_ms", "maxlen")
    ]
    query.insert(0, ("stream", endpoint.stream + DLQ_SUFFIX))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def describe(text: str) -> str:
    """``text`` for logs and summaries, without a Redis password."""
    if is_redis_url(text):
        return parse_redis_url(text).description
    return text


def _no_redis_options(text: str, group: str | None, consumer: str | None) -> None:
    if group or consumer:
        raise ConfigError(f"{text}: --group and --consumer apply to a redis:// source only")
