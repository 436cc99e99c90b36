"""In-memory sources and sinks: real implementations of the protocols, for tests and embedding.

>>> source = MemorySource([b'{"schema": "shop.Order", "payload": {}}'])
>>> dlq = MemorySink()
>>> ConsumeLoop(engine, source, dlq=dlq).run()                      # doctest: +SKIP
>>> source.acked, dlq.records                                       # doctest: +SKIP

``MemorySink(fail=n)`` raises ``SinkError`` on its next ``n`` writes (``fail=-1``: always), so a
test can watch the loop keep a batch unacknowledged when its DLQ is down.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

from policy_engine.errors import SinkError
from policy_engine.loop.records import Message, Position, Record


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
        """The records as JSONL lines."""
        return [r.to_line() for r in self.records]

    def close(self) -> None:
        """Remember that it was closed."""
        self.closed = True
