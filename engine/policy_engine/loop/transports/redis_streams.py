"""Redis Streams with consumer groups as a ``Source`` and a ``Sink``.

Reading (one consumer of a group)::

    XGROUP CREATE stream group 0 MKSTREAM         once; the group starts at the stream's head
    XREADGROUP ... STREAMS stream 0               first: what this consumer read but did not
                                                  acknowledge before it died (same name again)
    XAUTOCLAIM stream group me <claim_idle> ...   then, every claim interval: what other
                                                  consumers left pending that long (they died)
    XREADGROUP ... COUNT n BLOCK ms STREAMS stream >   new entries, in batches
    XACK stream group id...                       after the batch was passed on or dead-lettered

Sampled by the loop between batches, at most once a second (``sample_stream``, for the stream
gauges and ``/status``)::

    XLEN stream + XINFO GROUPS stream              a source: the length, and its group's lag,
                                                  pending count and last delivered id
    XLEN stream                                   an output or DLQ stream: the length

Each entry carries the envelope as JSON text in its ``data`` field. Writing appends one entry
per record with ``XADD`` in one pipelined round trip (``encode_fields``): the entry's own fields
plus ``decision`` (output) or ``dlq`` (the dead-letter context); ``maxlen`` trims an output
stream approximately (never use it for a DLQ). Sync and asyncio forms share the read schedule
(``ReadSchedule``), which decides which command comes next and is free of I/O. A DLQ stream is
read back for ``redrive`` by ``RedisDeadLetters`` (``XRANGE``, then ``XDEL`` of what went back).

Endpoints are written as ``redis://[user:password@]host:port/db?stream=NAME&group=GROUP&
consumer=NAME`` (``rediss://`` for TLS, ``unix://`` for a socket); ``claim_idle_ms``, ``maxlen``
and ``block_ms`` are optional; other query parameters go to redis-py. ``TRANSPORT`` is what
``loop.endpoints`` opens them with.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, assert_never, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from policy_engine.errors import ConfigError, SinkError, SourceError
from policy_engine.loop.protocols import SinkOptions, SourceOptions, StreamSample, Transport
from policy_engine.loop.records import (
    DATA_FIELD,
    DeadLetter,
    Message,
    Passed,
    Position,
    Record,
    Redriven,
    StoredDeadLetter,
)
from policy_engine.loop.transports.wire import compact_json, decision_json

#: The consumer group ``consume`` joins unless told otherwise.
DEFAULT_GROUP = "policy-engine"
#: Pending entries of another consumer idle this long are claimed (it is presumed dead).
DEFAULT_CLAIM_IDLE = 60.0
#: The longest wait between two claim sweeps.
MAX_CLAIM_INTERVAL = 30.0
_OWN = ("group", "stream", "consumer", "claim_idle_ms", "maxlen", "block_ms")
#: The field an output entry gets with the Decision, and a DLQ entry with the context.
DECISION_FIELD = b"decision"
DLQ_FIELD = b"dlq"
#: The suffix of the DLQ stream next to a source stream when no ``--dlq`` is given.
DLQ_SUFFIX = ":dlq"
#: Entries read from a DLQ stream per ``XRANGE`` (and ids per ``XDEL``) in ``redrive``.
PAGE = 500


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


def _count(value: Any) -> int | None:
    """An integer reply, or ``None`` for a nil or something else (an error in a pipeline)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def source_sample(stream: str, group: str, length: Any, groups: Any) -> StreamSample:
    """The sample of a source stream from the replies to ``XLEN`` and ``XINFO GROUPS`` (a
    pipeline's, errors included as values): the length, and the lag, pending count and last
    delivered id of ``group`` (``None`` where Redis did not say, e.g. ``lag`` after entries past
    the group's position were deleted, or on Redis before 7)."""
    errors = [
        f"{type(reply).__name__}: {reply}"
        for reply in (length, groups)
        if isinstance(reply, Exception)
    ]
    mine: Mapping[str, Any] = {}
    if isinstance(groups, list):
        for info in groups:
            if isinstance(info, Mapping) and _text(info.get("name", b"")) == group:
                mine = info
                break
        else:
            errors.append(f"the stream has no consumer group {group!r}")
    last = mine.get("last-delivered-id")
    return StreamSample(
        stream,
        _count(length),
        group,
        lag=_count(mine.get("lag")),
        pending=_count(mine.get("pending")),
        last_delivered_id=_text(last) if isinstance(last, bytes | str) else None,
        error="; ".join(errors) or None,
    )


def failed_sample(stream: str, group: str | None, exc: Exception) -> StreamSample:
    """A sample that could not be taken: every number unknown, and why (redis-py's message,
    which names the host and port, never the password)."""
    return StreamSample(stream, None, group, error=f"{type(exc).__name__}: {exc}")


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


class ReadSchedule:
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
        self.schedule = ReadSchedule(self.claim_idle, drain=drain)
        self._group_ready = False
        #: The id of the last entry this consumer read (``None`` before the first).
        self.last_id: str | None = None

    @property
    def exhausted(self) -> bool:
        """True in drain mode once the stream has nothing new and nothing left to claim."""
        return self.schedule.exhausted

    @property
    def waits_out_outages(self) -> bool:
        """True unless draining: a consumer that runs until stopped waits for its Redis to come
        back (``loop.protocols.EnduringSource``); one that drains is meant to end."""
        return not self.schedule.drain

    def position(self) -> dict[str, Any]:
        """Where this consumer is, for ``/status``: the stream, group, consumer, and the id of
        the last entry it read (the group's lag comes with ``sample_stream``)."""
        return {
            "stream": self.stream,
            "group": self.group,
            "consumer": self.consumer,
            "last_id": self.last_id,
        }

    def _read_some(self, messages: list[Message]) -> list[Message]:
        if messages:
            self.last_id = messages[-1].position.id
        return messages

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
        """Own pending entries first, then claimed ones, then new ones (one blocking read).

        A stream or group that is gone (deleted, or a Redis restarted without persistence) is
        created again and read at once, within this call."""
        try:
            try:
                return self._read_steps(max_messages, timeout)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self._group_ready = False
                return self._read_steps(max_messages, timeout)
        except RedisError as exc:
            if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                self._group_ready = False  # gone again: create it at the next read
            raise self._error("reading", exc) from exc

    def _read_steps(self, max_messages: int, timeout: float) -> list[Message]:
        self._ensure_group()
        for _ in range(4):
            step = self.schedule.next()
            if step == "pending":
                messages = self._read_pending(max_messages)
            elif step == "claim":
                messages = self._claim(max_messages)
            else:
                return self._read_some(self._read_new(max_messages, timeout))
            if messages or self.schedule.exhausted:  # drained: no blocking read more
                return self._read_some(messages)
        return []

    def _read_pending(self, count: int) -> list[Message]:
        cursor = self.schedule.pending_cursor or "0"
        reply = self.client.xreadgroup(
            self.group, self.consumer, {self.stream: cursor}, count=count
        )
        entries = _entries(reply)
        self.schedule.after_pending(entries[-1][0] if entries else None)
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
            start_id=self.schedule.claim_cursor,
            count=count,
        )
        next_start, entries = reply[0], reply[1]
        messages, gone = messages_from(self.stream, entries, redelivered=True)
        if gone:
            self.client.xack(self.stream, self.group, *gone)
        self.schedule.after_claim(next_start, len(messages))
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
        self.schedule.after_new(len(entries))
        return messages_from(self.stream, entries, redelivered=False)[0]

    def ack(self, messages: Sequence[Message]) -> None:
        """``XACK`` every message of the batch in one call."""
        if not messages:
            return
        try:
            self.client.xack(self.stream, self.group, *[m.position.id for m in messages])
        except RedisError as exc:
            raise self._error("acknowledging", exc) from exc

    def sample_stream(self) -> StreamSample:
        """``XLEN`` and ``XINFO GROUPS`` in one round trip: the stream's length and the group's
        lag and pending count. A Redis error comes back in the sample."""
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.xlen(self.stream)
            pipe.xinfo_groups(self.stream)
            length, groups = pipe.execute(raise_on_error=False)
        except RedisError as exc:
            return failed_sample(self.stream, self.group, exc)
        return source_sample(self.stream, self.group, length, groups)

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
        """Own pending entries first, then claimed ones, then new ones (one blocking read); a
        stream or group that is gone is created again and read at once."""
        try:
            try:
                return await self._read_steps(max_messages, timeout)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self._group_ready = False
                return await self._read_steps(max_messages, timeout)
        except RedisError as exc:
            if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                self._group_ready = False
            raise self._error("reading", exc) from exc

    async def _read_steps(self, max_messages: int, timeout: float) -> list[Message]:
        await self._ensure_group()
        for _ in range(4):
            step = self.schedule.next()
            if step == "pending":
                messages = await self._read_pending(max_messages)
            elif step == "claim":
                messages = await self._claim(max_messages)
            else:
                return self._read_some(await self._read_new(max_messages, timeout))
            if messages or self.schedule.exhausted:  # drained: no blocking read more
                return self._read_some(messages)
        return []

    async def _read_pending(self, count: int) -> list[Message]:
        cursor = self.schedule.pending_cursor or "0"
        reply = await self.client.xreadgroup(
            self.group, self.consumer, {self.stream: cursor}, count=count
        )
        entries = _entries(reply)
        self.schedule.after_pending(entries[-1][0] if entries else None)
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
            start_id=self.schedule.claim_cursor,
            count=count,
        )
        next_start, entries = reply[0], reply[1]
        messages, gone = messages_from(self.stream, entries, redelivered=True)
        if gone:
            await self.client.xack(self.stream, self.group, *gone)
        self.schedule.after_claim(next_start, len(messages))
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
        self.schedule.after_new(len(entries))
        return messages_from(self.stream, entries, redelivered=False)[0]

    async def ack(self, messages: Sequence[Message]) -> None:
        """``XACK`` every message of the batch in one call."""
        if not messages:
            return
        try:
            await self.client.xack(self.stream, self.group, *[m.position.id for m in messages])
        except RedisError as exc:
            raise self._error("acknowledging", exc) from exc

    async def sample_stream(self) -> StreamSample:
        """``XLEN`` and ``XINFO GROUPS`` in one round trip (see ``RedisStreamSource``)."""
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.xlen(self.stream)
            pipe.xinfo_groups(self.stream)
            length, groups = await pipe.execute(raise_on_error=False)
        except RedisError as exc:
            return failed_sample(self.stream, self.group, exc)
        return source_sample(self.stream, self.group, length, groups)

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
        #: ``XADD`` up to the entry's fields: ``XADD stream [MAXLEN ~ n] *``, what redis-py's
        #: ``xadd(stream, fields, maxlen=n, approximate=True)`` sends before them. Written out
        #: once: ``xadd`` checks and rebuilds it for every entry.
        self.xadd_head: tuple[str, ...] = (
            "XADD",
            self.stream,
            *(() if self.maxlen is None else ("MAXLEN", "~", str(self.maxlen))),
            "*",
        )

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
            add: Callable[..., Any] = pipe.execute_command  # redis-py leaves it untyped
            head = self.xadd_head
            for record in records:
                add(*head, *entry_arguments(record))
            pipe.execute()
        except RedisError as exc:
            raise self._error(exc) from exc

    def sample_stream(self) -> StreamSample:
        """``XLEN``: the stream's length (for a DLQ, its depth). A Redis error comes back in
        the sample."""
        try:
            length = self.client.xlen(self.stream)
        except RedisError as exc:
            return failed_sample(self.stream, None, exc)
        return StreamSample(self.stream, _count(length))

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
            add: Callable[..., Any] = pipe.execute_command  # redis-py leaves it untyped
            head = self.xadd_head
            for record in records:
                add(*head, *entry_arguments(record))
            await pipe.execute()
        except RedisError as exc:
            raise self._error(exc) from exc

    async def sample_stream(self) -> StreamSample:
        """``XLEN``: the stream's length (for a DLQ, its depth)."""
        try:
            length = await self.client.xlen(self.stream)
        except RedisError as exc:
            return failed_sample(self.stream, None, exc)
        return StreamSample(self.stream, _count(length))

    async def close(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()


# ---------------------------------------------------------------------------- the wire format


def _entry_fields(message: Message) -> dict[bytes, bytes]:
    """The fields of an entry carrying ``message``: a Redis entry's own, unchanged, or a file
    line as ``data``."""
    if message.fields is not None:
        return dict(message.fields)
    return {DATA_FIELD: message.data or b""}


def encode_fields(record: Record) -> dict[bytes, bytes]:
    """``record`` as the fields of one stream entry: the message's entry fields, plus
    ``decision`` (``Passed``) or ``dlq`` with the context as JSON (``DeadLetter``); a
    ``Redriven`` message goes back with its fields only."""
    match record:
        case Passed(message=message, decision=decision):
            fields = _entry_fields(message)
            fields[DECISION_FIELD] = decision_json(decision)
            return fields
        case DeadLetter(message=message, context=context):
            fields = _entry_fields(message)
            fields[DLQ_FIELD] = compact_json(context)
            return fields
        case Redriven(message=message):
            return _entry_fields(message)
        case _:
            assert_never(record)


def entry_arguments(record: Record) -> list[bytes]:
    """``encode_fields(record)`` as ``XADD`` takes it after the id: field, value, field, value.

    A message passed on from a Redis entry (the loop's usual record) skips the copy of its
    fields ``encode_fields`` makes; one whose entry already has a ``decision`` field goes
    through ``encode_fields``, which replaces that field's value in place.
    """
    if type(record) is Passed:
        fields = record.message.fields
        if fields is not None and DECISION_FIELD not in fields:
            arguments = list(chain.from_iterable(fields.items()))
            arguments.append(DECISION_FIELD)
            arguments.append(decision_json(record.decision))
            return arguments
    return list(chain.from_iterable(encode_fields(record).items()))


def parse_dead_letter_entry(entry_id: str, fields: Mapping[bytes, bytes]) -> StoredDeadLetter:
    """A DLQ entry read back (its ``dlq`` field is the context)."""
    original = {k: v for k, v in fields.items() if k != DLQ_FIELD}
    raw = fields.get(DLQ_FIELD)
    context = json.loads(raw) if raw else {"reason": "unknown"}
    if not isinstance(context, dict):
        context = {"reason": "unknown"}
    return StoredDeadLetter(
        id=entry_id, data=original.get(DATA_FIELD), fields=original, context=context
    )


def with_stream(text: str, stream: str) -> str:
    """The endpoint ``text`` with its stream replaced by ``stream`` and the options that belong
    to one stream (group, consumer, ...) left out: the same server, another stream."""
    parts = urlsplit(text)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in _OWN]
    query.insert(0, ("stream", stream))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


class RedisDeadLetters:
    """A DLQ stream read back for ``redrive``: entries in order (``XRANGE``, a page at a time);
    ``remove`` deletes entries (``XDEL``), which other readers of the stream do not mind."""

    def __init__(self, endpoint: RedisEndpoint, *, client: redis.Redis | None = None) -> None:
        self.endpoint = endpoint
        self.description = endpoint.description
        # A page of XRANGE or XDEL on a long stream may take a while: no BLOCK, a long timeout.
        self.client = (
            client
            if client is not None
            else redis.Redis.from_url(endpoint.url, socket_timeout=30.0, socket_connect_timeout=5.0)
        )

    def read(self) -> Iterator[StoredDeadLetter]:
        """Every entry of the stream as a dead letter."""
        start = "-"
        while True:
            try:
                # bytes in, bytes out: the client decodes nothing.
                entries = cast(
                    list[tuple[bytes, dict[bytes, bytes] | None]],
                    self.client.xrange(self.endpoint.stream, min=start, max="+", count=PAGE),
                )
            except RedisError as exc:
                raise SourceError(
                    f"{self.description}: reading the DLQ failed: {exc}",
                    endpoint=self.description,
                ) from exc
            if not entries:
                return
            for entry_id, fields in entries:
                yield parse_dead_letter_entry(_text(entry_id), fields or {})
            last = _text(entries[-1][0])
            millis, _, seq = last.partition("-")
            start = f"{millis}-{int(seq) + 1}"
            if len(entries) < PAGE:
                return

    def remove(self, letters: Sequence[StoredDeadLetter]) -> int:
        """``XDEL`` the entries of ``letters``; how many were deleted."""
        ids = [letter.id for letter in letters]
        removed = 0
        try:
            for i in range(0, len(ids), PAGE):
                removed += int(self.client.xdel(self.endpoint.stream, *ids[i : i + PAGE]))
        except RedisError as exc:
            raise SinkError(
                f"{self.description}: removing redriven entries failed: {exc}",
                endpoint=self.description,
            ) from exc
        return removed

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


# ---------------------------------------------------------------------------- the transport


class RedisStreamsTransport:
    """``redis://``, ``rediss://`` and ``unix://`` endpoints: Redis Streams with consumer
    groups."""

    def open_message_source(self, text: str, options: SourceOptions) -> RedisStreamSource:
        """A consumer of the endpoint's group (options override the URL's)."""
        return RedisStreamSource(
            parse_redis_url(text),
            group=options.group,
            consumer=options.consumer,
            claim_idle=options.claim_idle,
            drain=options.drain,
        )

    def open_async_message_source(
        self, text: str, options: SourceOptions
    ) -> AsyncRedisStreamSource:
        """``open_message_source`` on redis.asyncio."""
        return AsyncRedisStreamSource(
            parse_redis_url(text),
            group=options.group,
            consumer=options.consumer,
            claim_idle=options.claim_idle,
            drain=options.drain,
        )

    def open_message_sink(self, text: str, options: SinkOptions) -> RedisStreamSink:
        """``XADD`` to the endpoint's stream (an answered ``XADD`` is durable enough: there is
        nothing to fsync)."""
        return RedisStreamSink(parse_redis_url(text))

    def open_async_message_sink(self, text: str, options: SinkOptions) -> AsyncRedisStreamSink:
        """``open_message_sink`` on redis.asyncio."""
        return AsyncRedisStreamSink(parse_redis_url(text))

    def describe(self, text: str) -> str:
        """The endpoint without its password."""
        return parse_redis_url(text).description

    def default_dlq(self, source: str) -> str | None:
        """The stream ``<stream>:dlq`` on the source's server."""
        return with_stream(source, parse_redis_url(source).stream + DLQ_SUFFIX)

    def open_dead_letters(self, text: str) -> RedisDeadLetters:
        """The DLQ stream ``text``."""
        return RedisDeadLetters(parse_redis_url(text))

    def return_address(self, source: Mapping[str, Any], dlq: str) -> str | None:
        """The source stream of a message read from Redis, on the DLQ's server (a position
        names the stream, not the server)."""
        stream = source.get("stream")
        if source.get("kind") != "redis" or not isinstance(stream, str) or not stream:
            return None
        return with_stream(dlq, stream)


#: The transport ``loop.endpoints`` uses for ``redis://``, ``rediss://`` and ``unix://``.
TRANSPORT: Transport = RedisStreamsTransport()
