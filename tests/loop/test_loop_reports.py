"""What the loop reports besides records: health, merge requests to a shared guardrail store,
and stream samples (in-process, with recording stand-ins; the Redis side is in
test_loop_gauges.py)."""

from __future__ import annotations

import asyncio
import logging
import math
import threading

import pytest
from loop_support import order

from policy_engine import SourceError
from policy_engine.loop import (
    AsyncConsumeLoop,
    ConsumeLoop,
    IoRetry,
    JsonlSource,
    LoopHealth,
    LoopReports,
    MemorySink,
    MemorySource,
    SampledStream,
    SharedGuardrails,
    StreamSample,
    ThreadedSink,
    ThreadedSource,
)

FAST = IoRetry(attempts=5, backoff=0.0)


class RecordingStore:
    """A ``SharedGuardrails`` that remembers on which thread each merge was asked for."""

    def __init__(self) -> None:
        self.asked: list[threading.Thread] = []

    def merge_soon(self) -> None:
        """Remember the request; return at once, as the real store does."""
        self.asked.append(threading.current_thread())


class RecordingHealth:
    """A ``LoopHealth`` that keeps every call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.position: dict[str, object] = {}

    def running(self, alive: bool) -> None:
        """Record the loop's life."""
        self.calls.append(("running", alive))

    def source_connected(self) -> None:
        """Record a connection."""
        self.calls.append(("connected", None))

    def source_down(self, reason: str) -> None:
        """Record a failure and its reason."""
        self.calls.append(("down", reason))

    def source_position(self, **position: object) -> None:
        """Merge the position, as ``Health`` does."""
        self.position.update(position)


class FlakySource(MemorySource):
    """A ``MemorySource`` whose first ``failures`` reads raise ``SourceError``."""

    def __init__(self, items: list[bytes], failures: int) -> None:
        super().__init__(items, name="flaky")
        self.failures = failures

    def read(self, max_messages: int, timeout: float) -> list:
        """Fail while ``failures`` lasts, then read."""
        if self.failures:
            self.failures -= 1
            raise SourceError("flaky: connection refused", endpoint="flaky")
        return super().read(max_messages, timeout)


class SampledSource(MemorySource):
    """A ``MemorySource`` that is also a ``SampledStream``; counts the samples asked of it."""

    def __init__(self, items: list[bytes], *, error: str | None = None, raises: bool = False):
        super().__init__(items, name="sampled")
        self.samples = 0
        self.error = error
        self.raises = raises

    def sample_stream(self) -> StreamSample:
        """A fixed sample (or a failed one, or an exception)."""
        self.samples += 1
        if self.raises:
            raise RuntimeError("the broker went away")
        if self.error is not None:
            return StreamSample("events", None, "workers", error=self.error)
        return StreamSample("events", 40, "workers", lag=7, pending=3, last_delivered_id="9-0")


class SampledSink(MemorySink):
    """A ``MemorySink`` that is also a ``SampledStream`` (its length is what it holds)."""

    def __init__(self, stream: str) -> None:
        super().__init__(name=stream)
        self.stream = stream

    def sample_stream(self) -> StreamSample:
        """The number of records written so far."""
        return StreamSample(self.stream, len(self.records))


def test_the_stand_ins_are_what_the_loop_expects():
    """The recording stand-ins satisfy the protocols the loop checks for."""
    assert isinstance(RecordingStore(), SharedGuardrails)
    assert isinstance(RecordingHealth(), LoopHealth)
    assert isinstance(SampledSource([]), SampledStream)
    assert not isinstance(MemorySource([]), SampledStream)


def test_the_store_is_asked_to_merge_once_per_batch_on_the_loop_thread(engine):
    """Seven messages in batches of three ask the store for three merges, each from the
    loop's own thread (the request returns at once; the merge runs on the store's thread)."""
    store = RecordingStore()
    source = MemorySource([order(i, valid=i % 2 == 0) for i in range(7)])
    ConsumeLoop(engine, source, dlq=MemorySink(), batch_size=3, guardrail_store=store).run()
    assert store.asked == [threading.current_thread()] * 3


def test_the_async_loop_asks_once_per_batch_too(engine):
    """The asyncio loop asks the store for one merge per batch as well."""
    store = RecordingStore()
    source = ThreadedSource(MemorySource([order(i) for i in range(5)]))
    loop = AsyncConsumeLoop(
        engine, source, dlq=ThreadedSink(MemorySink()), batch_size=2, guardrail_store=store
    )
    asyncio.run(loop.run())
    assert len(store.asked) == 3


def test_the_engine_store_is_the_default(engine):
    """Without ``guardrail_store=`` the loop uses the engine's (none here: nothing is asked)."""
    loop = ConsumeLoop(engine, MemorySource([order(1)]), dlq=MemorySink())
    assert loop.reports.store is engine.guardrail_store is None
    engine.guardrail_store = RecordingStore()
    try:
        loop = ConsumeLoop(engine, MemorySource([order(1)]), dlq=MemorySink())
        loop.run()
        assert len(engine.guardrail_store.asked) == 1
    finally:
        engine.guardrail_store = None


def test_health_hears_running_connected_and_the_end(engine):
    """The health hears the loop start, the source connect once (not per batch), and the
    loop end."""
    health = RecordingHealth()
    source = MemorySource([order(i) for i in range(6)])
    ConsumeLoop(engine, source, dlq=MemorySink(), batch_size=2, health=health).run()
    assert health.calls == [("running", True), ("connected", None), ("running", False)]


def test_health_hears_why_reads_fail_and_when_they_work_again(engine):
    """Failing reads report the source down with the error's text (once while it stays the
    same); the first read that works reports it connected again."""
    health = RecordingHealth()
    source = FlakySource([order(1)], failures=3)
    ConsumeLoop(engine, source, dlq=MemorySink(), retry=FAST, health=health).run()
    assert health.calls == [
        ("running", True),
        ("down", "flaky: connection refused"),
        ("connected", None),
        ("running", False),
    ]


def test_health_hears_the_loop_end_when_it_gives_up(engine):
    """A loop that gives up on its source still tells the health it no longer runs."""
    health = RecordingHealth()
    source = FlakySource([order(1)], failures=99)
    loop = ConsumeLoop(
        engine, source, dlq=MemorySink(), retry=IoRetry(attempts=2, backoff=0.0), health=health
    )
    with pytest.raises(SourceError):
        loop.run()
    assert health.calls[-1] == ("running", False)


def test_a_file_source_reports_its_offset_and_line(engine, tmp_path):
    """After each batch the health hears a file source's byte offset and line number."""
    feed = tmp_path / "feed.jsonl"
    lines = [order(i) for i in range(5)]
    feed.write_bytes(b"".join(line + b"\n" for line in lines))
    health = RecordingHealth()
    source = JsonlSource(feed)
    ConsumeLoop(engine, source, dlq=MemorySink(), batch_size=2, health=health).run()
    source.close()
    assert health.position == {"offset": feed.stat().st_size, "line": 5}


def test_a_failing_health_never_stops_the_loop(engine, caplog):
    """A health object that raises is logged once and the loop goes on to the end."""

    class Broken(RecordingHealth):
        def source_connected(self) -> None:
            raise RuntimeError("probe state is broken")

    source, dlq = MemorySource([order(i) for i in range(4)]), MemorySink()
    with caplog.at_level(logging.ERROR, logger="policy_engine.loop"):
        stats = ConsumeLoop(engine, source, dlq=dlq, batch_size=1, health=Broken()).run()
    assert stats.acked == 4
    assert sum("reporting health failed" in r.getMessage() for r in caplog.records) == 1


def test_streams_are_sampled_at_most_once_per_interval(engine):
    """Twenty batches within one sample interval sample the stream once, not per batch or
    message; with an interval of 0 every batch is followed by a sample."""
    slow = SampledSource([order(i) for i in range(20)])
    ConsumeLoop(engine, slow, dlq=MemorySink(), batch_size=1, sample_interval=3600).run()
    every = SampledSource([order(i) for i in range(20)])
    ConsumeLoop(engine, every, dlq=MemorySink(), batch_size=5, sample_interval=0).run()
    assert (slow.samples, every.samples) == (1, 4)


def test_samples_become_gauges_and_the_source_position(engine, registry):
    """A source's sample sets its length, lag and pending gauges and goes into the health's
    position; each sink's sample sets its stream's length by role."""
    health = RecordingHealth()
    source = SampledSource([order(1), order(2, valid=False)])
    output, dlq = SampledSink("events:out"), SampledSink("events:dlq")
    ConsumeLoop(engine, source, output=output, dlq=dlq, health=health, sample_interval=0).run()

    def gauge(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert gauge("consume_stream_length", stream="events", role="source") == 40
    assert gauge("consume_group_lag", stream="events", group="workers") == 7
    assert gauge("consume_group_pending", stream="events", group="workers") == 3
    assert gauge("consume_stream_length", stream="events:out", role="output") == 1
    assert gauge("consume_stream_length", stream="events:dlq", role="dlq") == 1
    assert {k: health.position[k] for k in ("length", "lag", "pending")} == {
        "length": 40,
        "lag": 7,
        "pending": 3,
    }
    assert health.position["last_delivered_id"] == "9-0"


def test_a_failed_sample_is_logged_once_and_reads_unknown(engine, registry, caplog):
    """A sample that comes back with an error is logged once however often it fails, the
    gauges read NaN (unknown), and every message is still handled."""
    source = SampledSource([order(i) for i in range(6)], error="ConnectionError: refused")
    with caplog.at_level(logging.WARNING, logger="policy_engine.loop"):
        stats = ConsumeLoop(engine, source, dlq=MemorySink(), batch_size=1, sample_interval=0).run()
    assert stats.acked == 6
    assert source.samples == 6
    said = [r for r in caplog.records if "sampling the source stream" in r.getMessage()]
    assert len(said) == 1
    assert "ConnectionError: refused" in said[0].getMessage()
    lag = registry.get_sample_value("consume_group_lag", {"stream": "events", "group": "workers"})
    assert lag is not None
    assert math.isnan(lag)


def test_a_sampler_that_raises_never_stops_the_loop(engine, caplog):
    """An exception out of a sample is logged once and ignored: the loop reads to the end."""
    source = SampledSource([order(i) for i in range(4)], raises=True)
    with caplog.at_level(logging.WARNING, logger="policy_engine.loop"):
        stats = ConsumeLoop(engine, source, dlq=MemorySink(), batch_size=1, sample_interval=0).run()
    assert stats.acked == 4
    assert sum("the broker went away" in r.getMessage() for r in caplog.records) == 1


def test_without_metrics_or_health_nothing_is_sampled(engine):
    """A loop nobody listens to (no metrics hook, no health) never samples its streams."""
    source = SampledSource([order(1), order(2)])
    loop = ConsumeLoop(None, source, dlq=MemorySink(), evaluate=engine.evaluate, sample_interval=0)
    stats = loop.run()
    assert (loop.reports.wants_samples, stats.acked, source.samples) == (False, 2, 0)


def test_sample_interval_is_validated():
    """A negative sample interval is a configuration error."""
    from policy_engine.errors import ConfigError

    with pytest.raises(ConfigError, match="sample_interval"):
        LoopReports(health=None, metrics=None, store=None, sample_interval=-1)
