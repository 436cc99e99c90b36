"""The small protocols the loop talks to: where messages come from and where they go.

A ``Source`` hands out batches of ``Message`` and takes acknowledgements; a ``Sink`` writes
records (passed-on messages or dead letters) durably before ``write`` returns, and raises
``SinkError`` when it cannot. Sync and asyncio forms have the same shape; ``ThreadedSource`` and
``ThreadedSink`` let the asyncio loop use a sync implementation (files) from a worker thread.

Implementations: ``policy_engine.loop.jsonl`` (files, stdin/stdout),
``policy_engine.loop.redis_streams`` (Redis Streams with consumer groups),
``policy_engine.loop.memory`` (in memory, for tests and embedding).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from policy_engine.loop.records import Message, Record


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


class ThreadedSource:
    """An ``AsyncSource`` running a sync ``Source`` in worker threads (files, stdin)."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.description = source.description

    @property
    def exhausted(self) -> bool:
        """The wrapped source's ``exhausted``."""
        return self.source.exhausted

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
