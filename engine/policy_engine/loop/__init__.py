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
    from policy_engine.loop.core import (
        AsyncConsumeLoop,
        ConsumeLoop,
        IoRetry,
        LoopStats,
        Plan,
        aevaluate_plan,
        evaluate_plan,
        plan_batch,
    )
    from policy_engine.loop.endpoints import (
        default_dlq,
        open_async_sink,
        open_async_source,
        open_sink,
        open_source,
    )
    from policy_engine.loop.jsonl import JsonlSink, JsonlSource
    from policy_engine.loop.memory import MemorySink, MemorySource
    from policy_engine.loop.middleware import (
        AsyncEnforcedHandler,
        EnforcedHandler,
        Outcome,
        RetryPolicy,
        enforce_handler,
    )
    from policy_engine.loop.protocols import (
        AsyncSink,
        AsyncSource,
        Sink,
        Source,
        ThreadedSink,
        ThreadedSource,
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
        StoredDeadLetter,
        mask_violations,
    )
    from policy_engine.loop.redis_streams import (
        AsyncRedisStreamSink,
        AsyncRedisStreamSource,
        RedisEndpoint,
        RedisStreamSink,
        RedisStreamSource,
        parse_redis_url,
    )
    from policy_engine.loop.replay import ReplayReport, replay_dead_letters

#: Where each public name lives; imported on first use (``import policy_engine`` stays free of
#: redis-py and the sources and sinks until the loop is used).
_WHERE: dict[str, str] = {
    "AsyncConsumeLoop": "policy_engine.loop.core",
    "AsyncEnforcedHandler": "policy_engine.loop.middleware",
    "AsyncRedisStreamSink": "policy_engine.loop.redis_streams",
    "AsyncRedisStreamSource": "policy_engine.loop.redis_streams",
    "AsyncSink": "policy_engine.loop.protocols",
    "AsyncSource": "policy_engine.loop.protocols",
    "BAD_ENVELOPE": "policy_engine.loop.records",
    "ConsumeLoop": "policy_engine.loop.core",
    "DeadLetter": "policy_engine.loop.records",
    "EVALUATION_ERROR": "policy_engine.loop.records",
    "EnforcedHandler": "policy_engine.loop.middleware",
    "HANDLER_ERROR": "policy_engine.loop.records",
    "IoRetry": "policy_engine.loop.core",
    "JsonlSink": "policy_engine.loop.jsonl",
    "JsonlSource": "policy_engine.loop.jsonl",
    "LoopStats": "policy_engine.loop.core",
    "MemorySink": "policy_engine.loop.memory",
    "MemorySource": "policy_engine.loop.memory",
    "Message": "policy_engine.loop.records",
    "Outcome": "policy_engine.loop.middleware",
    "Passed": "policy_engine.loop.records",
    "Plan": "policy_engine.loop.core",
    "Position": "policy_engine.loop.records",
    "REJECTED": "policy_engine.loop.records",
    "RedisEndpoint": "policy_engine.loop.redis_streams",
    "RedisStreamSink": "policy_engine.loop.redis_streams",
    "RedisStreamSource": "policy_engine.loop.redis_streams",
    "ReplayReport": "policy_engine.loop.replay",
    "RetryPolicy": "policy_engine.loop.middleware",
    "Sink": "policy_engine.loop.protocols",
    "Source": "policy_engine.loop.protocols",
    "StoredDeadLetter": "policy_engine.loop.records",
    "ThreadedSink": "policy_engine.loop.protocols",
    "ThreadedSource": "policy_engine.loop.protocols",
    "aevaluate_plan": "policy_engine.loop.core",
    "default_dlq": "policy_engine.loop.endpoints",
    "enforce_handler": "policy_engine.loop.middleware",
    "evaluate_plan": "policy_engine.loop.core",
    "mask_violations": "policy_engine.loop.records",
    "open_async_sink": "policy_engine.loop.endpoints",
    "open_async_source": "policy_engine.loop.endpoints",
    "open_sink": "policy_engine.loop.endpoints",
    "open_source": "policy_engine.loop.endpoints",
    "parse_redis_url": "policy_engine.loop.redis_streams",
    "plan_batch": "policy_engine.loop.core",
    "replay_dead_letters": "policy_engine.loop.replay",
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
        raise AttributeError(f"module 'policy_engine.loop' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names, for ``dir()`` and completion."""
    return sorted(__all__)
