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
``POLICY_FORCE_MODE=off`` (every payload resolved, none validated). The configurations take
turns within each round (on and off of one path back to back), so load from elsewhere on a shared
machine hits all of them; the median round's throughput is shown, and the cost is the median of
the rounds' on/off ratios. Target: enforcement costs at most 20 % of the loop's throughput.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import redis
from prometheus_client import CollectorRegistry

from policy_engine import Mode, PolicyEngine, Settings
from policy_engine.loop import (
    ConsumeLoop,
    JsonlSink,
    JsonlSource,
    RedisStreamSink,
    RedisStreamSource,
    parse_redis_url,
)

ROOT = Path(__file__).resolve().parents[1]
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


def redis_round(engine: PolicyEngine, client: redis.Redis, lines: list[bytes], batch: int) -> float:
    """Seconds to consume ``lines`` from a fresh stream to an output and a DLQ stream."""
    tag = uuid.uuid4().hex[:8]
    src, out, dlq = f"bench:src:{tag}", f"bench:out:{tag}", f"bench:dlq:{tag}"
    try:
        for i in range(0, len(lines), 1000):
            pipe = client.pipeline(transaction=False)
            for line in lines[i : i + 1000]:
                pipe.xadd(src, {b"data": line})
            pipe.execute()
        client.xgroup_create(src, "bench", id="0")
        source = RedisStreamSource(parse_redis_url(f"{REDIS_URL}?stream={src}&group=bench"))
        output = RedisStreamSink(parse_redis_url(f"{REDIS_URL}?stream={out}"))
        dead = RedisStreamSink(parse_redis_url(f"{REDIS_URL}?stream={dlq}"))
        loop = ConsumeLoop(
            engine, source, output=output, dlq=dead, batch_size=batch, max_messages=len(lines)
        )
        start = time.perf_counter()
        stats = loop.run()
        seconds = time.perf_counter() - start
        assert stats.read == len(lines), stats
        for item in (source, output, dead):
            item.close()
        return seconds
    finally:
        client.delete(src, out, dlq)


def jsonl_round(engine: PolicyEngine, feed: Path, count: int, batch: int) -> float:
    """Seconds to consume ``feed`` to an output file and a fsynced DLQ file."""
    with tempfile.TemporaryDirectory() as tmp:
        source = JsonlSource(feed)
        output = JsonlSink(Path(tmp) / "out.jsonl")
        dead = JsonlSink(Path(tmp) / "dlq.jsonl", fsync=True)
        loop = ConsumeLoop(engine, source, output=output, dlq=dead, batch_size=batch)
        start = time.perf_counter()
        stats = loop.run()
        seconds = time.perf_counter() - start
        assert stats.read == count, stats
        for item in (source, output, dead):
            item.close()
        return seconds


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
    with tempfile.TemporaryDirectory() as tmp:
        feed = Path(tmp) / "feed.jsonl"
        feed.write_bytes(b"".join(line + b"\n" for line in lines))

        cases: list[tuple[str, int, bool, Callable[[PolicyEngine, int], float]]] = []
        for batch in (100, 500):
            for enforce in (True, False):
                cases.append(
                    ("redis", batch, enforce, lambda e, b: redis_round(e, client, lines, b))
                )
        for enforce in (True, False):
            cases.append(("jsonl", 100, enforce, lambda e, b: jsonl_round(e, feed, len(lines), b)))

        for _name, batch, enforce, run in cases:  # warm up: routes, validators, connections
            run(engines[enforce], batch)
        samples: dict[tuple[str, int, bool], list[float]] = {c[:3]: [] for c in cases}
        for round_number in range(args.rounds):
            order = cases if round_number % 2 == 0 else list(reversed(cases))
            for name, batch, enforce, run in order:
                samples[(name, batch, enforce)].append(len(lines) / run(engines[enforce], batch))

    print(
        f"consume throughput, {len(lines)} messages x {args.rounds} rounds (median msg/s); "
        f"Python {platform.python_version()}, {os.cpu_count()} CPU(s), redis-py "
        f"{redis.__version__}, Redis {client.info('server')['redis_version']}"
    )
    print(f"{'path':<16}{'batch':>6}{'enforcement on':>16}{'off':>12}{'cost':>9}")
    worst = 0.0
    for name, batch in (("redis", 100), ("redis", 500), ("jsonl", 100)):
        ons, offs = samples[(name, batch, True)], samples[(name, batch, False)]
        on, off = statistics.median(ons), statistics.median(offs)
        # The cost of each round's on/off pair, run back to back, then the median: a burst of
        # load from elsewhere moves both halves of a pair, not the ratio.
        cost = statistics.median(1 - a / b for a, b in zip(ons, offs, strict=True))
        worst = max(worst, cost)
        label = "Redis -> Redis" if name == "redis" else "JSONL -> JSONL"
        print(f"{label:<16}{batch:>6}{on:>16,.0f}{off:>12,.0f}{cost:>8.1%}")
    verdict = "met" if worst <= TARGET else "NOT met"
    print(f"target: enforcement costs <= {TARGET:.0%} of throughput: {verdict} (worst {worst:.1%})")
    client.close()
    for engine in engines.values():
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
