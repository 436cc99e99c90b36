"""enforce_handler: enforcement in front of an application's own handler, with its retries."""

from __future__ import annotations

import asyncio
import json

import pytest

from policy_engine import RetryPolicy, SinkError, enforce_handler
from policy_engine.loop import EnforcedHandler, MemorySink, Position


class Flaky:
    """A handler failing its first ``failures`` calls with ``error``, then returning "done"."""

    def __init__(self, failures: int = 0, error: type[Exception] = ConnectionError) -> None:
        self.failures = failures
        self.error = error
        self.calls: list[dict] = []

    def __call__(self, message: dict) -> str:
        self.calls.append(message)
        if len(self.calls) <= self.failures:
            raise self.error(f"attempt {len(self.calls)} failed")
        return "done"


def _wrap(engine, handler, dlq, **options):
    return enforce_handler(
        engine,
        handler,
        dlq=dlq,
        schema_of=lambda m: m["schema"],
        payload_of=lambda m: m["payload"],
        key_of=lambda m: m.get("key"),
        **options,
    )


GOOD = {"schema": "shop.Order", "payload": {"id": "o-1", "price": 3}}
BAD = {"schema": "shop.Order", "payload": {"id": "o-2", "price": -3}, "key": "k"}
LOGGED = {"schema": "shop.Note", "payload": {"id": "n", "price": -3}}
SKIPPED = {"schema": "shop.Off", "payload": {"whatever": 1}}


@pytest.mark.parametrize(
    ("message", "action"),
    [(GOOD, "accepted"), (LOGGED, "logged"), (SKIPPED, "skipped")],
)
def test_handler_gets_accepted_logged_and_skipped(engine, message, action):
    """Accepted, logged and skipped messages reach the handler once; the DLQ stays empty."""
    handler, dlq = Flaky(), MemorySink()
    outcome = _wrap(engine, handler, dlq)(message)
    assert outcome.handled
    assert outcome.result == "done"
    assert outcome.decision.action.value == action
    assert handler.calls == [message]
    assert dlq.records == []


def test_rejected_message_is_dead_lettered_without_calling_the_handler(engine):
    """A strict rejection goes straight to the DLQ (reason rejected); the handler never runs."""
    handler, dlq = Flaky(), MemorySink()
    outcome = _wrap(engine, handler, dlq)(BAD)
    assert outcome.status == "dead_lettered"
    assert outcome.reason == "rejected"
    assert handler.calls == []
    (letter,) = dlq.records
    assert letter.context["exception"] == "SchemaValidationError"
    assert json.loads(letter.message.data) == BAD["payload"]


def test_handler_failures_are_retried_then_succeed(engine):
    """A handler failing twice is called a third time after growing waits, and succeeds."""
    waits: list[float] = []
    handler, dlq = Flaky(failures=2), MemorySink()
    wrapped = EnforcedHandler(
        engine,
        handler,
        dlq=dlq,
        schema_of="shop.Order",
        payload_of=lambda m: m["payload"],
        retry=RetryPolicy(attempts=3, backoff=0.5),
        sleep=waits.append,
    )
    outcome = wrapped(GOOD)
    assert outcome.handled
    assert outcome.attempts == 3
    assert waits == [0.5, 1.0]
    assert dlq.records == []


def test_handler_failures_past_the_policy_are_dead_lettered(engine):
    """When the attempts are spent the message is dead-lettered as handler_error, with the
    exception class and the number of attempts."""
    handler, dlq = Flaky(failures=5), MemorySink()
    wrapped = _wrap(engine, handler, dlq, retry=RetryPolicy(attempts=3, backoff=0.0))
    outcome = wrapped(GOOD)
    assert outcome.status == "dead_lettered"
    assert outcome.reason == "handler_error"
    assert isinstance(outcome.error, ConnectionError)
    assert len(handler.calls) == 3
    (letter,) = dlq.records
    assert letter.reason == "handler_error"
    assert letter.context["exception"] == "ConnectionError"
    assert letter.context["attempts"] == 3
    assert letter.context["action"] == "accepted"


def test_exceptions_outside_retry_on_are_final_at_once(engine):
    """An exception not listed in retry_on is not retried."""
    handler, dlq = Flaky(failures=1, error=ValueError), MemorySink()
    policy = RetryPolicy(attempts=5, backoff=0.0, retry_on=(ConnectionError,))
    outcome = _wrap(engine, handler, dlq, retry=policy)(GOOD)
    assert outcome.reason == "handler_error"
    assert len(handler.calls) == 1


def test_dead_letter_false_raises_the_last_exception(engine):
    """With dead_letter=False the handler's exception propagates after the retries."""
    handler, dlq = Flaky(failures=5), MemorySink()
    policy = RetryPolicy(attempts=2, backoff=0.0, dead_letter=False)
    with pytest.raises(ConnectionError):
        _wrap(engine, handler, dlq, retry=policy)(GOOD)
    assert len(handler.calls) == 2
    assert dlq.records == []


def test_dlq_failure_propagates_so_the_caller_does_not_ack(engine):
    """If the DLQ cannot be written, SinkError reaches the caller (who must not acknowledge)."""
    with pytest.raises(SinkError):
        _wrap(engine, Flaky(), MemorySink(fail=-1))(BAD)


def test_raw_bytes_and_position_are_kept(engine):
    """raw_of and position_of put the message's own bytes and origin in the dead letter."""
    raw = b'{"schema":"shop.Order","payload":{"id":"o-2","price":-3}}'
    dlq = MemorySink()
    wrapped = enforce_handler(
        engine,
        Flaky(),
        dlq=dlq,
        schema_of="shop.Order",
        payload_of=lambda m: json.loads(m)["payload"],
        raw_of=lambda m: m,
        position_of=lambda m: Position("kafka", "orders", "p3:1042"),
    )
    wrapped(raw)
    (letter,) = dlq.records
    assert letter.message.data == raw
    assert letter.context["source"] == {"kind": "kafka", "stream": "orders", "id": "p3:1042"}


def test_dead_letters_are_counted(engine, registry):
    """Rejections and handler failures both count in dlq_messages_total, by reason."""
    dlq = MemorySink()
    _wrap(engine, Flaky(), dlq)(BAD)
    _wrap(engine, Flaky(failures=9), dlq, retry=RetryPolicy(attempts=1))(GOOD)
    labels = {"schema": "shop.Order"}
    assert registry.get_sample_value("dlq_messages_total", {**labels, "reason": "rejected"}) == 1
    assert (
        registry.get_sample_value("dlq_messages_total", {**labels, "reason": "handler_error"}) == 1
    )


def test_async_handler_gets_the_async_form(engine):
    """An async def handler is awaited, retried with asyncio.sleep, and rejections skip it."""
    calls: list[dict] = []

    async def handler(message: dict) -> str:
        calls.append(message)
        if len(calls) == 1:
            raise ConnectionError("first call fails")
        return "ok"

    dlq = MemorySink()
    wrapped = _wrap(engine, handler, dlq, retry=RetryPolicy(attempts=2, backoff=0.0))

    async def main():
        return await wrapped(GOOD), await wrapped(BAD)

    good, bad = asyncio.run(main())
    assert good.handled
    assert good.result == "ok"
    assert good.attempts == 2
    assert bad.reason == "rejected"
    assert len(calls) == 2
    assert [r.reason for r in dlq.records] == ["rejected"]


def test_retry_policy_rejects_zero_attempts():
    """A policy that would never call the handler is a configuration error."""
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
