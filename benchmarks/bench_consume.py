"""Messages per second through the consume loop, enforcement on against enforcement off.

Run (from the repository root, with Redis on 127.0.0.1:6379)::

    python benchmarks/bench_consume.py [--messages 20000] [--rounds 5]

What is measured: ``ConsumeLoop`` (the code ``policy-engine consume`` runs) moving the example
feed's envelopes (``examples/feed.jsonl``, repeated) from a source to an output, with rejects to a
DLQ, for:

- Redis -> Redis (a consumer group on one stream, ``XADD`` to an output and a DLQ stream), batch
  sizes 100 and 500;
- JSONL -> JSONL (a file to an output file, DLQ appends fsynced), batch size 100.

"on" is the engine with the example policies and schemas; "off" is the same loop with
``POLICY_FORCE_MODE=off`` (every payload resolved, none validated). The heap built before the
rounds is frozen (``gc.freeze``) as ``policy-engine consume`` freezes its own. The
configurations take turns within each round (``common.measure``: a warm-up round each, then
interleaved rounds with a rotating start; filling a stream or opening files is done before a
round, untimed), so load from elsewhere on a shared machine hits all of them; the median
round's throughput is shown, and the cost is the median of the rounds' on/off ratios. Target:
enforcement costs at most 20 % of the loop's throughput.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from prometheus_client import CollectorRegistry

from common import ROOT, Case, header, load, measure, paired_ratios, rounds_case
from policy_engine import Mode, PolicyEngine, Settings
from policy_engine.loop import (
    ConsumeLoop,
    JsonlSink,
    JsonlSource,
    RedisStreamSink,
    RedisStreamSource,
    parse_redis_url,
)

REDIS_URL = "redis://127.0.0.1:6379/0"
TARGET = 0.20


def feed_lines(count: int) -> list[bytes]:
    """``count`` envelopes from the example feed (its three bad lines left out), repeated."""
    lines = []
    for line in (ROOT / "examples" / "feed.jsonl").read_bytes().splitlines():
        if line.startswith(b'{"schema"') and b'"payload"' in line:
            lines.append(line)
    return [lines[i % len(lines)] for i in range(count)]


def make_engine(enforce: bool) -> PolicyEngine:
    """The example policies and schemas; ``enforce=False`` caps every mode at off."""
    settings = Settings(
        policy_paths=(str(ROOT / "policies"),),
        policy_paths_explicit=True,
        registry_url=str(ROOT / "schemas"),
        policy_watch=False,
        force_mode=None if enforce else Mode.OFF,
    )
    return PolicyEngine(settings=settings, metrics_registry=CollectorRegistry())


class RedisRound:
    """Rounds of Redis -> Redis: a fresh stream filled and the loop built before each round
    (untimed), the loop run in it (timed), the streams checked and deleted after it."""

    def __init__(
        self, engine: PolicyEngine, client: redis.Redis, lines: list[bytes], batch: int, url: str
    ) -> None:
        self.engine, self.client, self.lines, self.batch, self.url = (
            engine,
            client,
            lines,
            batch,
            url,
        )
        self.loop: ConsumeLoop | None = None
        self.parts: tuple[Any, ...] = ()
        self.keys: tuple[str, ...] = ()
        self.read = 0

    def setup(self) -> None:
        """Fill a fresh stream with the lines; open its consumer group, the output and the DLQ."""
        tag = uuid.uuid4().hex[:8]
        src, out, dlq = self.keys = (f"bench:src:{tag}", f"bench:out:{tag}", f"bench:dlq:{tag}")
        for i in range(0, len(self.lines), 1000):
            pipe = self.client.pipeline(transaction=False)
            for line in self.lines[i : i + 1000]:
                pipe.xadd(src, {b"data": line})
            pipe.execute()
        self.client.xgroup_create(src, "bench", id="0")
        source = RedisStreamSource(parse_redis_url(f"{self.url}?stream={src}&group=bench"))
        output = RedisStreamSink(parse_redis_url(f"{self.url}?stream={out}"))
        dead = RedisStreamSink(parse_redis_url(f"{self.url}?stream={dlq}"))
        self.parts = (source, output, dead)
        self.loop = ConsumeLoop(
            self.engine,
            source,
            output=output,
            dlq=dead,
            batch_size=self.batch,
            max_messages=len(self.lines),
        )

    def run(self, items: Sequence[Any]) -> None:
        """The timed part: the loop consumes the stream (one item per message)."""
        assert self.loop is not None
        self.read = self.loop.run().read

    def teardown(self) -> None:
        """Check that every message was read; close and delete the round's streams."""
        for part in self.parts:
            part.close()
        self.client.delete(*self.keys)
        if self.read != len(self.lines):
            raise SystemExit(f"Redis round read {self.read} of {len(self.lines)} messages")

    def case(self, name: str) -> Case:
        """The rounds as a ``common.Case``: nanoseconds per message."""
        return rounds_case(name, self, self.lines)


class JsonlRound:
    """Rounds of JSONL -> JSONL: a source on the feed file and sinks in a fresh directory before
    each round (untimed), the loop run (timed), the count checked and the directory removed."""

    def __init__(self, engine: PolicyEngine, feed: Path, count: int, batch: int) -> None:
        self.engine, self.feed, self.count, self.batch = engine, feed, count, batch
        self.loop: ConsumeLoop | None = None
        self.parts: tuple[Any, ...] = ()
        self.tmp: tempfile.TemporaryDirectory[str] | None = None
        self.read = 0

    def setup(self) -> None:
        """Open the feed, an output file and a fsynced DLQ file."""
        self.tmp = tempfile.TemporaryDirectory()
        source = JsonlSource(self.feed)
        output = JsonlSink(Path(self.tmp.name) / "out.jsonl")
        dead = JsonlSink(Path(self.tmp.name) / "dlq.jsonl", fsync=True)
        self.parts = (source, output, dead)
        self.loop = ConsumeLoop(self.engine, source, output=output, dlq=dead, batch_size=self.batch)

    def run(self, items: Sequence[Any]) -> None:
        """The timed part: the loop consumes the file (one item per message)."""
        assert self.loop is not None
        self.read = self.loop.run().read

    def teardown(self) -> None:
        """Check that every message was read; close the files, remove the directory."""
        for part in self.parts:
            part.close()
        if self.tmp is not None:
            self.tmp.cleanup()
        if self.read != self.count:
            raise SystemExit(f"JSONL round read {self.read} of {self.count} messages")

    def case(self, name: str) -> Case:
        """The rounds as a ``common.Case``: nanoseconds per message."""
        return rounds_case(name, self, range(self.count))


def main() -> int:
    """Run the rounds and print msg/s per configuration and the cost of enforcement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (the median is shown)")
    args = parser.parse_args()

    lines = feed_lines(args.messages)
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    engines = {True: make_engine(True), False: make_engine(False)}
    # As `consume` does before its loop: the start-up heap out of the cyclic collector's sight.
    gc.collect()
    gc.freeze()
    print(
        header(
            f"consume throughput, {len(lines)} messages x {args.rounds} rounds (median msg/s); "
            f"redis-py {redis.__version__}, Redis {client.info('server')['redis_version']}"
        ),
        flush=True,
    )
    started_load = load()
    with tempfile.TemporaryDirectory() as tmp:
        feed = Path(tmp) / "feed.jsonl"
        feed.write_bytes(b"".join(line + b"\n" for line in lines))
        cases: dict[tuple[str, int, bool], Case] = {}
        for batch in (100, 500):
            for enforce in (True, False):
                rounds = RedisRound(engines[enforce], client, lines, batch, REDIS_URL)
                cases[("redis", batch, enforce)] = rounds.case(f"redis {batch} {enforce}")
        for enforce in (True, False):
            jsonl = JsonlRound(engines[enforce], feed, len(lines), 100)
            cases[("jsonl", 100, enforce)] = jsonl.case(f"jsonl 100 {enforce}")
        measure(list(cases.values()), args.rounds)  # a warm-up round each first

    print(f"{'path':<16}{'batch':>6}{'enforcement on':>16}{'off':>12}{'cost':>9}")
    worst = 0.0
    for name, batch in (("redis", 100), ("redis", 500), ("jsonl", 100)):
        on, off = cases[(name, batch, True)], cases[(name, batch, False)]
        # The cost of each round's on/off pair, run in the same round, then the median: a burst
        # of load from elsewhere moves both halves of a pair, not the ratio. (Time per message:
        # on/off is the inverse of the throughputs' ratio.)
        cost = statistics.median(1 - 1 / ratio for ratio in paired_ratios(on, off))
        worst = max(worst, cost)
        label = "Redis -> Redis" if name == "redis" else "JSONL -> JSONL"
        print(
            f"{label:<16}{batch:>6}{1e9 / on.median:>16,.0f}{1e9 / off.median:>12,.0f}{cost:>8.1%}"
        )
    verdict = "met" if worst <= TARGET else "NOT met"
    print(f"target: enforcement costs <= {TARGET:.0%} of throughput: {verdict} (worst {worst:.1%})")
    print(f"machine: {started_load} at the start, {load()} at the end")
    client.close()
    for engine in engines.values():
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
