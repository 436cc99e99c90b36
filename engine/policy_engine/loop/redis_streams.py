"""Redis Streams with consumer groups as a ``Source`` and a ``Sink`` (SPEC §6, §10).

Reading (one consumer of a group)::

    XGROUP CREATE stream group 0 MKSTREAM         once; the group starts at the stream's head
    XREADGROUP ... STREAMS stream 0               first: what this consumer read but did not
                                                  acknowledge before it died (same name again)
    XAUTOCLAIM stream group me <claim_idle> ...   then, every claim interval: what other
                                                  consumers left pending that long (they died)
    XREADGROUP ... COUNT n BLOCK ms STREAMS stream >   new entries, in batches
    XACK stream group id...                       after the batch was passed on or dead-lettered

Each entry carries the envelope as JSON text in its ``data`` field. Writing appends one entry
per record with ``XADD`` in one pipelined round trip: the entry's own fields plus ``decision``
(output) or ``dlq`` (the dead-letter context); ``maxlen`` trims an output stream approximately
(never use it for a DLQ). Sync and asyncio forms share the read plan (``ReadPlan``), which
decides which command comes next and is free of I/O.

Endpoints are written as ``redis://[user:password@]host:port/db?stream=NAME&group=GROUP&
consumer=NAME`` (``rediss://`` for TLS); ``claim_idle_ms``, ``maxlen`` and ``block_ms`` are
optional; other query parameters go to redis-py.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from policy_engine.errors import ConfigError, SinkError, SourceError
from policy_engine.loop.records import DATA_FIELD, Message, Position, Record

#: The consumer group ``consume`` joins unless told otherwise.
DEFAULT_GROUP = "policy-engine"
#: Pending entries of another consumer idle this long are claimed (it is presumed dead).
DEFAULT_CLAIM_IDLE = 60.0
#: The longest wait between two claim sweeps.
MAX_CLAIM_INTERVAL = 30.0
_OWN = ("group", "stream", "consumer", "claim_idle_ms", "maxlen", "block_ms")


@dataclass(frozen=True, slots=True)
class RedisEndpoint:
    """A parsed ``redis://`` endpoint: the server URL for redis-py and the stream options."""

    url: str
    stream: str
    group: str | None = None
    consumer: str | None = None
    claim_idle: float | None = None
    maxlen: int | None = None
    block_ms: int | None = None

    @property
    def description(self) -> str:
        """The endpoint for logs: no password."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        if parts.username:
            host = f"{parts.username}@{host}"
        return f"{urlunsplit((parts.scheme, host, parts.path, '', ''))}?stream={self.stream}"


def is_redis_url(text: str) -> bool:
    """Whether ``text`` names a Redis endpoint rather than a file."""
    return text.startswith(("redis://", "rediss://", "unix://"))


def parse_redis_url(text: str) -> RedisEndpoint:
    """``redis://host:port/db?stream=...&group=...&consumer=...`` -> ``RedisEndpoint``.

    ``ConfigError`` when ``stream`` is missing or an option is not a number.
    """
    parts = urlsplit(text)
    query = parse_qsl(parts.query, keep_blank_values=True)
    own = {k: v for k, v in query if k in _OWN}
    rest = [(k, v) for k, v in query if k not in _OWN]
    stream = own.get("stream", "")
    if not stream:
        raise ConfigError(f"{text}: a Redis endpoint needs ?stream=NAME")

    def number(name: str) -> float | None:
        if name not in own or own[name] == "":
            return None
        try:
            value = float(own[name])
        except ValueError:
            raise ConfigError(f"{text}: {name}={own[name]!r} is not a number") from None
        if value < 0:
            raise ConfigError(f"{text}: {name} must be >= 0")
        return value

    claim = number("claim_idle_ms")
    maxlen = number("maxlen")
    block = number("block_ms")
    url = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(rest), ""))
    return RedisEndpoint(
        url=url,
        stream=stream,
        group=own.get("group") or None,
        consumer=own.get("consumer") or None,
        claim_idle=None if claim is None else claim / 1000.0,
        maxlen=None if maxlen is None else int(maxlen),
        block_ms=None if block is None else int(block),
    )


def default_consumer() -> str:
    """The consumer name when none is given: the host name (a pod's name in Kubernetes).

    A stable name lets a restarted consumer read back what it had not acknowledged; a new name
    is covered too, by ``XAUTOCLAIM`` once the old entries are ``claim_idle`` old.
    """
    return socket.gethostname() or "policy-engine"


def _client_options(timeout: float) -> dict[str, Any]:
    # The socket must outwait the longest BLOCK the source asks for.
    return {"socket_timeout": timeout + 10.0, "socket_connect_timeout": 5.0}


def connect(endpoint: RedisEndpoint, timeout: float = 1.0) -> redis.Redis:
    """A redis-py client for ``endpoint`` (bytes in, bytes out)."""
    return redis.Redis.from_url(endpoint.url, **_client_options(_longest(endpoint, timeout)))


def aconnect(endpoint: RedisEndpoint, timeout: float = 1.0) -> aioredis.Redis:
    """An asyncio redis-py client for ``endpoint``."""
    return aioredis.Redis.from_url(endpoint.url, **_client_options(_longest(endpoint, timeout)))


def _longest(endpoint: RedisEndpoint, timeout: float) -> float:
    return max(timeout, (endpoint.block_ms or 0) / 1000.0)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def messages_from(
    stream: str, entries: Sequence[tuple[bytes, dict[bytes, bytes] | None]], redelivered: bool
) -> tuple[list[Message], list[bytes]]:
    """Messages of ``XREADGROUP``/``XAUTOCLAIM`` entries, and the ids of deleted ones (entries
    still pending whose data was trimmed or ``XDEL``-ed: nothing to do but acknowledge them)."""
    messages: list[Message] = []
    gone: list[bytes] = []
    for entry_id, fields in entries:
        if not fields:
            gone.append(entry_id)
            continue
        position = Position("redis", stream, _text(entry_id))
        messages.append(Message(fields.get(DATA_FIELD), position, fields, redelivered))
    return messages, gone


class ReadPlan:
    """Which read comes next, free of I/O: own pending entries, a claim sweep, or new entries.

    ``drain=True`` ends the source (``exhausted``) once a read of new entries came back empty
    and a full claim sweep after it found nothing.
    """

    def __init__(
        self, claim_idle: float, *, drain: bool, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.claim_idle = claim_idle
        self.interval = min(max(claim_idle, 0.05), MAX_CLAIM_INTERVAL)
        self.drain = drain
        self.clock = clock
        self.pending_cursor: str | None = "0"
        self.claim_cursor = "0-0"
        self.next_claim = 0.0  # a sweep at start-up
        self.exhausted = False
        self._drain_check = False
        self._claimed_in_sweep = 0

    def next(self) -> str:
        """``pending``, ``claim`` or ``new``."""
        if self.pending_cursor is not None:
            return "pending"
        if self.clock() >= self.next_claim:
            return "claim"
        return "new"

    def after_pending(self, last_id: bytes | None) -> None:
        """Own pending entries were read up to ``last_id`` (``None``: none left)."""
        self.pending_cursor = None if last_id is None else _text(last_id)

    def after_claim(self, next_start: bytes | str, claimed: int) -> None:
        """A claim step returned ``claimed`` entries; ``next_start`` ``0-0`` ends the sweep."""
        self._claimed_in_sweep += claimed
        cursor = _text(next_start)
        if cursor != "0-0":
            self.claim_cursor = cursor  # more to sweep: go on at once
            return
        self.claim_cursor = "0-0"
        self.next_claim = self.clock() + self.interval
        if self._drain_check and self._claimed_in_sweep == 0:
            self.exhausted = True
        self._drain_check = False
        self._claimed_in_sweep = 0

    def after_new(self, got: int) -> None:
        """A read of new entries returned ``got`` entries."""
        if self.drain and got == 0:
            self._drain_check = True
            self._claimed_in_sweep = 0
            self.claim_cursor = "0-0"
            self.next_claim = 0.0  # sweep now; end if it finds nothing either
        else:
            self._drain_check = False


class _SourceBase:
    def __init__(
        self,
        endpoint: RedisEndpoint,
        *,
        group: str | None,
        consumer: str | None,
        claim_idle: float | None,
        drain: bool,
    ) -> None:
        self.endpoint = endpoint
        self.stream = endpoint.stream
        self.group = group or endpoint.group or DEFAULT_GROUP
        self.consumer = consumer or endpoint.consumer or default_consumer()
        idle = claim_idle if claim_idle is not None else endpoint.claim_idle
        self.claim_idle = DEFAULT_CLAIM_IDLE if idle is None else idle
        self.description = f"{endpoint.description} group={self.group} consumer={self.consumer}"
        self.plan = ReadPlan(self.claim_idle, drain=drain)
        self._group_ready = False

    @property
    def exhausted(self) -> bool:
        """True in drain mode once the stream has nothing new and nothing left to claim."""
        return self.plan.exhausted

    def _block_ms(self, timeout: float) -> int | None:
        if self.endpoint.block_ms is not None:
            return self.endpoint.block_ms or None
        ms = int(timeout * 1000)
        return ms if ms > 0 else None  # BLOCK 0 would mean "forever"

    def _error(self, what: str, exc: Exception) -> SourceError:
        return SourceError(f"{self.description}: {what} failed: {exc}", endpoint=self.description)


class RedisStreamSource(_SourceBase):
    """A consumer of a Redis Streams consumer group (see the module docstring).

    >>> source = RedisStreamSource(parse_redis_url("redis://127.0.0.1:6379/0?stream=events"))
    ...                                                                   # doctest: +SKIP
    """

    def __init__(
        self,
        endpoint: RedisEndpoint,
        *,
        group: str | None = None,
        consumer: str | None = None,
        claim_idle: float | None = None,
        drain: bool = False,
        client: redis.Redis | None = None,
    ) -> None:
        super().__init__(
            endpoint, group=group, consumer=consumer, claim_idle=claim_idle, drain=drain
        )
        self.client = client if client is not None else connect(endpoint)

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def read(self, max_messages: int, timeout: float) -> list[Message]:
        """Own pending entries first, then claimed ones, then new ones (one blocking read)."""
        try:
            self._ensure_group()
            for _ in range(4):
                step = self.plan.next()
                if step == "pending":
                    messages = self._read_pending(max_messages)
                elif step == "claim":
                    messages = self._claim(max_messages)
                else:
                    return self._read_new(max_messages, timeout)
                if messages:
                    return messages
            return []
        except RedisError as exc:
            if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                self._group_ready = False  # the stream or group was deleted: create it again
            raise self._error("reading", exc) from exc

    def _read_pending(self, count: int) -> list[Message]:
        cursor = self.plan.pending_cursor or "0"
        reply = self.client.xreadgroup(
            self.group, self.consumer, {self.stream: cursor}, count=count
        )
        entries = _entries(reply)
        self.plan.after_pending(entries[-1][0] if entries else None)
        messages, gone = messages_from(self.stream, entries, redelivered=True)
        if gone:
            self.client.xack(self.stream, self.group, *gone)
        return messages

    def _claim(self, count: int) -> list[Message]:
        reply = self.client.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            min_idle_time=int(self.claim_idle * 1000),
            start_id=self.plan.claim_cursor,
            count=count,
        )
        next_start, entries = reply[0], reply[1]
        messages, gone = messages_from(self.stream, entries, redelivered=True)
        if gone:
            self.client.xack(self.stream, self.group, *gone)
        self.plan.after_claim(next_start, len(messages))
        return messages

    def _read_new(self, count: int, timeout: float) -> list[Message]:
        reply = self.client.xreadgroup(
            self.group,
            self.consumer,
            {self.stream: ">"},
            count=count,
            block=self._block_ms(timeout),
        )
        entries = _entries(reply)
        self.plan.after_new(len(entries))
        return messages_from(self.stream, entries, redelivered=False)[0]

    def ack(self, messages: Sequence[Message]) -> None:
        """``XACK`` every message of the batch in one call."""
        if not messages:
            return
        try:
            self.client.xack(self.stream, self.group, *[m.position.id for m in messages])
        except RedisError as exc:
            raise self._error("acknowledging", exc) from exc

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


class AsyncRedisStreamSource(_SourceBase):
    """``RedisStreamSource`` for asyncio (redis.asyncio), with the same read plan."""

    def __init__(
        self,
        endpoint: RedisEndpoint,
        *,
        group: str | None = None,
        consumer: str | None = None,
        claim_idle: float | None = None,
        drain: bool = False,
        client: aioredis.Redis | None = None,
    ) -> None:
        super().__init__(
            endpoint, group=group, consumer=consumer, claim_idle=claim_idle, drain=drain
        )
        self.client = client if client is not None else aconnect(endpoint)

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def read(self, max_messages: int, timeout: float) -> list[Message]:
        """Own pending entries first, then claimed ones, then new ones (one blocking read)."""
        try:
            await self._ensure_group()
            for _ in range(4):
                step = self.plan.next()
                if step == "pending":
                    messages = await self._read_pending(max_messages)
                elif step == "claim":
                    messages = await self._claim(max_messages)
                else:
                    return await self._read_new(max_messages, timeout)
                if messages:
                    return messages
            return []
        except RedisError as exc:
            if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                self._group_ready = False
            raise self._error("reading", exc) from exc

    async def _read_pending(self, count: int) -> list[Message]:
        cursor = self.plan.pending_cursor or "0"
        reply = await self.client.xreadgroup(
            self.group, self.consumer, {self.stream: cursor}, count=count
        )
        entries = _entries(reply)
        self.plan.after_pending(entries[-1][0] if entries else None)
        messages, gone = messages_from(self.stream, entries, redelivered=True)
        if gone:
            await self.client.xack(self.stream, self.group, *gone)
        return messages

    async def _claim(self, count: int) -> list[Message]:
        reply = await self.client.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            min_idle_time=int(self.claim_idle * 1000),
            start_id=self.plan.claim_cursor,
            count=count,
        )
        next_start, entries = reply[0], reply[1]
        messages, gone = messages_from(self.stream, entries, redelivered=True)
        if gone:
            await self.client.xack(self.stream, self.group, *gone)
        self.plan.after_claim(next_start, len(messages))
        return messages

    async def _read_new(self, count: int, timeout: float) -> list[Message]:
        reply = await self.client.xreadgroup(
            self.group,
            self.consumer,
            {self.stream: ">"},
            count=count,
            block=self._block_ms(timeout),
        )
        entries = _entries(reply)
        self.plan.after_new(len(entries))
        return messages_from(self.stream, entries, redelivered=False)[0]

    async def ack(self, messages: Sequence[Message]) -> None:
        """``XACK`` every message of the batch in one call."""
        if not messages:
            return
        try:
            await self.client.xack(self.stream, self.group, *[m.position.id for m in messages])
        except RedisError as exc:
            raise self._error("acknowledging", exc) from exc

    async def close(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()


def _entries(reply: Any) -> list[tuple[bytes, dict[bytes, bytes] | None]]:
    """The entries of an ``XREADGROUP`` reply for one stream (RESP2 list or RESP3 dict)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        for value in reply.values():
            return list(value[0] if value and isinstance(value[0], list) else value)
        return []
    return list(reply[0][1])


class _SinkBase:
    def __init__(self, endpoint: RedisEndpoint) -> None:
        self.endpoint = endpoint
        self.stream = endpoint.stream
        self.maxlen = endpoint.maxlen
        self.description = endpoint.description

    def _error(self, exc: Exception) -> SinkError:
        return SinkError(f"{self.description}: XADD failed: {exc}", endpoint=self.description)


class RedisStreamSink(_SinkBase):
    """Appends records to a stream with ``XADD``, one pipelined round trip per batch."""

    def __init__(self, endpoint: RedisEndpoint, *, client: redis.Redis | None = None) -> None:
        super().__init__(endpoint)
        self.client = client if client is not None else connect(endpoint)

    def write(self, records: Sequence[Record]) -> None:
        """``XADD`` every record; all were stored when this returns, else ``SinkError``."""
        if not records:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for record in records:
                pipe.xadd(
                    self.stream,
                    record.to_fields(),  # type: ignore[arg-type]
                    maxlen=self.maxlen,
                    approximate=True,
                )
            pipe.execute()
        except RedisError as exc:
            raise self._error(exc) from exc

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


class AsyncRedisStreamSink(_SinkBase):
    """``RedisStreamSink`` for asyncio."""

    def __init__(self, endpoint: RedisEndpoint, *, client: aioredis.Redis | None = None) -> None:
        super().__init__(endpoint)
        self.client = client if client is not None else aconnect(endpoint)

    async def write(self, records: Sequence[Record]) -> None:
        """``XADD`` every record; all were stored when this returns, else ``SinkError``."""
        if not records:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for record in records:
                pipe.xadd(
                    self.stream,
                    record.to_fields(),  # type: ignore[arg-type]
                    maxlen=self.maxlen,
                    approximate=True,
                )
            await pipe.execute()
        except RedisError as exc:
            raise self._error(exc) from exc

    async def close(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()
