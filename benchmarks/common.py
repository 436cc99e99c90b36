"""What the benchmark scripts share: the one timer, the example feed, and what build runs.

Each script is run as ``python benchmarks/<name>.py``, which puts this directory on
``sys.path``, so ``from common import ...`` finds this module.

The timer is ``measure(cases, repeats, target_ms)`` over ``Case`` objects, and every script times
its in-process work with it:

- **calibration**: after a warm-up pass (which builds routes, compiles validators, fills caches),
  the number of calls per round is set so that one round of a case lasts about ``target_ms``;
  a case with ``fixed_calls`` (a consume round, a cold load) keeps its number and is warmed up
  with one round;
- **interleaved rounds with a rotating start**: every case takes one turn per round and the
  first case changes from round to round, so a burst of load from elsewhere on a shared machine
  hits the cases of a round alike instead of skewing one ratio, and no case always runs first;
- **min, median and max** of the rounds (nanoseconds per call) on each case; ``paired_ratios``
  gives the per-round ratios of two cases, which cancel slow drifts of the machine's load.

Two more instruments, for what a cost per call cannot show: ``latencies`` records every call's
own latency (an outage's p99), ``seconds_until`` the time to an event (a policy change becoming
visible). No script reads a clock itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from itertools import cycle, islice
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = "marketdata.TradeEvent"
#: The most calls one round of a calibrated case may make (memory for the argument list).
MAX_CALLS = 2_000_000

_clock = time.perf_counter_ns


# ---------------------------------------------------------------------------------------------
# The timer
# ---------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One measured thing: ``body(args)`` makes one call per argument, ``len(args)`` in all.

    The body is the loop a caller would write (the method bound once, one call per item), so a
    figure carries no wrapper call of the timer's own; ``repeat`` and ``per_item`` build the
    usual bodies. ``pool`` holds the arguments, cycled to the number of calls of a round.
    ``setup`` and ``teardown`` run before and after each round of the case (the warm-up and
    calibration rounds included), outside the timing: switching a logger on, filling a stream.

    >>> case = Case("sum", repeat(sum, (1, 2)))
    >>> measure([case], repeats=3, target_ms=1.0)[0].median > 0
    True
    """

    name: str
    body: Callable[[Sequence[Any]], object]
    pool: Sequence[Any] = (None,)
    #: Calls per round when > 0 (no calibration, one warm-up round); else calibrated.
    fixed_calls: int = 0
    setup: Callable[[], object] | None = None
    teardown: Callable[[], object] | None = None
    #: Calls per round, as calibrated (or ``fixed_calls``).
    calls: int = field(default=0, init=False)
    #: Nanoseconds per call, one sample per round.
    samples_ns: list[float] = field(default_factory=list, init=False)

    def args(self, calls: int) -> list[Any]:
        """``calls`` arguments taken in turn from the pool."""
        return list(islice(cycle(self.pool), calls))

    @property
    def median(self) -> float:
        """Median nanoseconds per call over the rounds."""
        return statistics.median(self.samples_ns)

    @property
    def minimum(self) -> float:
        """The fastest round's nanoseconds per call (the least disturbed by other load)."""
        return min(self.samples_ns)

    @property
    def maximum(self) -> float:
        """The slowest round's nanoseconds per call."""
        return max(self.samples_ns)

    def to_dict(self) -> dict[str, Any]:
        """The case's figures as JSON (without its callables)."""
        return {
            "name": self.name,
            "calls_per_round": self.calls,
            "median_ns": round(self.median, 1),
            "min_ns": round(self.minimum, 1),
            "max_ns": round(self.maximum, 1),
            "samples_ns": [round(s, 1) for s in self.samples_ns],
        }


class Rounds(Protocol):
    """A measurement made of whole rounds that each move a fixed number of items (messages
    through a consume loop, say): prepared and checked outside the timing, run inside it."""

    def setup(self) -> None:
        """Prepare one round (fill a stream, open files)."""

    def run(self, items: Sequence[Any]) -> None:
        """The timed part: one round, ``len(items)`` items."""

    def teardown(self) -> None:
        """Check the round's outcome and clean up."""


def rounds_case(name: str, rounds: Rounds, items: Sequence[Any]) -> Case:
    """``rounds`` as a ``Case`` whose every round moves ``items``: nanoseconds per item."""
    return Case(
        name,
        rounds.run,
        items,
        fixed_calls=len(items),
        setup=rounds.setup,
        teardown=rounds.teardown,
    )


def repeat(func: Callable[..., object], *args: Any) -> Callable[[Sequence[Any]], None]:
    """A body calling ``func(*args)`` once per item of the round (the items themselves unused).

    Written out for up to three arguments, so the call is as cheap as in a hand-written loop.
    """
    if not args:

        def body0(items: Sequence[Any]) -> None:
            for _ in items:
                func()

        return body0
    if len(args) == 1:
        (a,) = args

        def body1(items: Sequence[Any]) -> None:
            for _ in items:
                func(a)

        return body1
    if len(args) == 2:
        a, b = args

        def body2(items: Sequence[Any]) -> None:
            for _ in items:
                func(a, b)

        return body2
    if len(args) == 3:
        a, b, c = args

        def body3(items: Sequence[Any]) -> None:
            for _ in items:
                func(a, b, c)

        return body3

    def body(items: Sequence[Any]) -> None:
        for _ in items:
            func(*args)

    return body


def per_item(func: Callable[..., object], *leading: Any) -> Callable[[Sequence[Any]], None]:
    """A body calling ``func(*leading, item)`` for each item of the round."""
    if len(leading) == 1:
        (a,) = leading

        def body1(items: Sequence[Any]) -> None:
            for item in items:
                func(a, item)

        return body1

    def body(items: Sequence[Any]) -> None:
        for item in items:
            func(*leading, item)

    return body


def _round(case: Case, args: Sequence[Any]) -> float:
    """Nanoseconds of one ``body(args)``, between the case's untimed setup and teardown."""
    if case.setup is not None:
        case.setup()
    start = _clock()
    case.body(args)
    elapsed = _clock() - start
    if case.teardown is not None:
        case.teardown()
    return float(elapsed)


def calibrate(case: Case, target_ms: float) -> int:
    """The number of calls that makes one round of ``case`` last about ``target_ms``.

    A warm-up pass first (its first call may build routes, compile validators, fill caches), so
    that the calibration is not skewed by one slow call. A case with ``fixed_calls`` gets one
    warm-up round and keeps its number.
    """
    if case.fixed_calls > 0:
        _round(case, case.args(case.fixed_calls))
        return case.fixed_calls
    _round(case, case.args(max(len(case.pool), 100)))
    calls = 1
    while True:
        elapsed = _round(case, case.args(calls))
        if elapsed >= target_ms * 1e5 or calls >= MAX_CALLS:  # a tenth of the target
            break
        calls *= 4
    return max(1, min(MAX_CALLS, round(target_ms * 1e6 * calls / max(elapsed, 1.0))))


def measure(cases: Sequence[Case], repeats: int, target_ms: float = 20.0) -> Sequence[Case]:
    """Fill ``samples_ns`` of every case: one sample (ns per call) per round, cases interleaved.

    The starting case rotates from round to round so that no case always runs first (the one
    after a slow case's round inherits its cache misses). Returns ``cases``.
    """
    arguments: list[list[Any]] = []
    for case in cases:
        case.calls = calibrate(case, target_ms)  # also warms every cache
        arguments.append(case.args(case.calls))
        case.samples_ns = []
    order = list(range(len(cases)))
    for number in range(repeats):
        shift = number % len(order)
        for i in order[shift:] + order[:shift]:
            cases[i].samples_ns.append(_round(cases[i], arguments[i]) / cases[i].calls)
    return cases


def paired_ratios(top: Case, bottom: Case) -> list[float]:
    """``top / bottom`` round by round: the two ran within one round, under the same load."""
    return [a / b for a, b in zip(top.samples_ns, bottom.samples_ns, strict=True)]


def latencies(call: Callable[[Any], object], pool: Sequence[Any], seconds: float) -> array[int]:
    """Every call's latency (ns), ``call(item)`` round-robin over ``pool`` for ``seconds``.

    For distributions (the p99 of payloads during an outage) rather than the cost of a call.
    """
    recorded: array[int] = array("q")
    clock = _clock
    deadline = clock() + int(seconds * 1e9)
    for item in cycle(pool):
        start = clock()
        call(item)
        end = clock()
        recorded.append(end - start)
        if end > deadline:
            break
    return recorded


def seconds_until(
    seen: Callable[[], bool], act: Callable[[], object] | None = None, timeout: float = 10.0
) -> float | None:
    """Seconds from ``act()`` (or from now) to the first ``seen()`` that answers True, polling
    it without pause; ``None`` if ``timeout`` seconds pass first.

    For the latency of an event (a policy change becoming visible, a registry coming back).
    """
    clock = _clock
    start = clock()
    if act is not None:
        act()
    limit = start + int(timeout * 1e9)
    while not seen():
        if clock() > limit:
            return None
    return (clock() - start) / 1e9


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of ``values``, nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))])


def fmt_ns(ns: float) -> str:
    """Nanoseconds as a short human figure."""
    if ns >= 1e6:
        return f"{ns / 1e6:,.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:,.2f} us"
    return f"{ns:,.0f} ns"


def build() -> str:
    """Which build of the hot path this process runs: compiled with mypyc, or pure Python.

    A compiled build whose sources changed since it was built says so (``setup.py`` writes the
    hash of each compiled source to ``_compiled.json``): its figures are not the sources'.
    """
    import policy_engine.engine as engine_module

    where = Path(engine_module.__file__ or "")
    if where.suffix == ".py":
        return f"pure Python ({where.parent})"
    package = where.parent
    try:
        hashes = json.loads((package / "_compiled.json").read_text())["sources"]
    except (OSError, ValueError, KeyError):
        return "compiled with mypyc (build info missing)"
    stale = [
        name
        for name, digest in hashes.items()
        if not (package / name).is_file()
        or hashlib.sha256((package / name).read_bytes()).hexdigest() != digest
    ]
    if stale:
        return f"compiled with mypyc, STALE: {', '.join(stale)} changed since the build"
    return f"compiled with mypyc ({len(hashes)} modules)"


def load() -> str:
    """The 1-minute load average, and how many CPUs share it."""
    return f"load {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"


def header(title: str) -> str:
    """The first lines of a script's output: what ran, on what, with which build."""
    return (
        f"{title}\n"
        f"policy-engine {version('policy-engine')}, {build()}; "
        f"python {platform.python_version()} on {platform.machine()}, {load()}"
    )


def table(cases: Sequence[Case], width: int = 36) -> str:
    """Cases as aligned rows: name, median, min, max (per call)."""
    lines = [f"{'case':<{width}} {'median':>10} {'min':>10} {'max':>10}"]
    for case in cases:
        lines.append(
            f"{case.name:<{width}} {fmt_ns(case.median):>10} {fmt_ns(case.minimum):>10} "
            f"{fmt_ns(case.maximum):>10}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The example feed
# ---------------------------------------------------------------------------------------------


def feed_envelopes() -> Iterator[dict[str, Any]]:
    """The envelopes of ``examples/feed.jsonl`` (its bad lines skipped)."""
    with (ROOT / "examples" / "feed.jsonl").open() as feed:
        for line in feed:
            try:
                envelope = json.loads(line)
            except ValueError:
                continue
            if isinstance(envelope, dict) and isinstance(envelope.get("payload"), dict):
                yield envelope


def trade_event(engine: Any) -> dict[str, Any]:
    """A valid v2 trade event (about 290 bytes): the feed's first one ``engine`` accepts."""
    for envelope in feed_envelopes():
        if envelope.get("schema") != SCHEMA:
            continue
        payload: dict[str, Any] = envelope["payload"]
        if engine.evaluate(SCHEMA, payload, track="v2").valid:
            return payload
    raise SystemExit("no valid trade event in examples/feed.jsonl")


def trade_symbols() -> list[str]:
    """The symbols of the feed's trade events, in order of first appearance (its 200)."""
    seen: dict[str, None] = {}
    for envelope in feed_envelopes():
        symbol = envelope["payload"].get("symbol")
        if envelope.get("schema") == SCHEMA and isinstance(symbol, str):
            seen.setdefault(symbol)
    return list(seen)
