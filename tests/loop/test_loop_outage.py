"""A source that waits out outages (a Redis stream without --drain) is read again until it
answers, the health saying it is down and the log saying so once; any other source gives up
after the loop's retries, as before."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
import redis
from loop_support import free_port, order
from test_loop_reports import RecordingHealth

from policy_engine import SourceError
from policy_engine.loop import (
    OUTAGE_RETRY,
    AsyncConsumeLoop,
    ConsumeLoop,
    EnduringSource,
    IoRetry,
    MemorySink,
    MemorySource,
    RedisStreamSource,
    parse_redis_url,
)

#: Would give up after two failed reads, were the source not one that waits out outages.
TWO = IoRetry(attempts=2, backoff=0.0)


class FlakySource(MemorySource):
    """A memory source whose reads fail ``failures`` times (a broker that is down) before the
    messages come; ``waits_out_outages`` as given."""

    def __init__(self, items, *, failures: int, waits: bool = True, follow=False) -> None:
        super().__init__(items, follow=follow)
        self.failures = failures
        self.reads = 0
        self.waits_out_outages = waits

    def read(self, max_messages, timeout):
        """Fail while failures are left, then read."""
        self.reads += 1
        if self.failures > 0:
            self.failures -= 1
            raise SourceError("memory: Connection refused", endpoint="memory")
        return super().read(max_messages, timeout)


def _outage_lines(caplog) -> tuple[list[str], list[str]]:
    messages = [r.getMessage() for r in caplog.records if r.name == "policy_engine.loop"]
    down = [m for m in messages if "does not answer" in m]
    back = [m for m in messages if "answers again" in m]
    return down, back


def test_a_source_that_waits_out_outages_is_read_until_it_answers(engine, caplog):
    """Twelve failed reads (far past the two the loop's retry allows) and then the messages:
    nothing given up, waits doubling from 0.2 s to 30 s at most, one log line when it went
    down and one when it came back, the health told down then connected."""
    source = FlakySource([order(1), order(2)], failures=12)
    health, waits = RecordingHealth(), []
    loop = ConsumeLoop(
        engine, source, dlq=MemorySink(), retry=TWO, health=health, sleep=waits.append
    )
    assert isinstance(source, EnduringSource)
    assert loop.read_retry is OUTAGE_RETRY
    with caplog.at_level(logging.INFO, logger="policy_engine.loop"):
        stats = loop.run()
    assert (stats.ended_by, stats.read, stats.acked) == ("end", 2, 2)
    assert waits == [OUTAGE_RETRY.delay(n) for n in range(1, 13)]
    assert waits[:3] == [0.2, 0.4, 0.8]
    assert waits[-1] == 30.0 == max(waits)
    down, back = _outage_lines(caplog)
    assert len(down) == 1
    assert "Connection refused" in down[0]
    assert len(back) == 1
    assert "answers again" in back[0]
    states = [name for name, _ in health.calls if name in ("down", "connected")]
    assert states == ["down", "connected"]


def test_each_outage_is_said_once(engine, caplog):
    """Two outages with reads in between: two lines saying the source is down, two saying it
    is back, however many reads failed."""
    source = FlakySource([], failures=0, follow=True)
    reads = 0
    loop = ConsumeLoop(engine, source, dlq=MemorySink(), retry=TWO, sleep=lambda s: None)

    def read(max_messages, timeout):
        nonlocal reads
        reads += 1
        if reads in (1, 2, 3, 6, 7):  # down, down, down, up, up, down, down, up
            raise SourceError("memory: Connection refused", endpoint="memory")
        if reads == 9:
            loop.stop()
        return []

    source.read = read
    with caplog.at_level(logging.INFO, logger="policy_engine.loop"):
        stats = loop.run()
    assert stats.ended_by == "stopped"
    down, back = _outage_lines(caplog)
    assert (len(down), len(back)) == (2, 2)


@pytest.mark.parametrize("waits", [False, None])
def test_any_other_source_gives_up_after_the_retries(engine, waits):
    """A source that does not wait out outages (says so, or says nothing) fails the run once
    the loop's retries are spent, as before."""
    source = FlakySource([order(1)], failures=5, waits=bool(waits))
    if waits is None:
        del source.waits_out_outages
    loop = ConsumeLoop(engine, source, dlq=MemorySink(), retry=TWO, sleep=lambda s: None)
    assert loop.read_retry is TWO
    with pytest.raises(SourceError, match="reading failed after 2 attempts"):
        loop.run()
    assert source.reads == 2


def test_read_retry_overrides_what_the_source_says(engine):
    """An explicit read_retry wins over the source's wish to wait out outages."""
    source = FlakySource([order(1)], failures=5)
    loop = ConsumeLoop(
        engine, source, dlq=MemorySink(), retry=TWO, read_retry=TWO, sleep=lambda s: None
    )
    with pytest.raises(SourceError):
        loop.run()


def test_stop_during_an_outage_ends_the_run_without_another_read(engine):
    """stop() while the loop waits out an outage (the real, stop-aware wait, 30 s apart by
    now) ends the run at once, as stopped, with no read after the stop."""
    source = FlakySource([], failures=10**9, follow=True)
    loop = ConsumeLoop(engine, source, dlq=MemorySink(), retry=TWO)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            loop.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while source.reads < 4 and time.monotonic() < deadline:  # waits: 0.2, 0.4, 0.8, then 1.6 s
        time.sleep(0.01)
    reads = source.reads
    loop.stop()
    thread.join(60)
    assert not thread.is_alive()
    assert not errors
    assert loop.stats.ended_by == "stopped"
    assert source.reads == reads


def test_the_async_loop_waits_out_outages_too(engine, caplog):
    """AsyncConsumeLoop retries an enduring source's reads past its retries, logging once."""

    class AsyncFlaky:
        description = "async-memory"
        waits_out_outages = True

        def __init__(self) -> None:
            self.inner = FlakySource([order(1)], failures=4)

        @property
        def exhausted(self) -> bool:
            return self.inner.exhausted

        async def read(self, max_messages, timeout):
            return self.inner.read(max_messages, timeout)

        async def ack(self, messages):
            self.inner.ack(messages)

        async def close(self):
            """Nothing to release."""

    class AsyncSink:
        description = "async-sink"

        async def write(self, records):
            """Take everything."""

        async def close(self):
            """Nothing to release."""

    source = AsyncFlaky()
    loop = AsyncConsumeLoop(engine, source, dlq=AsyncSink(), retry=TWO)
    with caplog.at_level(logging.INFO, logger="policy_engine.loop"):
        stats = asyncio.run(asyncio.wait_for(loop.run(), 120))
    assert (stats.ended_by, stats.read) == ("end", 1)
    down, back = _outage_lines(caplog)
    assert (len(down), len(back)) == (1, 1)


def test_a_redis_source_waits_out_outages_unless_it_drains():
    """Only a consumer that runs until stopped waits for its Redis: --drain is meant to end."""
    endpoint = parse_redis_url("redis://127.0.0.1:1/0?stream=s")
    assert RedisStreamSource(endpoint).waits_out_outages is True
    assert RedisStreamSource(endpoint, drain=True).waits_out_outages is False


def test_a_delay_stays_finite_after_hours_of_outage():
    """The wait after the ten-thousandth failed read is the cap, not an overflow."""
    assert OUTAGE_RETRY.delay(10_000) == 30.0


# ---------------------------------------------------------------------------------------------
# consume against a Redis of the test's own, stopped and started
# ---------------------------------------------------------------------------------------------


def _wait_for(predicate, seconds: float = 120.0) -> bool:
    """Poll ``predicate`` until it holds or a generous ``seconds`` pass (two shared cores);
    whether it held."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def _readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def _passed_seqs(server_port: int) -> list[int]:
    client = redis.Redis(port=server_port)
    try:
        entries = client.xrange("out")
    except redis.RedisError:
        return []
    finally:
        client.close()
    return [json.loads(fields[b"data"])["payload"]["seq"] for _, fields in entries]


def _handled(server_port: int, seqs: list[int]) -> bool:
    """``seqs`` are on the output stream and group ``g`` has nothing pending: the batch was
    passed on *and* acknowledged (the XACK may follow the XADD by a moment on a loaded machine;
    a Redis killed in between leaves a batch in hand, which a stop must not drop)."""
    if _passed_seqs(server_port) != seqs:
        return False
    client = redis.Redis(port=server_port)
    try:
        return int(client.xpending("events", "g")["pending"]) == 0
    except redis.RedisError:
        return False
    finally:
        client.close()


def test_consume_waits_out_its_redis_going_down_and_coming_back(
    tmp_path, policy_dir, schema_dir, own_redis
):
    """A consume of a Redis stream (no --drain) whose Redis is killed goes on running: /readyz
    503 saying why while it is down, reads retried past --sink-retries, 200 again and messages
    flowing once a Redis answers on that port; one log line per outage and one per recovery;
    SIGTERM during a second outage stops it at once with exit 0."""
    server = own_redis()
    server.start(directory=tmp_path)
    port = free_port()
    url = f"redis://127.0.0.1:{server.port}/0"
    environ = {k: v for k, v in os.environ.items() if k not in ("GUARDRAIL_STORE", "METRICS_ADDR")}
    log = tmp_path / "consume.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "policy_engine",
                "consume",
                f"{url}?stream=events&group=g&consumer=c1",
                "--output",
                f"{url}?stream=out",
                "--metrics-port",
                str(port),
                "--sink-retries",
                "2",
                "--policies",
                str(policy_dir),
                "--registry",
                str(schema_dir),
                "--json",
            ],
            cwd=tmp_path,
            env={**environ, "POLICY_WATCH": "false"},
            stdout=subprocess.PIPE,
            stderr=log_file,
        )
        try:
            client = redis.Redis(port=server.port)
            assert _wait_for(lambda: _readyz(port)[0] == 200)
            client.xadd("events", {"data": order(1)})
            assert _wait_for(lambda: _handled(server.port, [1]))
            client.close()

            server.stop()  # SIGKILL: the stream and the group are gone with it
            assert _wait_for(lambda: _readyz(port)[0] == 503)
            down = _readyz(port)[1]
            assert _wait_for(lambda: b"does not answer" in log.read_bytes())
            time.sleep(2.0)  # reads at 0.2, 0.4, 0.8 s...: past the two tries of --sink-retries
            assert proc.poll() is None

            server.start(directory=tmp_path)
            assert _wait_for(lambda: _readyz(port)[0] == 200)
            client = redis.Redis(port=server.port)
            client.xadd("events", {"data": order(2)})
            assert _wait_for(lambda: _handled(server.port, [2]))
            client.close()

            server.stop()
            assert _wait_for(lambda: log.read_bytes().count(b"does not answer") == 2)
            time.sleep(3.0)  # the waits grow past a second
            proc.send_signal(signal.SIGTERM)
            stdout, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    errors = log.read_text(errors="replace")
    assert proc.returncode == 0, errors
    assert json.loads(stdout)["ended_by"] == "stopped"
    assert "is not connected" in down
    assert f"127.0.0.1:{server.port}" in down
    assert errors.count("does not answer") == 2
    assert errors.count("answers again") == 1
    assert "failed (attempt" not in errors


def test_a_deleted_stream_is_created_again_within_the_read(redis_client, streams):
    """A stream deleted under a running consumer (or lost with a Redis restarted without
    persistence) is created again, group and all, by the next read, which returns what was
    added since: no failed read, no outage."""
    name = streams("gone")
    source = RedisStreamSource(parse_redis_url(f"redis://127.0.0.1:6379/0?stream={name}"))
    try:
        assert source.read(10, 0.05) == []
        redis_client.delete(name)
        redis_client.xadd(name, {"data": order(7)})
        messages = source.read(10, 0.05)
    finally:
        source.close()
    assert [json.loads(m.data)["payload"]["seq"] for m in messages] == [7]


def test_an_acknowledgement_waits_out_the_outage_too(engine, caplog):
    """The source going down between writing a batch and acknowledging it: the
    acknowledgement is tried again until the source answers (not given up after the loop's
    retries), then the run goes on; said once, and once when it is back."""

    class AckDown(MemorySource):
        waits_out_outages = True

        def __init__(self) -> None:
            super().__init__([order(1)])
            self.failures = 6

        def ack(self, messages):
            if self.failures:
                self.failures -= 1
                raise SourceError("memory: Connection refused", endpoint="memory")
            super().ack(messages)

    source, waits = AckDown(), []
    loop = ConsumeLoop(engine, source, dlq=MemorySink(), retry=TWO, sleep=waits.append)
    with caplog.at_level(logging.INFO, logger="policy_engine.loop"):
        stats = loop.run()
    assert (stats.ended_by, stats.acked) == ("end", 1)
    assert len(waits) == 6
    down, back = _outage_lines(caplog)
    assert (len(down), len(back)) == (1, 1)


def test_a_stopped_loop_gives_up_an_acknowledgement_after_the_stop_timeout(engine):
    """stop() while an acknowledgement waits out an outage: tried until the stop timeout runs
    out, then the run ends as stop_timeout with the batch unacknowledged."""

    class AckNever(MemorySource):
        waits_out_outages = True
        attempts = 0

        def ack(self, messages):
            AckNever.attempts += 1
            if AckNever.attempts == 3:
                loop.stop()
            raise SourceError("memory: Connection refused", endpoint="memory")

    source = AckNever([order(1)])
    loop = ConsumeLoop(engine, source, dlq=MemorySink(), retry=TWO, stop_timeout=0.0)
    with pytest.raises(SourceError, match="stop timeout"):
        loop.run()
    assert loop.stats.ended_by == "stop_timeout"
    assert loop.stats.unacknowledged == 1
