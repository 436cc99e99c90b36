"""The enforcement loop (SPEC §10): read messages, evaluate, pass on, dead-letter, acknowledge.

- ``ConsumeLoop`` / ``AsyncConsumeLoop``: the loop over a ``Source`` and ``Sink``s, sync or
  asyncio, both driving the one sans-I/O step ``plan_batch``; at-least-once.
- Sources and sinks: ``JsonlSource``/``JsonlSink`` (files, stdin, stdout; DLQ appends fsynced),
  ``RedisStreamSource``/``RedisStreamSink`` (consumer groups, ``XAUTOCLAIM``) and their asyncio
  forms, ``MemorySource``/``MemorySink`` for tests; ``open_source``/``open_sink`` build them from
  the CLI's SOURCE/SINK strings.
- ``DeadLetter``: the DLQ record (original bytes plus schema, track, mode, rule, checksum,
  violations, source position, time, exception class); ``mask_violations``.
- ``enforce_handler``: the same enforcement in front of your own handler, with a retry policy for
  the handler's exceptions (``RetryPolicy``) kept apart from validation rejections.
- ``replay_dead_letters``: publish again what now passes (``policy-engine replay-dlq``).
"""

from engine.loop.core import (
    AsyncConsumeLoop,
    ConsumeLoop,
    IoRetry,
    LoopStats,
    Plan,
    aevaluate_plan,
    evaluate_plan,
    plan_batch,
)
from engine.loop.endpoints import (
    default_dlq,
    open_async_sink,
    open_async_source,
    open_sink,
    open_source,
)
from engine.loop.jsonl import JsonlSink, JsonlSource
from engine.loop.memory import MemorySink, MemorySource
from engine.loop.middleware import (
    AsyncEnforcedHandler,
    EnforcedHandler,
    Outcome,
    RetryPolicy,
    enforce_handler,
)
from engine.loop.protocols import (
    AsyncSink,
    AsyncSource,
    Sink,
    Source,
    ThreadedSink,
    ThreadedSource,
)
from engine.loop.records import (
    BAD_ENVELOPE,
    EVALUATION_ERROR,
    HANDLER_ERROR,
    REJECTED,
    DeadLetter,
    Message,
    Passed,
    Position,
    StoredDeadLetter,
    mask_violations,
)
from engine.loop.redis_streams import (
    AsyncRedisStreamSink,
    AsyncRedisStreamSource,
    RedisEndpoint,
    RedisStreamSink,
    RedisStreamSource,
    parse_redis_url,
)
from engine.loop.replay import ReplayReport, replay_dead_letters

__all__ = [
    "BAD_ENVELOPE",
    "EVALUATION_ERROR",
    "HANDLER_ERROR",
    "REJECTED",
    "AsyncConsumeLoop",
    "AsyncEnforcedHandler",
    "AsyncRedisStreamSink",
    "AsyncRedisStreamSource",
    "AsyncSink",
    "AsyncSource",
    "ConsumeLoop",
    "DeadLetter",
    "EnforcedHandler",
    "IoRetry",
    "JsonlSink",
    "JsonlSource",
    "LoopStats",
    "MemorySink",
    "MemorySource",
    "Message",
    "Outcome",
    "Passed",
    "Plan",
    "Position",
    "RedisEndpoint",
    "RedisStreamSink",
    "RedisStreamSource",
    "ReplayReport",
    "RetryPolicy",
    "Sink",
    "Source",
    "StoredDeadLetter",
    "ThreadedSink",
    "ThreadedSource",
    "aevaluate_plan",
    "default_dlq",
    "enforce_handler",
    "evaluate_plan",
    "mask_violations",
    "open_async_sink",
    "open_async_source",
    "open_sink",
    "open_source",
    "parse_redis_url",
    "plan_batch",
    "replay_dead_letters",
]
