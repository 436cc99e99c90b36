"""``enforce_handler``: wrap a consumer's own message handler with enforcement and a DLQ.

For code that already has a consumer loop (its own Redis, Kafka or SQS client) and only wants
the engine's decision in front of its handler::

    handle = enforce_handler(
        engine,
        process_order,                       # your handler: called for accepted/logged/skipped
        dlq=JsonlSink("dlq.jsonl", fsync=True),
        schema_of=lambda m: m["schema"],
        payload_of=lambda m: m["payload"],
        key_of=lambda m: m.get("key"),
        retry=RetryPolicy(attempts=3, backoff=0.5),
    )
    for message in consumer:
        handle(message)          # returns when the message is handled or dead-lettered
        consumer.ack(message)    # so acknowledge only after it returned

Two failures are kept apart:

- a **rejection** (strict mode, the payload breaks its schema) is never retried: the message is
  dead-lettered at once with reason ``rejected`` and the handler is not called;
- the **handler raising** is retried under ``RetryPolicy`` (attempts, exponential backoff, which
  exceptions); when the attempts are spent the message is dead-lettered with reason
  ``handler_error`` and the exception's class (or the exception is raised again with
  ``RetryPolicy(dead_letter=False)``, leaving redelivery to the caller's broker).

If the DLQ write itself fails, ``SinkError`` propagates: the caller must not acknowledge.
An ``async def`` handler gets the asyncio form (``aevaluate``, ``asyncio.sleep``).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar, overload

from policy_engine.decision import Decision
from policy_engine.engine import PolicyEngine
from policy_engine.errors import ConfigError
from policy_engine.loop.protocols import AsyncSink, Sink
from policy_engine.loop.records import (
    HANDLER_ERROR,
    REJECTED,
    DeadLetter,
    Message,
    Position,
    error_context,
    rejection_context,
)
from policy_engine.modes import Action

log = logging.getLogger("policy_engine.loop")

M = TypeVar("M")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a handler that raises is retried (validation rejections are never retried).

    ``attempts`` counts every call, the first included. Between calls the wait starts at
    ``backoff`` seconds and doubles, up to ``max_backoff``. Only exceptions that are instances of
    ``retry_on`` are retried; any other exception is final at once. When the attempts are spent:
    ``dead_letter=True`` writes the message to the DLQ (reason ``handler_error``), ``False``
    raises the last exception.
    """

    attempts: int = 3
    backoff: float = 0.1
    max_backoff: float = 5.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    dead_letter: bool = True

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigError("RetryPolicy.attempts must be 1 or more")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ConfigError("RetryPolicy backoffs must be >= 0 seconds")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed call number ``attempt`` (1-based)."""
        return float(min(self.backoff * 2 ** (attempt - 1), self.max_backoff))

    def retries(self, exc: BaseException, attempt: int) -> bool:
        """Whether call number ``attempt``, which raised ``exc``, is followed by another."""
        return attempt < self.attempts and isinstance(exc, self.retry_on)


@dataclass(slots=True)
class Outcome(Generic[R]):
    """What happened to one message: ``handled`` (the handler returned ``result``) or
    ``dead_lettered`` (``reason`` ``rejected`` or ``handler_error``; ``error`` is the handler's
    last exception)."""

    status: Literal["handled", "dead_lettered"]
    decision: Decision
    attempts: int = 0
    result: R | None = None
    reason: str | None = None
    error: BaseException | None = field(default=None, repr=False)

    @property
    def handled(self) -> bool:
        """True when the handler processed the message."""
        return self.status == "handled"


def _identity(message: Any) -> Any:
    return message


def _raw_default(message: Any, payload: Any) -> bytes:
    if isinstance(message, bytes):
        return message
    if isinstance(message, str):
        return message.encode("utf-8")
    try:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError):
        return repr(payload).encode("utf-8")


class _Base(Generic[M]):
    """What the sync and asyncio forms share: configuration and the dead-letter records."""

    def __init__(
        self,
        engine: PolicyEngine,
        handler: Callable[[M], Any],
        *,
        schema_of: Callable[[M], str] | str,
        payload_of: Callable[[M], Any] | None,
        key_of: Callable[[M], Any] | None,
        track_of: Callable[[M], str | None] | None,
        raw_of: Callable[[M], bytes] | None,
        position_of: Callable[[M], Position] | None,
        retry: RetryPolicy | None,
        mask_values: bool,
        clock: Callable[[], float],
    ) -> None:
        self.engine = engine
        self.handler = handler
        self._schema_of: Callable[[M], str] = (
            (lambda _m: schema_of) if isinstance(schema_of, str) else schema_of
        )
        self._payload_of = payload_of or _identity
        self._key_of = key_of
        self._track_of = track_of
        self._raw_of = raw_of
        self._position_of = position_of
        self.retry = retry or RetryPolicy()
        self.mask_values = mask_values
        self.clock = clock
        name = getattr(handler, "__qualname__", None) or type(handler).__name__
        self._default_position = Position("handler", str(name), "")

    def _inputs(self, message: M) -> tuple[str, Any, Any, str | None]:
        payload = self._payload_of(message)
        key = self._key_of(message) if self._key_of is not None else None
        track = self._track_of(message) if self._track_of is not None else None
        return self._schema_of(message), payload, key, track

    def _message(self, message: M, payload: Any) -> Message:
        raw = self._raw_of(message) if self._raw_of is not None else _raw_default(message, payload)
        position = (
            self._position_of(message) if self._position_of is not None else self._default_position
        )
        return Message(raw, position)

    def _rejection(self, message: M, payload: Any, decision: Decision) -> DeadLetter:
        msg = self._message(message, payload)
        context = rejection_context(
            decision,
            msg.position,
            now=self.clock(),
            payload=payload,
            mask_values=self.mask_values,
        )
        return DeadLetter(msg, REJECTED, context, decision.schema)

    def _handler_failure(
        self, message: M, payload: Any, decision: Decision, exc: BaseException, attempts: int
    ) -> DeadLetter:
        msg = self._message(message, payload)
        context = error_context(
            HANDLER_ERROR,
            exc,
            msg.position,
            now=self.clock(),
            decision=decision,
            attempts=attempts,
            mask_values=self.mask_values,
            payload=payload,
        )
        return DeadLetter(msg, HANDLER_ERROR, context, decision.schema)

    def _count(self, letter: DeadLetter) -> None:
        metrics = self.engine.metrics
        if metrics is not None:
            try:
                metrics.count_dlq(letter.schema or "unknown", letter.reason)
            except Exception:
                log.exception("counting a dead letter failed; ignored")

    def _log_retry(self, exc: BaseException, attempt: int, delay: float) -> None:
        log.warning(
            "handler %s failed (attempt %d of %d): %s; retrying in %.2f s",
            self._default_position.stream,
            attempt,
            self.retry.attempts,
            type(exc).__name__,
            delay,
        )


class EnforcedHandler(_Base[M], Generic[M, R]):
    """A sync handler with enforcement in front (built by ``enforce_handler``)."""

    def __init__(
        self,
        engine: PolicyEngine,
        handler: Callable[[M], R],
        *,
        dlq: Sink,
        schema_of: Callable[[M], str] | str,
        payload_of: Callable[[M], Any] | None = None,
        key_of: Callable[[M], Any] | None = None,
        track_of: Callable[[M], str | None] | None = None,
        raw_of: Callable[[M], bytes] | None = None,
        position_of: Callable[[M], Position] | None = None,
        retry: RetryPolicy | None = None,
        mask_values: bool = False,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(
            engine,
            handler,
            schema_of=schema_of,
            payload_of=payload_of,
            key_of=key_of,
            track_of=track_of,
            raw_of=raw_of,
            position_of=position_of,
            retry=retry,
            mask_values=mask_values,
            clock=clock,
        )
        self._handler: Callable[[M], R] = handler
        self.dlq = dlq
        self._sleep = sleep

    def __call__(self, message: M) -> Outcome[R]:
        """Evaluate ``message``; hand it to the handler or dead-letter it. Raises ``SinkError``
        when the DLQ cannot be written (do not acknowledge the message then)."""
        schema, payload, key, track = self._inputs(message)
        decision = self.engine.evaluate(schema, payload, key=key, track=track)
        if decision.action is Action.REJECTED:
            letter = self._rejection(message, payload, decision)
            self.dlq.write([letter])
            self._count(letter)
            return Outcome("dead_lettered", decision, reason=REJECTED)
        attempt = 0
        while True:
            attempt += 1
            try:
                result = self._handler(message)
            except Exception as exc:
                if self.retry.retries(exc, attempt):
                    delay = self.retry.delay(attempt)
                    self._log_retry(exc, attempt, delay)
                    self._sleep(delay)
                    continue
                if not self.retry.dead_letter:
                    raise
                letter = self._handler_failure(message, payload, decision, exc, attempt)
                self.dlq.write([letter])
                self._count(letter)
                return Outcome("dead_lettered", decision, attempt, reason=HANDLER_ERROR, error=exc)
            return Outcome("handled", decision, attempt, result=result)


class AsyncEnforcedHandler(_Base[M], Generic[M, R]):
    """An ``async def`` handler with enforcement in front (built by ``enforce_handler``).

    ``dlq`` may be an ``AsyncSink`` or a sync ``Sink`` (a sync one is run in a worker thread).
    """

    def __init__(
        self,
        engine: PolicyEngine,
        handler: Callable[[M], Awaitable[R]],
        *,
        dlq: AsyncSink | Sink,
        schema_of: Callable[[M], str] | str,
        payload_of: Callable[[M], Any] | None = None,
        key_of: Callable[[M], Any] | None = None,
        track_of: Callable[[M], str | None] | None = None,
        raw_of: Callable[[M], bytes] | None = None,
        position_of: Callable[[M], Position] | None = None,
        retry: RetryPolicy | None = None,
        mask_values: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            engine,
            handler,
            schema_of=schema_of,
            payload_of=payload_of,
            key_of=key_of,
            track_of=track_of,
            raw_of=raw_of,
            position_of=position_of,
            retry=retry,
            mask_values=mask_values,
            clock=clock,
        )
        self._handler: Callable[[M], Awaitable[R]] = handler
        self.dlq = dlq

    async def _write(self, letter: DeadLetter) -> None:
        if inspect.iscoroutinefunction(self.dlq.write):
            await self.dlq.write([letter])
        else:
            await asyncio.to_thread(self.dlq.write, [letter])
        self._count(letter)

    async def __call__(self, message: M) -> Outcome[R]:
        """Evaluate ``message``; await the handler or dead-letter it (see ``EnforcedHandler``)."""
        schema, payload, key, track = self._inputs(message)
        decision = await self.engine.aevaluate(schema, payload, key=key, track=track)
        if decision.action is Action.REJECTED:
            await self._write(self._rejection(message, payload, decision))
            return Outcome("dead_lettered", decision, reason=REJECTED)
        attempt = 0
        while True:
            attempt += 1
            try:
                result = await self._handler(message)
            except Exception as exc:
                if self.retry.retries(exc, attempt):
                    delay = self.retry.delay(attempt)
                    self._log_retry(exc, attempt, delay)
                    await asyncio.sleep(delay)
                    continue
                if not self.retry.dead_letter:
                    raise
                await self._write(self._handler_failure(message, payload, decision, exc, attempt))
                return Outcome("dead_lettered", decision, attempt, reason=HANDLER_ERROR, error=exc)
            return Outcome("handled", decision, attempt, result=result)


@overload
def enforce_handler(  # type: ignore[overload-overlap]  # async def first: it is the narrower
    engine: PolicyEngine,
    handler: Callable[[M], Awaitable[R]],
    *,
    dlq: AsyncSink | Sink,
    schema_of: Callable[[M], str] | str,
    payload_of: Callable[[M], Any] | None = ...,
    key_of: Callable[[M], Any] | None = ...,
    track_of: Callable[[M], str | None] | None = ...,
    raw_of: Callable[[M], bytes] | None = ...,
    position_of: Callable[[M], Position] | None = ...,
    retry: RetryPolicy | None = ...,
    mask_values: bool = ...,
) -> AsyncEnforcedHandler[M, R]: ...


@overload
def enforce_handler(
    engine: PolicyEngine,
    handler: Callable[[M], R],
    *,
    dlq: Sink,
    schema_of: Callable[[M], str] | str,
    payload_of: Callable[[M], Any] | None = ...,
    key_of: Callable[[M], Any] | None = ...,
    track_of: Callable[[M], str | None] | None = ...,
    raw_of: Callable[[M], bytes] | None = ...,
    position_of: Callable[[M], Position] | None = ...,
    retry: RetryPolicy | None = ...,
    mask_values: bool = ...,
) -> EnforcedHandler[M, R]: ...


def enforce_handler(
    engine: PolicyEngine,
    handler: Callable[[M], Any],
    *,
    dlq: Any,
    schema_of: Callable[[M], str] | str,
    payload_of: Callable[[M], Any] | None = None,
    key_of: Callable[[M], Any] | None = None,
    track_of: Callable[[M], str | None] | None = None,
    raw_of: Callable[[M], bytes] | None = None,
    position_of: Callable[[M], Position] | None = None,
    retry: RetryPolicy | None = None,
    mask_values: bool = False,
) -> EnforcedHandler[M, Any] | AsyncEnforcedHandler[M, Any]:
    """Wrap ``handler`` so each message is evaluated first (see the module docstring).

    ``schema_of`` gives the schema name (or is the name); ``payload_of`` the payload (default:
    the message itself); ``key_of``/``track_of`` the canary key and track (default: none, the
    engine decides); ``raw_of`` the original bytes kept in a dead letter (default: the message
    if it is bytes/str, else the payload as JSON); ``position_of`` where the message came from.
    An ``async def`` handler gets an ``AsyncEnforcedHandler``.
    """
    options: dict[str, Any] = {
        "dlq": dlq,
        "schema_of": schema_of,
        "payload_of": payload_of,
        "key_of": key_of,
        "track_of": track_of,
        "raw_of": raw_of,
        "position_of": position_of,
        "retry": retry,
        "mask_values": mask_values,
    }
    if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - an object with an async __call__
    ):
        return AsyncEnforcedHandler(engine, handler, **options)
    return EnforcedHandler(engine, handler, **options)
