"""What the benchmark scripts share: the example trade event and interleaved timing rounds.

Each script is run as ``python benchmarks/<name>.py``, which puts this directory on
``sys.path``, so ``from common import ...`` finds this module.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from policy_engine import PolicyEngine

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = "marketdata.TradeEvent"


def trade_event(engine: PolicyEngine) -> dict[str, Any]:
    """A valid v2 trade event (about 270 bytes) from the example feed."""
    with (ROOT / "examples" / "feed.jsonl").open() as feed:
        for line in feed:
            try:
                envelope = json.loads(line)
            except ValueError:
                continue
            if not isinstance(envelope, dict) or envelope.get("schema") != SCHEMA:
                continue
            payload = envelope.get("payload")
            if engine.evaluate(SCHEMA, payload, track="v2").valid:
                return payload  # type: ignore[no-any-return]
    raise SystemExit("no valid trade event in examples/feed.jsonl")


def _nothing() -> None:
    return None


def measure(
    cases: Sequence[tuple[str, Callable[[], object], int]],
    repeats: int,
    setups: dict[str, Callable[[], None]] | None = None,
) -> dict[str, list[float]]:
    """Nanoseconds per call of each ``(name, func, calls)`` case, one sample per round.

    The cases take turns within each round, so a burst of load from elsewhere on a shared
    machine hits every case rather than skewing one ratio. ``setups[name]``, if given, runs
    before each of that case's rounds, outside the timing.
    """
    setups = setups or {}
    for name, func, calls in cases:  # warm caches first
        setups.get(name, _nothing)()
        for _ in range(min(calls, 1000)):
            func()
    samples: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    for _ in range(repeats):
        for name, func, calls in cases:
            setups.get(name, _nothing)()
            start = time.perf_counter_ns()
            for _ in range(calls):
                func()
            samples[name].append((time.perf_counter_ns() - start) / calls)
    return samples
