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

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: Where each public name lives; imported on first use (``import engine`` stays free of
#: redis-py and the sources and sinks until the loop is used).
_WHERE: dict[str, str] = {
    "AsyncConsumeLoop": "engine.loop.core",
    "AsyncEnforcedHandler": "engine.loop.middleware",
    "AsyncRedisStreamSink": "engine.loop.redis_streams",
    "AsyncRedisStreamSource": "engine.loop.redis_streams",
    "AsyncSink": "engine.loop.protocols",
    "AsyncSource": "engine.loop.protocols",
    "BAD_ENVELOPE": "engine.loop.records",
    "ConsumeLoop": "engine.loop.core",
    "DeadLetter": "engine.loop.records",
    "EVALUATION_ERROR": "engine.loop.records",
    "EnforcedHandler": "engine.loop.middleware",
    "HANDLER_ERROR": "engine.loop.records",
    "IoRetry": "engine.loop.core",
    "JsonlSink": "engine.loop.jsonl",
    "JsonlSource": "engine.loop.jsonl",
    "LoopStats": "engine.loop.core",
    "MemorySink": "engine.loop.memory",
    "MemorySource": "engine.loop.memory",
    "Message": "engine.loop.records",
    "Outcome": "engine.loop.middleware",
    "Passed": "engine.loop.records",
    "Plan": "engine.loop.core",
    "Position": "engine.loop.records",
    "REJECTED": "engine.loop.records",
    "RedisEndpoint": "engine.loop.redis_streams",
    "RedisStreamSink": "engine.loop.redis_streams",
    "RedisStreamSource": "engine.loop.redis_streams",
    "ReplayReport": "engine.loop.replay",
    "RetryPolicy": "engine.loop.middleware",
    "Sink": "engine.loop.protocols",
    "Source": "engine.loop.protocols",
    "StoredDeadLetter": "engine.loop.records",
    "ThreadedSink": "engine.loop.protocols",
    "ThreadedSource": "engine.loop.protocols",
    "aevaluate_plan": "engine.loop.core",
    "default_dlq": "engine.loop.endpoints",
    "enforce_handler": "engine.loop.middleware",
    "evaluate_plan": "engine.loop.core",
    "mask_violations": "engine.loop.records",
    "open_async_sink": "engine.loop.endpoints",
    "open_async_source": "engine.loop.endpoints",
    "open_sink": "engine.loop.endpoints",
    "open_source": "engine.loop.endpoints",
    "parse_redis_url": "engine.loop.redis_streams",
    "plan_batch": "engine.loop.core",
    "replay_dead_letters": "engine.loop.replay",
}

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


def __getattr__(name: str) -> Any:
    """Import the module a public name lives in on first use (PEP 562)."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'engine.loop' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names, for ``dir()`` and completion."""
    return sorted(__all__)
