"""In-memory sources and sinks: real implementations of the protocols, for tests and embedding.

>>> source = MemorySource([b'{"schema": "shop.Order", "payload": {}}'])
>>> dlq = MemorySink()
>>> ConsumeLoop(engine, source, dlq=dlq).run()                      # doctest: +SKIP
>>> source.acked, dlq.records                                       # doctest: +SKIP

``MemorySink(fail=n)`` raises ``SinkError`` on its next ``n`` writes (``fail=-1``: always), so a
test can watch the loop keep a batch unacknowledged when its DLQ is down.

``MemoryTransport`` serves them as endpoints (``memory://NAME``) to whatever goes through the
transport table: register it in one line and ``consume``, ``open_message_source`` and
``redrive`` use named in-memory queues::

    transport = MemoryTransport()
    TRANSPORTS["memory"] = transport              # a test: monkeypatch.setitem(...)
    transport.source("in").put(b'{"schema": "shop.Order", "payload": {}}')
    main(["consume", "memory://in", "--output", "memory://out", "--dlq", "memory://dlq"])
    transport.sink("out").records                 # what was passed on
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from policy_engine.errors import SinkError
from policy_engine.loop.protocols import (
    SinkOptions,
    SourceOptions,
    ThreadedSink,
    ThreadedSource,
    Transport,
)
from policy_engine.loop.records import (
    DeadLetter,
    Message,
    Position,
    Record,
    StoredDeadLetter,
    UnreadableDeadLetter,
)
from policy_engine.loop.transports.jsonl import encode_line


class MemorySource:
    """Messages from a list; remembers which were acknowledged.

    ``follow=True`` keeps the source open after the list is read (``put`` adds more, ``end``
    closes it), like a broker that has nothing new right now.
    """

    def __init__(
        self, items: Iterable[bytes | Message] = (), *, follow: bool = False, name: str = "memory"
    ) -> None:
        self.description = name
        self.follow = follow
        self._items: list[Message] = []
        self._next = 0
        self._ended = not follow
        self._cond = threading.Condition()
        #: Messages acknowledged, in order.
        self.acked: list[Message] = []
        for item in items:
            self.put(item)

    def put(self, item: bytes | Message) -> None:
        """Add a message (bytes are numbered in order: ``id`` 1, 2, ...)."""
        with self._cond:
            if isinstance(item, bytes):
                position = Position("memory", self.description, str(len(self._items) + 1))
                item = Message(item, position)
            self._items.append(item)
            self._cond.notify_all()

    def end(self) -> None:
        """No more messages will come: the source is exhausted once read."""
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    @property
    def exhausted(self) -> bool:
        """True once every message was read and no more will come."""
        with self._cond:
            return self._ended and self._next >= len(self._items)

    def read(self, max_messages: int, timeout: float) -> list[Message]:
        """The next messages, waiting up to ``timeout`` s for one if none is there."""
        with self._cond:
            if self._next >= len(self._items) and not self._ended:
                self._cond.wait(timeout)
            batch = self._items[self._next : self._next + max_messages]
            self._next += len(batch)
            return batch

    def ack(self, messages: Sequence[Message]) -> None:
        """Remember the acknowledged messages."""
        with self._cond:
            self.acked.extend(messages)

    def close(self) -> None:
        """Nothing to release."""


class MemorySink:
    """Keeps written records in ``records``; ``fail`` makes the next writes raise."""

    def __init__(self, *, fail: int = 0, name: str = "memory") -> None:
        self.description = name
        self.fail = fail
        self.records: list[Record] = []
        #: Every write attempted, including failed ones.
        self.attempts = 0
        self.closed = False

    def write(self, records: Sequence[Record]) -> None:
        """Store the records, or raise ``SinkError`` while ``fail`` says so."""
        self.attempts += 1
        if self.fail:
            if self.fail > 0:
                self.fail -= 1
            raise SinkError(f"{self.description}: refusing writes", endpoint=self.description)
        self.records.extend(records)

    def lines(self) -> list[bytes]:
        """The records as a JSONL sink would write them, one line each."""
        return [encode_line(r) for r in self.records]

    def close(self) -> None:
        """Remember that it was closed."""
        self.closed = True


class MemoryDeadLetters:
    """The dead letters a ``MemorySink`` holds, read back for ``redrive``; ``id`` is a record's
    1-based place in the sink as first read, and ``remove`` takes records out of the sink."""

    def __init__(self, sink: MemorySink) -> None:
        self.sink = sink
        self.description = sink.description
        self._read: dict[str, Record] = {}

    def read(self) -> Iterator[StoredDeadLetter | UnreadableDeadLetter]:
        """Each ``DeadLetter`` of the sink; any other record is not one (unreadable)."""
        self._read = {}
        for number, record in enumerate(list(self.sink.records), start=1):
            self._read[str(number)] = record
            if not isinstance(record, DeadLetter):
                yield UnreadableDeadLetter(str(number), f"a {type(record).__name__} record")
                continue
            message = record.message
            fields = dict(message.fields) if message.fields is not None else None
            yield StoredDeadLetter(str(number), message.data, fields, dict(record.context))

    def remove(self, letters: Sequence[StoredDeadLetter]) -> int:
        """Take the records of ``letters`` out of the sink."""
        gone = [self._read[letter.id] for letter in letters if letter.id in self._read]
        # By identity: two dead letters of the same bytes are equal, yet only one may go.
        ids = {id(record) for record in gone}
        self.sink.records = [r for r in self.sink.records if id(r) not in ids]
        return len(gone)

    def close(self) -> None:
        """Nothing to release."""


class MemoryTransport:
    """Named in-memory queues as endpoints ``<scheme>://NAME``, for tests and embedding.

    What ``<scheme>://NAME`` reads comes from ``source(NAME)``; what is written to it lands in
    ``sink(NAME)``. A source ends once read, like a file, unless ``follow=True`` (then it waits
    for ``put`` until ``end``). Not in the default table: register an instance under the scheme
    it was made for.
    """

    def __init__(self, scheme: str = "memory", *, follow: bool = False) -> None:
        self.scheme = scheme
        self.follow = follow
        self.sources: dict[str, MemorySource] = {}
        self.sinks: dict[str, MemorySink] = {}

    def _name(self, text: str) -> str:
        return text.split("://", 1)[1] if "://" in text else text

    def source(self, name: str) -> MemorySource:
        """The source ``<scheme>://name`` reads (made on first use)."""
        if name not in self.sources:
            self.sources[name] = MemorySource(follow=self.follow, name=f"{self.scheme}://{name}")
        return self.sources[name]

    def sink(self, name: str) -> MemorySink:
        """The sink ``<scheme>://name`` writes to (made on first use)."""
        if name not in self.sinks:
            self.sinks[name] = MemorySink(name=f"{self.scheme}://{name}")
        return self.sinks[name]

    def open_message_source(self, text: str, options: SourceOptions) -> MemorySource:
        """``source(NAME)``."""
        return self.source(self._name(text))

    def open_async_message_source(self, text: str, options: SourceOptions) -> ThreadedSource:
        """``source(NAME)`` for the asyncio loop."""
        return ThreadedSource(self.open_message_source(text, options))

    def open_message_sink(self, text: str, options: SinkOptions) -> MemorySink:
        """``sink(NAME)``."""
        return self.sink(self._name(text))

    def open_async_message_sink(self, text: str, options: SinkOptions) -> ThreadedSink:
        """``sink(NAME)`` for the asyncio loop."""
        return ThreadedSink(self.open_message_sink(text, options))

    def describe(self, text: str) -> str:
        """``text`` (no credentials in a queue's name)."""
        return text

    def default_dlq(self, source: str) -> str | None:
        """``<scheme>://NAME:dlq``, like a Redis stream's."""
        return f"{self.scheme}://{self._name(source)}:dlq"

    def open_dead_letters(self, text: str) -> MemoryDeadLetters:
        """The dead letters in ``sink(NAME)``."""
        return MemoryDeadLetters(self.sink(self._name(text)))

    def return_address(self, source: Mapping[str, Any], dlq: str) -> str | None:
        """The queue a message of one of this transport's sources was read from."""
        stream = source.get("stream")
        prefix = f"{self.scheme}://"
        if source.get("kind") != "memory" or not isinstance(stream, str):
            return None
        return stream if stream.startswith(prefix) else None


if TYPE_CHECKING:
    # Where mypy checks that MemoryTransport is a complete Transport.
    _transport: Transport = MemoryTransport()
