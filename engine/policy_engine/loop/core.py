"""The consume loop: read a batch, evaluate, pass on, dead-letter, acknowledge.

The decisions are made by one sans-I/O step, ``decide_batch``: a generator that takes a batch of
messages, yields each envelope to be evaluated, receives its ``Decision`` (or the exception the
evaluation raised) and returns a ``BatchResult``: what to pass on, what to dead-letter, what to
acknowledge. ``evaluate_batch`` and ``aevaluate_batch`` drive it; ``ConsumeLoop`` does so with
``engine.evaluate`` and sync sources and sinks, ``AsyncConsumeLoop`` with ``await
engine.aevaluate`` and asyncio ones; everything else (delivery order, retries, statistics) is
written once here.

At-least-once: a batch is acknowledged only after its passed-on records and its dead letters
were written. A sink that keeps failing (a DLQ stream on a Redis that is down) is retried with
backoff; when the retries are spent the loop raises ``SinkError`` *without* acknowledging, so the
broker delivers the batch again (to this consumer after a restart, or to another one through
``XAUTOCLAIM``). A crash at any point therefore loses nothing and may duplicate.

Outages: a source that says it ``waits_out_outages`` (a Redis stream without ``--drain``: a
consumer that runs until stopped) is read (and acknowledged) again after a failure without a
limit, the waits doubling up to ``OUTAGE_RETRY.max_backoff`` (30 s), the health saying the source
is down (so ``/readyz`` is 503 with the reason); the log says so once per outage and once when
the source answers again. Any other source (a file; a stream with ``--drain``, which is meant to
end) gives up after ``retry``'s attempts, as a sink does.

Shutdown: ``stop()`` (SIGTERM/SIGINT in the CLI) lets the batch in hand finish, be written and be
acknowledged; then ``run()`` returns. The wait is bounded: once stopping, a write or an
acknowledgement that keeps failing is retried for at most ``stop_timeout`` seconds (default 10)
after ``stop()``, then the loop gives up the same way as when its retries are spent (the batch
unacknowledged, ``ended_by`` ``"stop_timeout"``), so a supervisor's grace period is not eaten up by
a DLQ that is down. A failing read is not retried at all once stopping: nothing is in hand.

Besides records, the loop reports (``LoopReports``): to a ``LoopHealth`` (the probes of
``/healthz``, ``/readyz``, ``/status``) that it runs, whether its source answers and where the
source is; to a shared guardrail store (the engine's ``guardrail_store``) a request to merge, once
per batch and without waiting for it; and between batches, at most once every
``sample_interval`` seconds, what its broker streams say of themselves (``SampledStream``: a
stream's length, the consumer group's lag and pending count) to the metrics hook's
``report_stream``. None of these can stop the loop: a failure is logged once and the loop goes on.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from policy_engine.decision import Decision
from policy_engine.envelope import Envelope, EnvelopeError
from policy_engine.errors import ConfigError, LoopError, SinkError, SourceError
from policy_engine.loop.protocols import (
    AsyncSampledStream,
    AsyncSink,
    AsyncSource,
    EnduringSource,
    LoopHealth,
    PositionedSource,
    SampledStream,
    SharedGuardrails,
    Sink,
    Source,
    StreamSample,
)
from policy_engine.loop.records import (
    BAD_ENVELOPE,
    EVALUATION_ERROR,
    REJECTED,
    DeadLetter,
    Message,
    Passed,
    Record,
    error_context,
    read_envelope,
    rejection_context,
)
from policy_engine.modes import Action

if TYPE_CHECKING:
    from policy_engine.engine import PolicyEngine
    from policy_engine.metrics import EngineMetrics

log = logging.getLogger("policy_engine.loop")

#: ``evaluate(schema, payload, key, track) -> Decision``: ``PolicyEngine.evaluate`` or a stand-in.
Evaluate = Callable[[str, Any, Any, "str | None"], Decision]
AsyncEvaluate = Callable[[str, Any, Any, "str | None"], Awaitable[Decision]]

_REJECTED = Action.REJECTED

#: Seconds a stopped loop still retries a failing write or acknowledgement (``stop_timeout``).
DEFAULT_STOP_TIMEOUT = 10.0
#: A wait between retries looks this often whether ``stop()`` was called (and ends early if so).
STOP_POLL = 0.05
#: Seconds between two samples of the loop's broker streams (``XLEN``/``XINFO``): gauges, not
#: counters, so only the latest value matters and a second is fresh enough for any dashboard.
SAMPLE_INTERVAL = 1.0


@dataclass(slots=True)
class BatchResult:
    """What one batch comes to: records to pass on, dead letters, messages to acknowledge."""

    messages: Sequence[Message]
    passed: list[Passed]
    dead: list[DeadLetter]


def decide_batch(
    messages: Sequence[Message], *, now: float, mask_values: bool = False
) -> Generator[Envelope, Decision, BatchResult]:
    """The sans-I/O step: yields each envelope to evaluate, is sent its Decision, returns the
    ``BatchResult``. An evaluation that raised is thrown back in and dead-letters that message.

    Every message ends up in ``passed`` or ``dead``: a line that is not an envelope goes to the
    DLQ with reason ``bad_envelope``, a rejection with reason ``rejected``.
    """
    passed: list[Passed] = []
    dead: list[DeadLetter] = []
    for message in messages:
        data = message.data
        if data is None:
            why = message.problem or "the entry has no 'data' field"
            dead.append(_bad_envelope(message, EnvelopeError(why), now))
            continue
        try:
            envelope = read_envelope(data)
        except EnvelopeError as exc:
            dead.append(_bad_envelope(message, exc, now))
            continue
        try:
            decision = yield envelope
        except Exception as exc:  # an evaluation must never stop the loop on one message
            context = error_context(
                EVALUATION_ERROR,
                exc,
                message.position,
                now=now,
                schema=envelope.schema,
                track=envelope.track,
                mask_values=mask_values,
            )
            dead.append(DeadLetter(message, EVALUATION_ERROR, context, envelope.schema))
            continue
        if decision.action is _REJECTED:
            context = rejection_context(
                decision,
                message.position,
                now=now,
                payload=envelope.payload,
                mask_values=mask_values,
            )
            dead.append(DeadLetter(message, REJECTED, context, decision.schema))
        else:
            passed.append(Passed(message, decision))
    return BatchResult(messages, passed, dead)


def _bad_envelope(message: Message, exc: EnvelopeError, now: float) -> DeadLetter:
    context = error_context(BAD_ENVELOPE, exc, message.position, now=now)
    return DeadLetter(message, BAD_ENVELOPE, context, None)


def evaluate_batch(
    step: Generator[Envelope, Decision, BatchResult], evaluate: Evaluate
) -> BatchResult:
    """Drive ``decide_batch`` with a sync ``evaluate``."""
    try:
        envelope = next(step)
        while True:
            try:
                decision = evaluate(envelope.schema, envelope.payload, envelope.key, envelope.track)
            except Exception as exc:
                envelope = step.throw(exc)
            else:
                envelope = step.send(decision)
    except StopIteration as done:
        result: BatchResult = done.value
        return result


async def aevaluate_batch(
    step: Generator[Envelope, Decision, BatchResult], evaluate: AsyncEvaluate
) -> BatchResult:
    """Drive ``decide_batch`` with an async ``evaluate``."""
    try:
        envelope = next(step)
        while True:
            try:
                decision = await evaluate(
                    envelope.schema, envelope.payload, envelope.key, envelope.track
                )
            except Exception as exc:
                envelope = step.throw(exc)
            else:
                envelope = step.send(decision)
    except StopIteration as done:
        result: BatchResult = done.value
        return result


@dataclass(frozen=True, slots=True)
class IoRetry:
    """How often a failing read, write or acknowledgement is tried before the loop gives up.

    The wait doubles from ``backoff`` up to ``max_backoff``. Giving up raises (``SinkError`` or
    ``SourceError``) with the batch unacknowledged: a restart, or another consumer, takes over.
    ``attempts=None`` never gives up (``OUTAGE_RETRY``: the reads and acknowledgements of a
    source that waits out outages).
    """

    attempts: int | None = 5
    backoff: float = 0.2
    max_backoff: float = 5.0

    def __post_init__(self) -> None:
        if self.attempts is not None and self.attempts < 1:
            raise ConfigError("IoRetry.attempts must be 1 or more (or None: no limit)")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        # The exponent is capped: an outage of hours counts thousands of attempts.
        return float(min(self.backoff * 2 ** min(attempt - 1, 64), self.max_backoff))


#: How the reads and acknowledgements of a source that ``waits_out_outages`` are retried: until
#: it answers, the waits doubling from 0.2 s to 30 s (a source back after a long outage is read
#: again within 30 s).
OUTAGE_RETRY = IoRetry(attempts=None, backoff=0.2, max_backoff=30.0)


@dataclass
class LoopStats:
    """What a run of the loop did; ``summary()`` is the CLI's closing line.

    Each count is taken when its step is done, so a run that ends with a failure still says
    what happened: ``read`` when a batch is read, ``passed`` (and its ``actions``) once the
    output took it, ``dead`` (and the ``rejected`` action) once the DLQ took it, ``acked`` once
    acknowledged. ``unacknowledged`` is what was read and will be delivered again.
    """

    read: int = 0
    passed: int = 0
    acked: int = 0
    batches: int = 0
    redelivered: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    dead: Counter[str] = field(default_factory=Counter)
    started: float = 0.0
    finished: float | None = None
    #: Why the run ended: ``end`` (source exhausted), ``stopped`` (stop()/a signal),
    #: ``limit`` (max_messages), ``error`` (a source or sink kept failing), ``stop_timeout``
    #: (stopped while a sink kept failing, and the stop timeout ran out).
    ended_by: str | None = None

    def count_read(self, messages: Sequence[Message]) -> None:
        """Count a batch as read (before it is evaluated and delivered)."""
        self.read += len(messages)
        self.redelivered += sum(1 for message in messages if message.redelivered)

    def count_passed(self, records: Sequence[Passed]) -> None:
        """Count records the output took (or, without an output, that need not go anywhere)."""
        self.passed += len(records)
        for record in records:
            self.actions[record.decision.action.value] += 1

    def count_dead(self, letters: Sequence[DeadLetter]) -> None:
        """Count dead letters the DLQ took; a strict rejection is also a ``rejected`` action."""
        for letter in letters:
            self.dead[letter.reason] += 1
            if letter.reason == REJECTED:
                self.actions[_REJECTED.value] += 1

    def count_acked(self, messages: Sequence[Message]) -> None:
        """Count a batch as acknowledged: done with."""
        self.batches += 1
        self.acked += len(messages)

    @property
    def unacknowledged(self) -> int:
        """Messages read but not acknowledged: the broker delivers them again (a file source
        reads them again on the next run). Non-zero only when the run ended with a failure."""
        return self.read - self.acked

    @property
    def dead_lettered(self) -> int:
        """Messages written to the DLQ, every reason."""
        return sum(self.dead.values())

    @property
    def seconds(self) -> float:
        """Wall time of the run so far."""
        end = self.finished if self.finished is not None else time.monotonic()
        return max(end - self.started, 0.0)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``consume --json``)."""
        seconds = self.seconds
        return {
            "read": self.read,
            "passed": self.passed,
            "dead_lettered": self.dead_lettered,
            "acknowledged": self.acked,
            "unacknowledged": self.unacknowledged,
            "batches": self.batches,
            "redelivered": self.redelivered,
            "actions": {a.value: self.actions[a.value] for a in Action},
            "dead_letter_reasons": dict(sorted(self.dead.items())),
            "seconds": round(seconds, 3),
            "messages_per_second": round(self.read / seconds, 1) if seconds > 0 else None,
            "ended_by": self.ended_by,
        }

    def summary(self) -> str:
        """A line or two a person reads at the end of ``consume``."""
        acts = ", ".join(f"{a.value} {self.actions[a.value]}" for a in Action if a != _REJECTED)
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.dead.items())) or "none"
        seconds = self.seconds
        rate = f"{self.read / seconds:,.0f} msg/s" if seconds > 0 else "-"
        more = f", {self.unacknowledged} not acknowledged" if self.unacknowledged else ""
        if self.redelivered:
            more += f", {self.redelivered} redelivered"
        return (
            f"{self.read} read, {self.passed} passed on ({acts}), "
            f"{self.dead_lettered} dead-lettered ({reasons}), {self.acked} acknowledged{more}; "
            f"{seconds:.2f} s, {rate}; ended by {self.ended_by or 'running'}\n"
        )


class LoopReports:
    """What the loop reports besides records, free of the loop's own I/O; both loops use it.

    - ``health`` (a ``LoopHealth``): ``started``/``ended``, ``source_ok``/``source_failed``
      (told only when the state changes, or when the reason of a failure does), and after each
      batch the source's ``position()``;
    - ``store`` (``SharedGuardrails``): ``batch_evaluated`` asks it to merge (it returns at once);
    - ``metrics``: ``sampled`` reports a ``StreamSample`` through ``report_stream`` and puts a
      source's lag and length into the health's position too; ``sample_due`` says when the
      next sample is due (at most once every ``sample_interval`` seconds).

    A sample that failed is logged once per endpoint until one works again (and the gauges read
    unknown meanwhile); a health object or a store that raises is logged once and ignored.
    """

    def __init__(
        self,
        *,
        health: LoopHealth | None,
        metrics: EngineMetrics | None,
        store: SharedGuardrails | None,
        sample_interval: float = SAMPLE_INTERVAL,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= sample_interval < float("inf"):
            raise ConfigError("sample_interval must be 0 or more seconds")
        self.health = health
        self.metrics = metrics
        self.store = store
        self.sample_interval = sample_interval
        self._clock = clock
        self._monotonic = monotonic
        self._source_ok: bool | None = None
        self._source_error: str | None = None
        self._next_sample = 0.0
        self._failing: set[str] = set()  # roles whose sampling fails (logged once)
        self._broken: set[str] = set()  # reporters that raised (logged once)

    @property
    def wants_samples(self) -> bool:
        """Whether anyone listens to stream samples (the metrics hook or the health)."""
        return self.metrics is not None or self.health is not None

    def _safely(self, what: str, call: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        try:
            call(*args, **kwargs)
        except Exception:  # reporting must never stop the loop
            if what not in self._broken:
                self._broken.add(what)
                log.exception("%s failed; ignored (said once)", what)

    def started(self) -> None:
        """The loop runs: ``/healthz`` is 200 from now on."""
        if self.health is not None:
            self._safely("reporting health", self.health.running, True)

    def ended(self) -> None:
        """The loop returned or raised."""
        if self.health is not None:
            self._safely("reporting health", self.health.running, False)

    def source_ok(self, source: object) -> None:
        """A read or an acknowledgement of ``source`` worked; on the first success (and the
        first after a failure) the health also hears where the source is."""
        if self._source_ok is not True:
            self._source_ok, self._source_error = True, None
            if self.health is not None:
                self._safely("reporting health", self.health.source_connected)
                self.batch_done(source)

    def source_failed(self, exc: Exception) -> None:
        """A read or an acknowledgement failed (its message names the endpoint without
        credentials, as every ``LoopError`` does)."""
        reason = str(exc)
        if self._source_ok is not False or self._source_error != reason:
            self._source_ok, self._source_error = False, reason
            if self.health is not None:
                self._safely("reporting health", self.health.source_down, reason)

    def batch_evaluated(self) -> None:
        """A batch was evaluated: ask the shared guardrail store to merge its counts now, so
        the fleet learns of them while this batch is being written."""
        if self.store is not None:
            self._safely("asking the guardrail store to merge", self.store.merge_soon)

    def batch_done(self, source: object) -> None:
        """A batch was acknowledged: tell the health where the source is now."""
        if self.health is not None and isinstance(source, PositionedSource):
            self._safely("reporting the source position", self._position, source)

    def _position(self, source: PositionedSource) -> None:
        assert self.health is not None
        self.health.source_position(**source.position())

    def sample_due(self) -> bool:
        """Whether the streams should be sampled now; if so, the next sample is scheduled."""
        now = self._monotonic()
        if now < self._next_sample:
            return False
        self._next_sample = now + self.sample_interval
        return True

    def sampled(self, role: str, sample: StreamSample) -> None:
        """Report one stream's sample (``role``: ``source``, ``output`` or ``dlq``)."""
        if sample.error is not None:
            if role not in self._failing:
                self._failing.add(role)
                log.warning(
                    "sampling the %s stream %s failed; its gauges read unknown until it works "
                    "again (said once): %s",
                    role,
                    sample.stream,
                    sample.error,
                )
        elif role in self._failing:
            self._failing.discard(role)
            log.info("sampling the %s stream %s works again", role, sample.stream)
        metrics = self.metrics
        if metrics is not None:
            group = sample.group if role == "source" else None
            self._safely(
                "reporting stream gauges",
                metrics.report_stream,
                sample.stream,
                role,
                sample.length,
                group=group,
                lag=sample.lag if group is not None else None,
                pending=sample.pending if group is not None else None,
            )
        if role == "source" and self.health is not None:
            self._safely(
                "reporting the source position",
                self.health.source_position,
                **sample.position(),
                sampled_at=self._clock(),
            )

    def sample_raised(self, role: str, description: str, exc: Exception) -> None:
        """Sampling raised instead of returning an error in the sample: logged once, ignored."""
        if role not in self._failing:
            self._failing.add(role)
            log.warning(
                "sampling the %s %s failed; ignored (said once): %s", role, description, exc
            )


class _LoopBase:
    """Configuration and bookkeeping shared by the sync and the asyncio loop."""

    def __init__(
        self,
        engine: PolicyEngine | None,
        *,
        batch_size: int,
        poll_timeout: float,
        max_messages: int | None,
        mask_values: bool,
        retry: IoRetry,
        read_retry: IoRetry | None,
        source: object,
        stop_timeout: float,
        metrics: EngineMetrics | None,
        clock: Callable[[], float],
        health: LoopHealth | None,
        guardrail_store: SharedGuardrails | None,
        sample_interval: float,
    ) -> None:
        if batch_size < 1:
            raise ConfigError("batch_size must be 1 or more")
        if max_messages is not None and max_messages < 0:
            raise ConfigError("max_messages must be 0 or more")
        if not 0 <= stop_timeout < float("inf"):
            raise ConfigError("stop_timeout must be 0 or more seconds")
        self.engine = engine
        self.batch_size = batch_size
        self.poll_timeout = poll_timeout
        self.max_messages = max_messages
        self.mask_values = mask_values
        self.retry = retry
        if read_retry is None:
            enduring = isinstance(source, EnduringSource) and source.waits_out_outages
            read_retry = OUTAGE_RETRY if enduring else retry
        #: How failing reads are retried: ``retry``, or ``OUTAGE_RETRY`` for a source that
        #: waits out outages (see the module docstring).
        self.read_retry = read_retry
        self._outage_since: float | None = None  # monotonic start of the outage in progress
        self.stop_timeout = stop_timeout
        self.metrics = metrics if metrics is not None else getattr(engine, "metrics", None)
        self.clock = clock
        self.stats = LoopStats()
        self._stop = threading.Event()
        self._stopped_at: float | None = None
        if guardrail_store is None:
            guardrail_store = getattr(engine, "guardrail_store", None)
        #: What the loop reports besides records (health, merges, stream gauges).
        self.reports = LoopReports(
            health=health,
            metrics=self.metrics,
            store=guardrail_store,
            sample_interval=sample_interval,
            clock=clock,
        )

    def stop(self) -> None:
        """Finish the batch in hand, acknowledge it, and return from ``run()``.

        A sink that keeps failing is retried for at most ``stop_timeout`` seconds from now;
        then ``run()`` raises with the batch unacknowledged. Safe from a signal handler and from
        any thread (it only sets a flag and reads the clock).
        """
        if self._stopped_at is None:
            self._stopped_at = time.monotonic()
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether ``stop()`` was called."""
        return self._stop.is_set()

    def _next_limit(self) -> int:
        if self.max_messages is None:
            return self.batch_size
        return min(self.batch_size, self.max_messages - self.stats.read)

    def _meter_dead(self, dead: Sequence[DeadLetter]) -> None:
        metrics = self.metrics
        if metrics is None or not dead:
            return
        counts: Counter[tuple[str, str]] = Counter(
            (letter.schema or "unknown", letter.reason) for letter in dead
        )
        for (schema, reason), amount in counts.items():
            try:
                metrics.count_dlq(schema, reason, amount)
            except Exception:  # counting must never lose a batch
                log.exception("counting dead letters failed; ignored")

    def _retry_delay(
        self, what: str, attempt: int, exc: LoopError, retry: IoRetry | None = None
    ) -> float:
        """Seconds to wait before trying ``what`` again after failed attempt ``attempt``
        (``retry``: the loop's own unless given), with a warning.

        Raises instead when the loop gives up: the retries are spent, or ``stop()`` was called
        more than ``stop_timeout`` seconds ago. The error raised says which, and why; it is not
        logged here, as whoever catches it reports it (the CLI: one line on stderr).
        """
        retry = retry or self.retry
        if retry.attempts is not None and attempt >= retry.attempts:
            times = "attempt" if attempt == 1 else "attempts"
            raise _giving_up(exc, f"{what} failed after {attempt} {times}") from exc
        delay = self._within_stop_timeout(what, exc, retry.delay(attempt))
        log.warning(
            "%s failed (attempt %d of %s); retrying in %.2g s: %s",
            what,
            attempt,
            "unlimited" if retry.attempts is None else retry.attempts,
            delay,
            exc,
        )
        return delay

    def _within_stop_timeout(self, what: str, exc: LoopError, delay: float) -> float:
        """``delay``, cut to what is left of the stop timeout once ``stop()`` was called;
        raises (the loop gives up, ``ended_by`` ``stop_timeout``) when nothing is left."""
        if self._stopped_at is None:
            return delay
        left = self._stopped_at + self.stop_timeout - time.monotonic()
        if left <= 0:
            self.stats.ended_by = "stop_timeout"
            raise _giving_up(
                exc,
                f"stopped, and {what} still failed when the stop timeout "
                f"({self.stop_timeout:g} s) ran out",
            ) from exc
        return min(delay, left)

    def _source_delay(self, what: str, attempt: int, exc: SourceError) -> float:
        """Seconds to wait before ``what`` (reading, acknowledging) is tried on the source
        again after failed attempt ``attempt``.

        A source that does not wait out outages is retried as any other I/O
        (``_retry_delay``: ``read_retry`` for reads, ``retry`` for acknowledgements; a warning
        each time, then giving up). One that does (``read_retry`` without a limit) is down until
        it answers: said once, at the first failure (``_source_answered`` says when it is back),
        never given up, the waits ending early at ``stop()``; once stopped, a read is not tried
        again and an acknowledgement only until the stop timeout runs out.
        """
        retry = self.read_retry
        if retry.attempts is not None:
            return self._retry_delay(what, attempt, exc, retry if what == "reading" else None)
        delay = self._within_stop_timeout(what, exc, retry.delay(attempt))
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.warning(
                "the source does not answer; trying it again until it does, at most %g s "
                "apart (said once per outage): %s",
                retry.max_backoff,
                exc,
            )
        return delay

    def _source_answered(self, source: object) -> None:
        """A read or an acknowledgement worked: the health hears the source is up; the log
        too, if it was down."""
        if self._outage_since is not None:
            log.warning(
                "the source %s answers again after %.1f s down",
                _described(source),
                time.monotonic() - self._outage_since,
            )
            self._outage_since = None
        self.reports.source_ok(source)

    def _waited_long_enough(self, until: float, stopping: bool) -> bool:
        """Whether a wait between retries that runs ``until`` (monotonic) is over; it ends
        early when ``stop()`` is called during it (``stopping``: it already was at its start)."""
        return time.monotonic() >= until or (not stopping and self._stop.is_set())


def _described(endpoint: object) -> str:
    """An endpoint's ``description`` (credential-free), for a log line."""
    return str(getattr(endpoint, "description", type(endpoint).__name__))


def _giving_up(exc: LoopError, why: str) -> LoopError:
    """The error the loop gives up with: of ``exc``'s branch, saying ``why`` and then ``exc``."""
    kind = SinkError if isinstance(exc, SinkError) else SourceError
    return kind(f"{why}: {exc}", endpoint=exc.endpoint)


class ConsumeLoop(_LoopBase):
    """The enforcement loop over a sync ``Source`` and ``Sink``s.

    >>> loop = ConsumeLoop(engine, source, output=out, dlq=dlq, batch_size=100)  # doctest: +SKIP
    >>> stats = loop.run()                     # until the source ends or stop() is called

    ``evaluate`` replaces ``engine.evaluate`` (a benchmark's pass-through); ``output=None``
    passes messages on to nowhere (they are acknowledged once evaluated, and rejects dead-lettered).
    ``sleep`` replaces the wait between retries (a test's recorder); by default the wait ends
    early when ``stop()`` is called, so a stop never waits out a long backoff.

    ``retry`` says how often a failing write or acknowledgement is tried, and a failing read
    too unless ``read_retry`` says otherwise; by default ``read_retry`` is ``OUTAGE_RETRY`` (no
    limit, and the source's acknowledgements wait out its outages too) for a source that
    ``waits_out_outages``, else ``retry``.

    ``health`` hears whether the loop runs, whether the source answers and where it is (the
    CLI's ``Health`` behind ``/readyz`` and ``/status``); ``guardrail_store`` (default: the
    engine's) is asked to merge once per batch; endpoints that are ``SampledStream``s are sampled
    every ``sample_interval`` seconds at most, between batches, for the metrics hook's
    ``report_stream`` (see ``LoopReports``).
    """

    def __init__(
        self,
        engine: PolicyEngine | None,
        source: Source,
        *,
        dlq: Sink,
        output: Sink | None = None,
        batch_size: int = 100,
        poll_timeout: float = 0.5,
        max_messages: int | None = None,
        mask_values: bool = False,
        retry: IoRetry | None = None,
        read_retry: IoRetry | None = None,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
        evaluate: Evaluate | None = None,
        metrics: EngineMetrics | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] | None = None,
        health: LoopHealth | None = None,
        guardrail_store: SharedGuardrails | None = None,
        sample_interval: float = SAMPLE_INTERVAL,
    ) -> None:
        super().__init__(
            engine,
            batch_size=batch_size,
            poll_timeout=poll_timeout,
            max_messages=max_messages,
            mask_values=mask_values,
            retry=retry or IoRetry(),
            read_retry=read_retry,
            source=source,
            stop_timeout=stop_timeout,
            metrics=metrics,
            clock=clock,
            health=health,
            guardrail_store=guardrail_store,
            sample_interval=sample_interval,
        )
        if evaluate is None:
            if engine is None:
                raise ConfigError("ConsumeLoop needs an engine or an evaluate function")
            evaluate = engine.evaluate
        self.evaluate = evaluate
        self.source = source
        self.output = output
        self.dlq = dlq
        self._sleep = sleep
        self._samplers: list[tuple[str, SampledStream]] = []
        if self.reports.wants_samples:
            for role, endpoint in (("source", source), ("output", output), ("dlq", dlq)):
                if isinstance(endpoint, SampledStream):
                    self._samplers.append((role, endpoint))

    def run(self) -> LoopStats:
        """Consume until the source ends, ``max_messages`` were read, or ``stop()``.

        Raises ``SinkError``/``SourceError`` when a sink or the source keeps failing (the
        retries are spent, or ``stop()`` was called and ``stop_timeout`` ran out); the batch in
        hand is then left unacknowledged. ``stats`` holds what was done either way.
        """
        stats = self.stats
        reports = self.reports
        stats.started = time.monotonic()
        reports.started()
        try:
            while True:
                if self._stop.is_set():
                    stats.ended_by = "stopped"
                    break
                limit = self._next_limit()
                if limit <= 0:
                    stats.ended_by = "limit"
                    break
                messages = self._read(limit)
                if messages:
                    stats.count_read(messages)
                    result = evaluate_batch(
                        decide_batch(messages, now=self.clock(), mask_values=self.mask_values),
                        self.evaluate,
                    )
                    reports.batch_evaluated()
                    self.deliver(result)
                    reports.batch_done(self.source)
                elif self.source.exhausted:
                    stats.ended_by = "end"
                    break
                if self._samplers and reports.sample_due():
                    self._sample_streams()
        except LoopError:
            stats.ended_by = stats.ended_by or "error"
            raise
        finally:
            stats.finished = time.monotonic()
            reports.ended()
        return stats

    def _sample_streams(self) -> None:
        """Sample every broker stream the loop reads or writes (one round trip each)."""
        for role, endpoint in self._samplers:
            try:
                sample = endpoint.sample_stream()
            except Exception as exc:  # a gauge must never stop the loop
                self.reports.sample_raised(role, _described(endpoint), exc)
                continue
            self.reports.sampled(role, sample)

    def deliver(self, result: BatchResult) -> None:
        """Write the batch's records (output first, then the DLQ), then acknowledge it; each
        step is counted in ``stats`` once done."""
        stats = self.stats
        if result.passed:
            if self.output is not None:
                self._write(self.output, result.passed, "writing to the output")
            stats.count_passed(result.passed)
        if result.dead:
            self._write(self.dlq, result.dead, "writing to the dead-letter queue")
            self._meter_dead(result.dead)
            stats.count_dead(result.dead)
        attempt = 0
        while True:
            attempt += 1
            try:
                self.source.ack(result.messages)
                break
            except SourceError as exc:
                self.reports.source_failed(exc)
                self._pause(self._source_delay("acknowledging", attempt, exc))
        self._source_answered(self.source)
        stats.count_acked(result.messages)

    def _write(self, sink: Sink, records: Sequence[Record], what: str) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                sink.write(records)
                return
            except SinkError as exc:
                self._pause(self._retry_delay(what, attempt, exc))

    def _read(self, limit: int) -> list[Message]:
        attempt = 0
        while True:
            attempt += 1
            try:
                messages = self.source.read(limit, self.poll_timeout)
            except SourceError as exc:
                self.reports.source_failed(exc)
                if self.stopping:  # nothing is in hand: stop now rather than retry
                    log.warning("reading failed while stopping; not retried: %s", exc)
                    return []
                self._pause(self._source_delay("reading", attempt, exc))
                if self.stopping:  # stopped during the wait: no read more
                    return []
            else:
                self._source_answered(self.source)
                return messages

    def _pause(self, seconds: float) -> None:
        """Wait ``seconds`` between retries; ends early when ``stop()`` is called meanwhile."""
        if self._sleep is not None:
            self._sleep(seconds)
            return
        until = time.monotonic() + seconds
        stopping = self.stopping
        while not self._waited_long_enough(until, stopping):
            time.sleep(min(STOP_POLL, max(until - time.monotonic(), 0.0)))


class AsyncConsumeLoop(_LoopBase):
    """``ConsumeLoop`` for asyncio: ``AsyncSource``/``AsyncSink`` and ``policy_engine.aevaluate``.

    The decisions come from the same ``decide_batch`` step; only the I/O is awaited.
    """

    def __init__(
        self,
        engine: PolicyEngine | None,
        source: AsyncSource,
        *,
        dlq: AsyncSink,
        output: AsyncSink | None = None,
        batch_size: int = 100,
        poll_timeout: float = 0.5,
        max_messages: int | None = None,
        mask_values: bool = False,
        retry: IoRetry | None = None,
        read_retry: IoRetry | None = None,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
        evaluate: AsyncEvaluate | None = None,
        metrics: EngineMetrics | None = None,
        clock: Callable[[], float] = time.time,
        health: LoopHealth | None = None,
        guardrail_store: SharedGuardrails | None = None,
        sample_interval: float = SAMPLE_INTERVAL,
    ) -> None:
        super().__init__(
            engine,
            batch_size=batch_size,
            poll_timeout=poll_timeout,
            max_messages=max_messages,
            mask_values=mask_values,
            retry=retry or IoRetry(),
            read_retry=read_retry,
            source=source,
            stop_timeout=stop_timeout,
            metrics=metrics,
            clock=clock,
            health=health,
            guardrail_store=guardrail_store,
            sample_interval=sample_interval,
        )
        if evaluate is None:
            if engine is None:
                raise ConfigError("AsyncConsumeLoop needs an engine or an evaluate function")
            evaluate = engine.aevaluate
        self.evaluate = evaluate
        self.source = source
        self.output = output
        self.dlq = dlq
        self._samplers: list[tuple[str, AsyncSampledStream]] = []
        if self.reports.wants_samples:
            for role, endpoint in (("source", source), ("output", output), ("dlq", dlq)):
                if isinstance(endpoint, AsyncSampledStream):
                    self._samplers.append((role, endpoint))

    async def run(self) -> LoopStats:
        """Consume until the source ends, ``max_messages`` were read, or ``stop()``; raises
        like ``ConsumeLoop.run``."""
        stats = self.stats
        reports = self.reports
        stats.started = time.monotonic()
        reports.started()
        try:
            while True:
                if self._stop.is_set():
                    stats.ended_by = "stopped"
                    break
                limit = self._next_limit()
                if limit <= 0:
                    stats.ended_by = "limit"
                    break
                messages = await self._read(limit)
                if messages:
                    stats.count_read(messages)
                    result = await aevaluate_batch(
                        decide_batch(messages, now=self.clock(), mask_values=self.mask_values),
                        self.evaluate,
                    )
                    reports.batch_evaluated()
                    await self.deliver(result)
                    reports.batch_done(self.source)
                elif self.source.exhausted:
                    stats.ended_by = "end"
                    break
                if self._samplers and reports.sample_due():
                    await self._sample_streams()
        except LoopError:
            stats.ended_by = stats.ended_by or "error"
            raise
        finally:
            stats.finished = time.monotonic()
            reports.ended()
        return stats

    async def _sample_streams(self) -> None:
        """Sample every broker stream the loop reads or writes (one round trip each)."""
        for role, endpoint in self._samplers:
            try:
                sample = await endpoint.sample_stream()
            except Exception as exc:  # a gauge must never stop the loop
                self.reports.sample_raised(role, _described(endpoint), exc)
                continue
            self.reports.sampled(role, sample)

    async def deliver(self, result: BatchResult) -> None:
        """Write the batch's records (output first, then the DLQ), then acknowledge it; each
        step is counted in ``stats`` once done."""
        stats = self.stats
        if result.passed:
            if self.output is not None:
                await self._write(self.output, result.passed, "writing to the output")
            stats.count_passed(result.passed)
        if result.dead:
            await self._write(self.dlq, result.dead, "writing to the dead-letter queue")
            self._meter_dead(result.dead)
            stats.count_dead(result.dead)
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.source.ack(result.messages)
                break
            except SourceError as exc:
                self.reports.source_failed(exc)
                await self._pause(self._source_delay("acknowledging", attempt, exc))
        self._source_answered(self.source)
        stats.count_acked(result.messages)

    async def _write(self, sink: AsyncSink, records: Sequence[Record], what: str) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await sink.write(records)
                return
            except SinkError as exc:
                await self._pause(self._retry_delay(what, attempt, exc))

    async def _read(self, limit: int) -> list[Message]:
        attempt = 0
        while True:
            attempt += 1
            try:
                messages = await self.source.read(limit, self.poll_timeout)
            except SourceError as exc:
                self.reports.source_failed(exc)
                if self.stopping:  # nothing is in hand: stop now rather than retry
                    log.warning("reading failed while stopping; not retried: %s", exc)
                    return []
                await self._pause(self._source_delay("reading", attempt, exc))
                if self.stopping:  # stopped during the wait: no read more
                    return []
            else:
                self._source_answered(self.source)
                return messages

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds`` between retries; ends early when ``stop()`` is called meanwhile."""
        until = time.monotonic() + seconds
        stopping = self.stopping
        while not self._waited_long_enough(until, stopping):
            await asyncio.sleep(min(STOP_POLL, max(until - time.monotonic(), 0.0)))
