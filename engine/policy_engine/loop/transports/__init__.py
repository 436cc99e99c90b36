"""The transports the loop moves messages with, one module each (see ``loop.endpoints``).

A transport module defines ``TRANSPORT``, an object satisfying ``loop.protocols.Transport``:
it opens sync and asyncio sources and sinks for its endpoints, encodes the loop's plain records
(``Passed``, ``DeadLetter``, ``Redriven``) in its own wire format, describes an endpoint without
credentials, names the default DLQ next to a source, and reads a DLQ back for ``redrive``.
Registering it is one line in ``loop.endpoints.TRANSPORTS``.

- ``jsonl``: files, stdin and stdout (plain paths and ``-``);
- ``redis_streams``: Redis Streams with consumer groups (``redis://``, ``rediss://``,
  ``unix://``);
- ``memory``: in-process queues (``MemoryTransport``), for tests and embedding;
- ``wire``: the JSON pieces every transport writes alike.

Nothing is imported here, so that naming one transport does not import another's client
library (redis-py).
"""
