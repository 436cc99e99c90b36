"""SOURCE and SINK as the CLI writes them: a file path, ``-``, or a URL, and the one
table that says which transport opens which.

``TRANSPORTS`` maps a URL scheme to the transport that handles it; a plain path or ``-`` (no
``scheme://``) goes to ``DEFAULT_TRANSPORT`` (JSONL files, stdin/stdout). Every function here,
and through them ``consume`` and ``redrive``, looks the transport up in that table and nowhere
else, so a new transport is one module (``loop.transports``) plus one line in the table. An
entry names the module that defines ``TRANSPORT`` (imported on first use, so that ``import
policy_engine.loop`` does not import redis-py) or is the transport object itself (a test's
``MemoryTransport``).

>>> source = open_message_source("redis://127.0.0.1:6379/0?stream=events&group=g",
...                              stdin=sys.stdin.buffer)           # doctest: +SKIP
>>> dlq = open_message_sink("dlq.jsonl", stdout=sys.stdout, fsync=True)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import re
from typing import IO

from policy_engine.errors import ConfigError
from policy_engine.loop.protocols import (
    AsyncSink,
    AsyncSource,
    DeadLetterStore,
    Sink,
    SinkOptions,
    Source,
    SourceOptions,
    Transport,
)

#: URL scheme (lower case, without ``://``) -> the transport for its endpoints: the dotted name
#: of a module whose ``TRANSPORT`` is the transport, or a ``Transport`` object.
TRANSPORTS: dict[str, str | Transport] = {
    "redis": "policy_engine.loop.transports.redis_streams",
    "rediss": "policy_engine.loop.transports.redis_streams",
    "unix": "policy_engine.loop.transports.redis_streams",
}
#: The transport of a plain path and of ``-``.
DEFAULT_TRANSPORT: str | Transport = "policy_engine.loop.transports.jsonl"

# RFC 3986 scheme syntax; "://" is required so that "C:\feed.jsonl" or "a:b.jsonl" stay paths.
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def scheme_of(text: str) -> str | None:
    """The URL scheme of ``text`` in lower case (``redis`` for ``redis://...``), or ``None``
    for a plain path or ``-``."""
    match = _SCHEME.match(text)
    return match.group(1).lower() if match else None


def _resolve(entry: str | Transport) -> Transport:
    if not isinstance(entry, str):
        return entry
    transport: Transport = importlib.import_module(entry).TRANSPORT
    return transport


def transport_for(text: str) -> Transport:
    """The transport for the endpoint ``text``; ``ConfigError`` naming the known schemes when
    its scheme is not in ``TRANSPORTS``."""
    scheme = scheme_of(text)
    if scheme is None:
        return _resolve(DEFAULT_TRANSPORT)
    entry = TRANSPORTS.get(scheme)
    if entry is None:
        known = ", ".join(f"{name}://" for name in sorted(TRANSPORTS))
        # Only the scheme is quoted: the rest of a URL may hold a password.
        raise ConfigError(
            f"unknown endpoint scheme '{scheme}://'; known: {known}, or a file path or '-'"
        )
    return _resolve(entry)


def default_transport() -> Transport:
    """The transport of plain paths and ``-``."""
    return _resolve(DEFAULT_TRANSPORT)


def open_message_source(
    text: str,
    *,
    stdin: IO[bytes],
    follow: bool = False,
    drain: bool = False,
    group: str | None = None,
    consumer: str | None = None,
    claim_idle: float | None = None,
) -> Source:
    """The message ``Source`` named by ``text``. A file stops at its end unless ``follow``; a
    Redis stream runs until stopped unless ``drain`` (stop when caught up)."""
    options = SourceOptions(stdin, follow, drain, group, consumer, claim_idle)
    return transport_for(text).open_message_source(text, options)


def open_async_message_source(
    text: str,
    *,
    stdin: IO[bytes],
    follow: bool = False,
    drain: bool = False,
    group: str | None = None,
    consumer: str | None = None,
    claim_idle: float | None = None,
) -> AsyncSource:
    """``open_message_source`` for the asyncio loop (files are read in a worker thread)."""
    options = SourceOptions(stdin, follow, drain, group, consumer, claim_idle)
    return transport_for(text).open_async_message_source(text, options)


def open_message_sink(text: str, *, stdout: IO[str] | IO[bytes], fsync: bool = False) -> Sink:
    """The message ``Sink`` named by ``text``; ``fsync=True`` for a DLQ."""
    return transport_for(text).open_message_sink(text, SinkOptions(stdout, fsync))


def open_async_message_sink(
    text: str, *, stdout: IO[str] | IO[bytes], fsync: bool = False
) -> AsyncSink:
    """``open_message_sink`` for the asyncio loop."""
    return transport_for(text).open_async_message_sink(text, SinkOptions(stdout, fsync))


def default_dlq(source: str) -> str | None:
    """The DLQ next to the source ``source`` (for Redis: same server, stream ``<stream>:dlq``);
    ``None`` for a file or stdin, whose DLQ must be named."""
    return transport_for(source).default_dlq(source)


def describe_endpoint(text: str) -> str:
    """``text`` for logs and summaries, without a password."""
    return transport_for(text).describe(text)


def open_dead_letters(text: str) -> DeadLetterStore:
    """The DLQ ``text`` read back (for ``redrive``)."""
    return transport_for(text).open_dead_letters(text)
