"""The loop's core: every message passed on or dead-lettered, acknowledged only after writing."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time

import pytest
from loop_support import envelope, order

from policy_engine import Action, SinkError, SourceError
from policy_engine.loop import (
    AsyncConsumeLoop,
    ConsumeLoop,
    IoRetry,
    MemorySink,
    MemorySource,
    Message,
    Position,
    ThreadedSink,
    ThreadedSource,
    decide_batch,
    evaluate_batch,
)

FAST = IoRetry(attempts=3, backoff=0.0)


def _eventually(condition, seconds=60.0):
    """Poll ``condition`` until it holds or a generous ``seconds`` pass; whether it held."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def _mixed() -> list[bytes]:
    return [
        order(1),
        order(2, valid=False),
        envelope("shop.Note", {"id": "n", "price": -3}),
        envelope("shop.Off", {"anything": True}),
        b"not json",
        b'{"schema": "shop.Order"}',
    ]


def test_every_message_is_passed_on_or_dead_lettered(engine):
    """Each message of a batch ends up exactly once in the output or the DLQ, then is acked."""
    source, out, dlq = MemorySource(_mixed()), MemorySink(), MemorySink()
    stats = ConsumeLoop(engine, source, output=out, dlq=dlq, retry=FAST).run()
    assert [r.message.position.id for r in out.records] == ["1", "3", "4"]
    assert [(r.message.position.id, r.reason) for r in dlq.records] == [
        ("2", "rejected"),
        ("5", "bad_envelope"),
        ("6", "bad_envelope"),
    ]
    assert len(source.acked) == 6
    assert stats.read == 6
    assert stats.passed == 3
    assert stats.dead == {"rejected": 1, "bad_envelope": 2}
    assert stats.ended_by == "end"


def test_actions_are_counted_by_kind(engine):
    """The stats count every action separately, rejections (dead-lettered) included."""
    source, out, dlq = MemorySource(_mixed()), MemorySink(), MemorySink()
    stats = ConsumeLoop(engine, source, output=out, dlq=dlq).run()
    assert stats.actions == {"accepted": 1, "logged": 1, "skipped": 1, "rejected": 1}
    assert stats.to_dict()["actions"] == {"accepted": 1, "logged": 1, "rejected": 1, "skipped": 1}
    assert [r.decision.action for r in out.records] == [
        Action.ACCEPTED,
        Action.LOGGED,
        Action.SKIPPED,
    ]


def test_dlq_write_failure_leaves_batch_unacknowledged(engine):
    """A DLQ that keeps refusing writes stops the loop with SinkError and acks nothing."""
    source, out, dlq = (
        MemorySource([order(1), order(2, valid=False)]),
        MemorySink(),
        MemorySink(fail=-1),
    )
    loop = ConsumeLoop(engine, source, output=out, dlq=dlq, retry=FAST, sleep=lambda s: None)
    with pytest.raises(SinkError):
        loop.run()
    assert source.acked == []
    assert dlq.attempts == 3
    assert loop.stats.ended_by == "error"
    assert loop.stats.acked == 0


def test_a_failed_run_counts_what_it_read_and_did_not_acknowledge(engine):
    """When the DLQ keeps failing, the stats still count the batch read, the output written,
    and the messages left unacknowledged; the error says how often it was tried."""
    source, out = MemorySource([order(1), order(2, valid=False)]), MemorySink()
    loop = ConsumeLoop(
        engine, source, output=out, dlq=MemorySink(fail=-1), retry=FAST, sleep=lambda s: None
    )
    with pytest.raises(SinkError, match="writing to the dead-letter queue failed after 3 attempts"):
        loop.run()
    stats = loop.stats
    assert (stats.read, stats.passed, stats.dead_lettered, stats.acked) == (2, 1, 0, 0)
    assert stats.unacknowledged == 2
    assert stats.to_dict()["unacknowledged"] == 2
    assert "2 read, 1 passed on" in stats.summary()
    assert "0 acknowledged, 2 not acknowledged" in stats.summary()


class _StopsWhenFailing(MemorySink):
    """A sink that always fails, and calls ``stop`` on its ``stop_on``-th attempt."""

    def __init__(self, stop_on: int) -> None:
        super().__init__(fail=-1)
        self.stop_on = stop_on
        self.stop = lambda: None

    def write(self, records):
        if self.attempts + 1 == self.stop_on:
            self.stop()
        super().write(records)


def test_stop_gives_up_on_a_failing_sink_after_the_stop_timeout(engine):
    """After stop(), a sink that keeps failing is no longer retried once the stop timeout has
    run out: run() raises with the batch unacknowledged and ended_by 'stop_timeout'."""
    source, dlq = MemorySource([order(1, valid=False)]), _StopsWhenFailing(stop_on=2)
    retry = IoRetry(attempts=1000, backoff=0.0)
    loop = ConsumeLoop(engine, source, dlq=dlq, retry=retry, stop_timeout=0.0)
    dlq.stop = loop.stop
    with pytest.raises(SinkError, match=r"stop timeout \(0 s\) ran out: memory: refusing"):
        loop.run()
    assert dlq.attempts == 2
    assert source.acked == []
    assert loop.stats.ended_by == "stop_timeout"
    assert loop.stats.unacknowledged == 1


def test_async_stop_gives_up_on_a_failing_sink_after_the_stop_timeout(engine):
    """The asyncio loop gives up on a failing sink after stop() and the stop timeout too."""
    source, dlq = MemorySource([order(1, valid=False)]), _StopsWhenFailing(stop_on=2)
    retry = IoRetry(attempts=1000, backoff=0.0)
    loop = AsyncConsumeLoop(
        engine, ThreadedSource(source), dlq=ThreadedSink(dlq), retry=retry, stop_timeout=0.0
    )
    dlq.stop = loop.stop
    with pytest.raises(SinkError, match="stop timeout"):
        asyncio.run(loop.run())
    assert dlq.attempts == 2
    assert source.acked == []
    assert loop.stats.ended_by == "stop_timeout"


def test_stop_ends_a_long_wait_between_retries(engine):
    """stop() during an hour-long backoff ends the wait at once; with a stop timeout of 0 the
    loop then gives up instead of retrying."""
    source, dlq = MemorySource([order(1, valid=False)]), MemorySink(fail=-1)
    retry = IoRetry(attempts=5, backoff=3600.0, max_backoff=3600.0)
    loop = ConsumeLoop(engine, source, dlq=dlq, retry=retry, stop_timeout=0.0)
    errors: list[BaseException] = []

    def run():
        try:
            loop.run()
        except SinkError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert _eventually(lambda: dlq.attempts == 1)
    loop.stop()
    thread.join(60)
    assert not thread.is_alive()
    assert len(errors) == 1
    assert loop.stats.ended_by == "stop_timeout"
    assert source.acked == []


def test_a_failing_read_is_not_retried_once_stopping(engine):
    """A read that fails after stop() ends the run as stopped: nothing is in hand to save."""

    class FailingSource(MemorySource):
        def read(self, max_messages, timeout):
            loop.stop()
            raise SourceError("memory: gone", endpoint="memory")

    source = FailingSource([], follow=True)
    loop = ConsumeLoop(
        engine, source, dlq=MemorySink(), retry=IoRetry(attempts=1000), sleep=lambda s: None
    )
    stats = loop.run()
    assert stats.ended_by == "stopped"
    assert stats.read == 0


def test_output_failure_leaves_batch_unacknowledged(engine):
    """An output that keeps failing leaves the batch unacknowledged too."""
    source, out, dlq = MemorySource([order(1)]), MemorySink(fail=-1), MemorySink()
    loop = ConsumeLoop(engine, source, output=out, dlq=dlq, retry=FAST, sleep=lambda s: None)
    with pytest.raises(SinkError):
        loop.run()
    assert source.acked == []


def test_transient_dlq_failure_is_retried_then_acknowledged(engine):
    """A DLQ that fails twice and then works gets the record; the batch is acked once."""
    waits: list[float] = []
    source, dlq = MemorySource([order(1, valid=False)]), MemorySink(fail=2)
    retry = IoRetry(attempts=5, backoff=0.1, max_backoff=0.15)
    ConsumeLoop(engine, source, dlq=dlq, retry=retry, sleep=waits.append).run()
    assert len(dlq.records) == 1
    assert len(source.acked) == 1
    assert waits == [0.1, 0.15]


def test_stop_finishes_the_batch_in_hand(engine):
    """stop() during a batch lets it be written and acknowledged before run() returns."""
    source = MemorySource([order(i) for i in range(10)], follow=True)
    out = MemorySink()
    loop = ConsumeLoop(engine, source, output=out, dlq=MemorySink(), batch_size=4)

    class StopDuringWrite(MemorySink):
        def write(self, records):
            loop.stop()
            super().write(records)

    loop.output = StopDuringWrite()
    stats = loop.run()
    assert stats.ended_by == "stopped"
    assert stats.read == 4
    assert len(source.acked) == 4
    assert len(loop.output.records) == 4


def test_max_messages_limits_what_is_read(engine):
    """max_messages stops the loop after that many messages, batches cut to fit."""
    source = MemorySource([order(i) for i in range(10)])
    stats = ConsumeLoop(engine, source, dlq=MemorySink(), batch_size=4, max_messages=6).run()
    assert stats.read == 6
    assert stats.ended_by == "limit"
    assert len(source.acked) == 6


def test_evaluation_error_is_dead_lettered(engine):
    """An evaluate that raises dead-letters that message (reason evaluation_error), not the loop."""

    def evaluate(schema, payload, key, track):
        if payload.get("seq") == 2:
            raise RuntimeError("boom")
        return engine.evaluate(schema, payload, key, track)

    dlq = MemorySink()
    source = MemorySource([order(1), order(2), order(3)])
    ConsumeLoop(engine, source, dlq=dlq, evaluate=evaluate).run()
    (letter,) = dlq.records
    assert letter.reason == "evaluation_error"
    assert letter.context["exception"] == "RuntimeError"
    assert letter.context["schema"] == "shop.Order"
    assert len(source.acked) == 3


def test_decide_batch_is_free_of_io(engine):
    """The step alone turns messages plus decisions into passed records and dead letters."""
    messages = [
        Message(order(1), Position("memory", "m", "1")),
        Message(b"[]", Position("memory", "m", "2")),
    ]
    result = evaluate_batch(decide_batch(messages, now=0.0), engine.evaluate)
    assert [p.message.position.id for p in result.passed] == ["1"]
    assert [d.reason for d in result.dead] == ["bad_envelope"]
    assert result.dead[0].context["time"] == "1970-01-01T00:00:00.000Z"


def test_async_loop_makes_the_same_decisions(engine):
    """The asyncio loop, driving the same step, writes the same records as the sync loop."""
    sync_out, sync_dlq = MemorySink(), MemorySink()
    ConsumeLoop(engine, MemorySource(_mixed()), output=sync_out, dlq=sync_dlq).run()

    async_out, async_dlq = MemorySink(), MemorySink()
    source = MemorySource(_mixed())

    async def main():
        loop = AsyncConsumeLoop(
            engine,
            ThreadedSource(source),
            output=ThreadedSink(async_out),
            dlq=ThreadedSink(async_dlq),
        )
        return await loop.run()

    stats = asyncio.run(main())

    def decisions(sink):
        return [json.loads(line)["decision"]["action"] for line in sink.lines()]

    assert decisions(async_out) == decisions(sync_out)
    assert [r.reason for r in async_dlq.records] == [r.reason for r in sync_dlq.records]
    assert stats.acked == 6
    assert len(source.acked) == 6


def test_async_dlq_failure_leaves_batch_unacknowledged(engine):
    """The asyncio loop keeps a batch unacknowledged when its DLQ refuses writes."""
    source = MemorySource([order(1, valid=False)])

    async def main():
        loop = AsyncConsumeLoop(
            engine,
            ThreadedSource(source),
            dlq=ThreadedSink(MemorySink(fail=-1)),
            retry=IoRetry(attempts=2, backoff=0.0),
        )
        await loop.run()

    with pytest.raises(SinkError):
        asyncio.run(main())
    assert source.acked == []


def test_dead_letters_are_counted_in_metrics(engine, registry):
    """dlq_messages_total counts dead letters by schema and reason."""
    ConsumeLoop(engine, MemorySource(_mixed()), dlq=MemorySink()).run()
    rejected = registry.get_sample_value(
        "dlq_messages_total", {"schema": "shop.Order", "reason": "rejected"}
    )
    bad = registry.get_sample_value(
        "dlq_messages_total", {"schema": "unknown", "reason": "bad_envelope"}
    )
    assert (rejected, bad) == (1.0, 2.0)


def test_follow_source_waits_for_more(engine):
    """A following source keeps the loop alive until stopped; messages put later are handled."""
    source = MemorySource([order(1)], follow=True)
    out = MemorySink()
    loop = ConsumeLoop(engine, source, output=out, dlq=MemorySink(), poll_timeout=0.05)
    thread = threading.Thread(target=loop.run)
    thread.start()
    source.put(order(2))
    assert _eventually(lambda: len(source.acked) == 2)
    loop.stop()
    thread.join(60)
    assert not thread.is_alive()
    assert len(out.records) == 2
    assert loop.stats.ended_by == "stopped"


def test_loop_exports_resolve_lazily():
    """Every name policy_engine.loop exports resolves; importing the package, the loop, the
    transport table and redrive leaves redis-py out."""
    import policy_engine.loop

    assert all(getattr(policy_engine.loop, name) is not None for name in policy_engine.loop.__all__)
    code = (
        "import sys, policy_engine, policy_engine.loop, policy_engine.loop.endpoints, "
        "policy_engine.loop.redrive; "
        "assert 'redis' not in sys.modules, 'redis imported'; "
        "policy_engine.loop.endpoints.transport_for('dlq.jsonl'); "
        "assert 'redis' not in sys.modules, 'redis imported by the file transport'"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
