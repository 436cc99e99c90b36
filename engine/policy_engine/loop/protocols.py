"""The small protocols the loop talks to: where messages come from and where they go.

A ``Source`` hands out batches of ``Message`` and takes acknowledgements; a ``Sink`` writes
records (passed-on messages, dead letters, redriven ones) durably before ``write`` returns, and
raises ``SinkError`` when it cannot. Sync and asyncio forms have the same shape;
``ThreadedSource`` and ``ThreadedSink`` let the asyncio loop use a sync implementation (files)
from a worker thread. A ``DeadLetterStore`` is a DLQ read back for ``redrive``.

A ``Transport`` opens all of these for the endpoints of one URL scheme; ``loop.endpoints`` holds
the table from scheme to transport. Implementations, in ``policy_engine.loop.transports``:
``jsonl`` (files, stdin/stdout; plain paths and ``-``), ``redis_streams`` (``redis://``,
``rediss://``, ``unix://``: Redis Streams with consumer groups), ``memory`` (in-process
queues, for tests and embedding; registered by whoever uses it).

What the loop reports besides records, each an optional protocol a source or sink may also
implement: ``PositionedSource.position()`` (where it is, for ``/status``: a file's offset, a
stream's last id) and ``SampledStream.sample_stream()`` (a broker stream's length and its consumer
group's lag, as a ``StreamSample``; the loop asks at most once a second). A source that is an
``EnduringSource`` with ``waits_out_outages`` true has its failing reads retried until it answers
again (an outage), not given up after the loop's retries. The loop reports to a
``LoopHealth`` (``policy_engine.metrics.Health``) and asks a ``SharedGuardrails`` store (the
engine's ``guardrail_store``) for a merge once per batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, runtime_checkable

from policy_engine.loop.records import Message, Record, StoredDeadLetter, UnreadableDeadLetter


@runtime_checkable
class Source(Protocol):
    """Where the loop reads messages from."""

    #: Where it reads (a path, a URL without credentials), for logs and summaries.
    description: str

    @property
    def exhausted(self) -> bool:
        """True once there is nothing more to read (a file's end without ``--follow``)."""
        ...

    def read(self, max_messages: int, timeout: float) -> list[Message]:
        """Up to ``max_messages`` messages, waiting at most ``timeout`` seconds for the first;
        an empty list when none came. Raises ``SourceError``."""
        ...

    def ack(self, messages: Sequence[Message]) -> None:
        """Acknowledge messages that were passed on or dead-lettered. Raises ``SourceError``."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...


@runtime_checkable
class Sink(Protocol):
    """Where passed-on messages or dead letters are written."""

    description: str

    def write(self, records: Sequence[Record]) -> None:
        """Write every record; when this returns they are stored (flushed, and for a DLQ file
        fsynced). Raises ``SinkError`` when they may not be."""
        ...

    def close(self) -> None:
        """Flush and release."""
        ...


@runtime_checkable
class AsyncSource(Protocol):
    """``Source`` for asyncio."""

    description: str

    @property
    def exhausted(self) -> bool:
        """True once there is nothing more to read."""
        ...

    async def read(self, max_messages: int, timeout: float) -> list[Message]:
        """Up to ``max_messages`` messages, waiting at most ``timeout`` seconds."""
        ...

    async def ack(self, messages: Sequence[Message]) -> None:
        """Acknowledge messages that were passed on or dead-lettered."""
        ...

    async def close(self) -> None:
        """Release connections and files."""
        ...


@runtime_checkable
class AsyncSink(Protocol):
    """``Sink`` for asyncio."""

    description: str

    async def write(self, records: Sequence[Record]) -> None:
        """Write every record durably; raises ``SinkError`` when they may not be stored."""
        ...

    async def close(self) -> None:
        """Flush and release."""
        ...


@dataclass(frozen=True, slots=True)
class StreamSample:
    """What a broker said of one stream at one moment (``XLEN``, ``XINFO GROUPS``).

    ``length`` is the number of entries; for a source, ``group`` is its consumer group and
    ``lag`` (entries not yet delivered to the group), ``pending`` (delivered, not acknowledged)
    and ``last_delivered_id`` are that group's. ``None`` means unknown (the broker did not say,
    or ``error`` says why the sample failed; ``error`` never holds credentials).
    """

    stream: str
    length: int | None
    group: str | None = None
    lag: int | None = None
    pending: int | None = None
    last_delivered_id: str | None = None
    error: str | None = field(default=None, compare=False)

    def position(self) -> dict[str, Any]:
        """The sample as ``/status`` shows it under ``source``."""
        return {
            "length": self.length,
            "lag": self.lag,
            "pending": self.pending,
            "last_delivered_id": self.last_delivered_id,
        }


@runtime_checkable
class EnduringSource(Protocol):
    """A source that may say its failing reads are an outage to wait out rather than an end: a
    broker consumer that runs until stopped (a Redis stream without ``--drain``). The loop then
    reads it again without a limit (``loop.core.OUTAGE_RETRY``) while its health says the
    source is down; a source without this attribute, or with it false, gives up as a sink does.
    """

    @property
    def waits_out_outages(self) -> bool:
        """Whether a failing read is retried until the source answers again."""
        ...


@runtime_checkable
class PositionedSource(Protocol):
    """A source that can say where it is without any I/O (``/status``'s ``source``)."""

    def position(self) -> dict[str, Any]:
        """Where the source is now: a file's ``offset`` and ``line``, a stream's last id read.
        Names and numbers only: never a payload value or a credential."""
        ...


@runtime_checkable
class SampledStream(Protocol):
    """A source or sink on a broker stream that can say how long the stream is (and, for a
    source, how far its consumer group lags). The loop asks between batches, at most once a
    second, never per message."""

    def sample_stream(self) -> StreamSample:
        """One sample: one round trip to the broker. A broker error comes back as a sample with
        ``error`` set and the numbers ``None``, never as an exception."""
        ...


@runtime_checkable
class AsyncSampledStream(Protocol):
    """``SampledStream`` for asyncio sources and sinks."""

    async def sample_stream(self) -> StreamSample:
        """One sample: one round trip to the broker; errors come back in the sample."""
        ...


@runtime_checkable
class LoopHealth(Protocol):
    """What the loop tells the probes (``policy_engine.metrics.Health`` is one): whether it
    runs, whether its source answers, and where it is."""

    def running(self, alive: bool) -> None:
        """The loop started (``True``) or ended (``False``)."""
        ...

    def source_connected(self) -> None:
        """A read or an acknowledgement worked."""
        ...

    def source_down(self, reason: str) -> None:
        """A read or an acknowledgement failed; ``reason`` holds no credentials."""
        ...

    def source_position(self, **position: Any) -> None:
        """Where the source is (merged into what was reported before)."""
        ...


@runtime_checkable
class SharedGuardrails(Protocol):
    """What the loop needs of a guardrail store shared by a fleet (``RedisGuardrailStore``)."""

    def merge_soon(self) -> None:
        """Ask for a merge of the counts gathered so far; returns at once (the merge runs on
        the store's own thread)."""
        ...


class ThreadedSource:
    """An ``AsyncSource`` running a sync ``Source`` in worker threads (files, stdin)."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.description = source.description

    @property
    def exhausted(self) -> bool:
        """The wrapped source's ``exhausted``."""
        return self.source.exhausted

    def position(self) -> dict[str, Any]:
        """The wrapped source's ``position()``, or nothing when it cannot say."""
        if isinstance(self.source, PositionedSource):
            return self.source.position()
        return {}

    async def read(self, max_messages: int, timeout: float) -> list[Message]:
        """``source.read`` in a worker thread."""
        return await asyncio.to_thread(self.source.read, max_messages, timeout)

    async def ack(self, messages: Sequence[Message]) -> None:
        """``source.ack`` in a worker thread."""
        await asyncio.to_thread(self.source.ack, messages)

    async def close(self) -> None:
        """``source.close``."""
        self.source.close()


class ThreadedSink:
    """An ``AsyncSink`` running a sync ``Sink`` in a worker thread (a DLQ file's fsync)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.description = sink.description

    async def write(self, records: Sequence[Record]) -> None:
        """``sink.write`` in a worker thread."""
        await asyncio.to_thread(self.sink.write, records)

    async def close(self) -> None:
        """``sink.close``."""
        self.sink.close()


@runtime_checkable
class DeadLetterStore(Protocol):
    """A dead-letter queue read back, for ``redrive``: its records, and removing some."""

    #: The DLQ for logs and reports, without credentials.
    description: str

    def read(self) -> Iterator[StoredDeadLetter | UnreadableDeadLetter]:
        """Every record in the DLQ, oldest first. Raises ``SourceError``."""
        ...

    def remove(self, letters: Sequence[StoredDeadLetter]) -> int:
        """Remove ``letters`` (read by ``read`` before) from the DLQ; how many went. Raises
        ``SinkError``; nothing else in the DLQ changes."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...


@dataclass(frozen=True, slots=True)
class SourceOptions:
    """What the caller (``consume``'s options) asks of a source; a transport uses what applies
    to it and refuses what cannot (``ConfigError``).

    ``stdin`` is what ``-`` reads; ``follow`` keeps a file open at its end; ``drain`` stops a
    broker source once it is caught up; ``group``, ``consumer`` and ``claim_idle`` (seconds)
    place it in a consumer group, overriding what the endpoint says.
    """

    stdin: IO[bytes]
    follow: bool = False
    drain: bool = False
    group: str | None = None
    consumer: str | None = None
    claim_idle: float | None = None


@dataclass(frozen=True, slots=True)
class SinkOptions:
    """What the caller asks of a sink: ``stdout`` is what ``-`` writes to; ``fsync=True`` (a
    DLQ) makes every write durable before it returns."""

    stdout: IO[str] | IO[bytes]
    fsync: bool = False


@runtime_checkable
class Transport(Protocol):
    """One way messages travel, for the endpoints of the URL schemes it is registered under
    (``loop.endpoints.TRANSPORTS``). ``text`` is always an endpoint as the user wrote it.

    A new transport is one module defining ``TRANSPORT``, an object with these methods, plus
    one line in that table; nothing in the loop or the CLI changes.
    """

    def open_message_source(self, text: str, options: SourceOptions) -> Source:
        """The ``Source`` named by ``text``. Raises ``ConfigError`` or ``SourceError``."""
        ...

    def open_async_message_source(self, text: str, options: SourceOptions) -> AsyncSource:
        """``open_message_source`` for the asyncio loop."""
        ...

    def open_message_sink(self, text: str, options: SinkOptions) -> Sink:
        """The ``Sink`` named by ``text``. Raises ``ConfigError`` or ``SinkError``."""
        ...

    def open_async_message_sink(self, text: str, options: SinkOptions) -> AsyncSink:
        """``open_message_sink`` for the asyncio loop."""
        ...

    def describe(self, text: str) -> str:
        """``text`` for logs and summaries, without credentials."""
        ...

    def default_dlq(self, source: str) -> str | None:
        """The DLQ endpoint next to the source ``source`` when none is named, or ``None`` when
        one must be named (a file)."""
        ...

    def open_dead_letters(self, text: str) -> DeadLetterStore:
        """The DLQ ``text`` read back, for ``redrive``."""
        ...

    def return_address(self, source: Mapping[str, Any], dlq: str) -> str | None:
        """Where a dead letter read from ``dlq`` goes back to, given the ``source`` position
        recorded in it (``Position.to_dict()``): an endpoint this transport opens, or ``None``
        when the position is not one of its own.

        ``redrive`` asks the DLQ's transport and then the one for plain paths: a position names
        a file completely, but a broker stream only together with the server the DLQ is on.
        """
        ...
