"""The enforcement loop: read messages, evaluate, pass on, dead-letter, acknowledge.

- ``ConsumeLoop`` / ``AsyncConsumeLoop``: the loop over a ``Source`` and ``Sink``s, sync or
  asyncio, both driving the one sans-I/O step ``decide_batch`` (a batch's ``BatchResult``);
  at-least-once. Besides records they report through ``LoopReports``: to a ``LoopHealth``
  (running, source up or down, ``PositionedSource`` position), a merge request per batch to a
  ``SharedGuardrails`` store, and ``StreamSample``s of ``SampledStream`` endpoints (XLEN/XINFO)
  to the metrics hook, at most once a second.
- Endpoints: ``open_message_source``/``open_message_sink`` (and ``open_async_*``) build sources
  and sinks from the CLI's SOURCE/SINK strings through one table, ``TRANSPORTS``, from URL
  scheme to ``Transport`` (``redis://``, ``rediss://``, ``unix://``; plain paths and ``-`` go to
  the JSONL transport). The transports live in ``policy_engine.loop.transports``:
  ``JsonlSource``/``JsonlSink`` (files, stdin, stdout; DLQ appends fsynced),
  ``RedisStreamSource``/``RedisStreamSink`` (consumer groups, ``XAUTOCLAIM``) and their asyncio
  forms, ``MemorySource``/``MemorySink``/``MemoryTransport`` for tests. Each encodes the plain
  records (``Passed``, ``DeadLetter``, ``Redriven``) in its own wire format.
- ``DeadLetter``: the DLQ record (original bytes plus schema, track, mode, rule, checksum,
  violations, source position, time, exception class); ``mask_violations``.
- ``enforce_handler``: the same enforcement in front of your own handler, with a retry policy for
  the handler's exceptions (``RetryPolicy``) kept apart from validation rejections.
- ``redrive_dead_letters``: send back what now passes (``policy-engine redrive``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from policy_engine.loop.core import (
        OUTAGE_RETRY,
        AsyncConsumeLoop,
        BatchResult,
        ConsumeLoop,
        IoRetry,
        LoopReports,
        LoopStats,
        aevaluate_batch,
        decide_batch,
        evaluate_batch,
    )
    from policy_engine.loop.endpoints import (
        TRANSPORTS,
        default_dlq,
        describe_endpoint,
        open_async_message_sink,
        open_async_message_source,
        open_dead_letters,
        open_message_sink,
        open_message_source,
        transport_for,
    )
    from policy_engine.loop.middleware import (
        AsyncEnforcedHandler,
        EnforcedHandler,
        Outcome,
        RetryPolicy,
        enforce_handler,
    )
    from policy_engine.loop.protocols import (
        AsyncSampledStream,
        AsyncSink,
        AsyncSource,
        DeadLetterStore,
        EnduringSource,
        LoopHealth,
        PositionedSource,
        SampledStream,
        SharedGuardrails,
        Sink,
        SinkOptions,
        Source,
        SourceOptions,
        StreamSample,
        ThreadedSink,
        ThreadedSource,
        Transport,
    )
    from policy_engine.loop.records import (
        BAD_ENVELOPE,
        EVALUATION_ERROR,
        HANDLER_ERROR,
        REJECTED,
        DeadLetter,
        Message,
        Passed,
        Position,
        Record,
        Redriven,
        StoredDeadLetter,
        UnreadableDeadLetter,
        mask_violations,
    )
    from policy_engine.loop.redrive import RedriveReport, redrive_dead_letters
    from policy_engine.loop.transports.jsonl import JsonlSink, JsonlSource
    from policy_engine.loop.transports.memory import MemorySink, MemorySource, MemoryTransport
    from policy_engine.loop.transports.redis_streams import (
        AsyncRedisStreamSink,
        AsyncRedisStreamSource,
        RedisEndpoint,
        RedisStreamSink,
        RedisStreamSource,
        parse_redis_url,
    )

#: Where each public name lives; imported on first use (``import policy_engine`` stays free of
#: redis-py and the sources and sinks until the loop is used).
_WHERE: dict[str, str] = {
    "AsyncConsumeLoop": "policy_engine.loop.core",
    "AsyncEnforcedHandler": "policy_engine.loop.middleware",
    "AsyncRedisStreamSink": "policy_engine.loop.transports.redis_streams",
    "AsyncRedisStreamSource": "policy_engine.loop.transports.redis_streams",
    "AsyncSampledStream": "policy_engine.loop.protocols",
    "AsyncSink": "policy_engine.loop.protocols",
    "AsyncSource": "policy_engine.loop.protocols",
    "BAD_ENVELOPE": "policy_engine.loop.records",
    "BatchResult": "policy_engine.loop.core",
    "ConsumeLoop": "policy_engine.loop.core",
    "DeadLetter": "policy_engine.loop.records",
    "DeadLetterStore": "policy_engine.loop.protocols",
    "EVALUATION_ERROR": "policy_engine.loop.records",
    "EnduringSource": "policy_engine.loop.protocols",
    "EnforcedHandler": "policy_engine.loop.middleware",
    "HANDLER_ERROR": "policy_engine.loop.records",
    "IoRetry": "policy_engine.loop.core",
    "JsonlSink": "policy_engine.loop.transports.jsonl",
    "JsonlSource": "policy_engine.loop.transports.jsonl",
    "LoopHealth": "policy_engine.loop.protocols",
    "LoopReports": "policy_engine.loop.core",
    "LoopStats": "policy_engine.loop.core",
    "MemorySink": "policy_engine.loop.transports.memory",
    "MemorySource": "policy_engine.loop.transports.memory",
    "MemoryTransport": "policy_engine.loop.transports.memory",
    "Message": "policy_engine.loop.records",
    "OUTAGE_RETRY": "policy_engine.loop.core",
    "Outcome": "policy_engine.loop.middleware",
    "Passed": "policy_engine.loop.records",
    "Position": "policy_engine.loop.records",
    "PositionedSource": "policy_engine.loop.protocols",
    "REJECTED": "policy_engine.loop.records",
    "Record": "policy_engine.loop.records",
    "RedisEndpoint": "policy_engine.loop.transports.redis_streams",
    "RedisStreamSink": "policy_engine.loop.transports.redis_streams",
    "RedisStreamSource": "policy_engine.loop.transports.redis_streams",
    "RedriveReport": "policy_engine.loop.redrive",
    "Redriven": "policy_engine.loop.records",
    "RetryPolicy": "policy_engine.loop.middleware",
    "SampledStream": "policy_engine.loop.protocols",
    "SharedGuardrails": "policy_engine.loop.protocols",
    "Sink": "policy_engine.loop.protocols",
    "SinkOptions": "policy_engine.loop.protocols",
    "Source": "policy_engine.loop.protocols",
    "SourceOptions": "policy_engine.loop.protocols",
    "StoredDeadLetter": "policy_engine.loop.records",
    "StreamSample": "policy_engine.loop.protocols",
    "TRANSPORTS": "policy_engine.loop.endpoints",
    "ThreadedSink": "policy_engine.loop.protocols",
    "ThreadedSource": "policy_engine.loop.protocols",
    "Transport": "policy_engine.loop.protocols",
    "UnreadableDeadLetter": "policy_engine.loop.records",
    "aevaluate_batch": "policy_engine.loop.core",
    "decide_batch": "policy_engine.loop.core",
    "default_dlq": "policy_engine.loop.endpoints",
    "describe_endpoint": "policy_engine.loop.endpoints",
    "enforce_handler": "policy_engine.loop.middleware",
    "evaluate_batch": "policy_engine.loop.core",
    "mask_violations": "policy_engine.loop.records",
    "open_async_message_sink": "policy_engine.loop.endpoints",
    "open_async_message_source": "policy_engine.loop.endpoints",
    "open_dead_letters": "policy_engine.loop.endpoints",
    "open_message_sink": "policy_engine.loop.endpoints",
    "open_message_source": "policy_engine.loop.endpoints",
    "parse_redis_url": "policy_engine.loop.transports.redis_streams",
    "redrive_dead_letters": "policy_engine.loop.redrive",
    "transport_for": "policy_engine.loop.endpoints",
}

__all__ = [
    "BAD_ENVELOPE",
    "EVALUATION_ERROR",
    "HANDLER_ERROR",
    "OUTAGE_RETRY",
    "REJECTED",
    "TRANSPORTS",
    "AsyncConsumeLoop",
    "AsyncEnforcedHandler",
    "AsyncRedisStreamSink",
    "AsyncRedisStreamSource",
    "AsyncSampledStream",
    "AsyncSink",
    "AsyncSource",
    "BatchResult",
    "ConsumeLoop",
    "DeadLetter",
    "DeadLetterStore",
    "EnduringSource",
    "EnforcedHandler",
    "IoRetry",
    "JsonlSink",
    "JsonlSource",
    "LoopHealth",
    "LoopReports",
    "LoopStats",
    "MemorySink",
    "MemorySource",
    "MemoryTransport",
    "Message",
    "Outcome",
    "Passed",
    "Position",
    "PositionedSource",
    "Record",
    "RedisEndpoint",
    "RedisStreamSink",
    "RedisStreamSource",
    "RedriveReport",
    "Redriven",
    "RetryPolicy",
    "SampledStream",
    "SharedGuardrails",
    "Sink",
    "SinkOptions",
    "Source",
    "SourceOptions",
    "StoredDeadLetter",
    "StreamSample",
    "ThreadedSink",
    "ThreadedSource",
    "Transport",
    "UnreadableDeadLetter",
    "aevaluate_batch",
    "decide_batch",
    "default_dlq",
    "describe_endpoint",
    "enforce_handler",
    "evaluate_batch",
    "mask_violations",
    "open_async_message_sink",
    "open_async_message_source",
    "open_dead_letters",
    "open_message_sink",
    "open_message_source",
    "parse_redis_url",
    "redrive_dead_letters",
    "transport_for",
]


def __getattr__(name: str) -> Any:
    """Import the module a public name lives in on first use (PEP 562)."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'policy_engine.loop' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names, for ``dir()`` and completion."""
    return sorted(__all__)
