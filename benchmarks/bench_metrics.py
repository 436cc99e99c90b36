"""Per-payload cost of metrics and logging: ``evaluate`` with both on versus both off.

Run: ``python benchmarks/bench_metrics.py`` (from the repository root). Two engines over the
example ``policies/`` and ``schemas/`` evaluate the same valid and invalid trade events:

- **on**: metrics on a ``CollectorRegistry`` (the default hook) and the ``policy_engine`` loggers
  writing JSON lines (``JsonLogFormatter``) to ``os.devnull``; warn-mode failures are logged
  at most once per 10 s per schema/track, as in production;
- **off**: ``PolicyEngine(..., metrics=False)`` and the ``policy_engine.decisions`` logger disabled.

The cases take turns within each round (like ``bench_evaluate.py``), so load from elsewhere on
a shared machine hits both sides of a difference. Target: overhead <= 1 us per payload.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import platform
import statistics
import sys
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from common import ROOT, SCHEMA, measure, trade_event
from policy_engine import PolicyEngine
from policy_engine.logs import JsonLogFormatter

TARGET_NS = 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per round")
    parser.add_argument("--repeats", type=int, default=15, help="rounds (the median is shown)")
    args = parser.parse_args()

    os.chdir(ROOT)
    registry = CollectorRegistry()
    on = PolicyEngine(policies="policies", registry="schemas", metrics_registry=registry)
    off = PolicyEngine(policies="policies", registry="schemas", metrics=False)
    valid = trade_event(off)
    invalid = copy.deepcopy(valid)
    invalid["price"] = -1.0
    invalid["side"] = "sideways"
    for eng in (on, off):
        assert eng.evaluate(SCHEMA, valid, track="v2").valid is True
        assert eng.evaluate(SCHEMA, invalid, track="v2").valid is False

    sink = open(os.devnull, "w")  # noqa: SIM115 - open for the whole run
    handler = logging.StreamHandler(sink)
    handler.setFormatter(JsonLogFormatter())
    engine_log = logging.getLogger("policy_engine")
    engine_log.addHandler(handler)
    engine_log.setLevel(logging.INFO)
    decisions = logging.getLogger("policy_engine.decisions")

    def logging_on() -> None:
        decisions.disabled = False

    def logging_off() -> None:
        decisions.disabled = True

    def run(eng: PolicyEngine, payload: dict[str, Any]) -> Callable[[], object]:
        return lambda: eng.evaluate(SCHEMA, payload, track="v2")

    calls = args.calls
    cases = [
        ("valid, metrics+logging off", run(off, valid), calls),
        ("valid, metrics+logging on", run(on, valid), calls),
        ("invalid, metrics+logging off", run(off, invalid), calls // 5),
        ("invalid, metrics+logging on", run(on, invalid), calls // 5),
    ]
    setups = {name: logging_on if name.endswith(" on") else logging_off for name, _, _ in cases}
    print(f"policy-engine metrics/logging overhead: {SCHEMA} v2, {len(json.dumps(valid))} bytes")
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"prometheus-client {version('prometheus-client')}, "
        f"jsonschema-rs {version('jsonschema-rs')}"
    )
    print(f"median of {args.repeats} rounds, cases interleaved\n")
    medians: dict[str, float] = {}
    minima: dict[str, float] = {}
    print(f"{'case':<32} {'median ns':>11} {'min':>11} {'max':>11}")
    for name, values in measure(cases, args.repeats, setups).items():
        medians[name], minima[name] = statistics.median(values), min(values)
        print(f"{name:<32} {medians[name]:>11,.0f} {minima[name]:>11,.0f} {max(values):>11,.0f}")
    engine_log.removeHandler(handler)
    sink.close()

    # The minimum of the rounds is the figure least disturbed by other load on the machine.
    print(f"\n{'overhead per payload (on - off)':<32} {'of medians':>11} {'of minima':>11}")
    for kind in ("valid", "invalid"):
        on_name, off_name = f"{kind}, metrics+logging on", f"{kind}, metrics+logging off"
        by_median = medians[on_name] - medians[off_name]
        by_min = minima[on_name] - minima[off_name]
        verdict = "ok" if by_min <= TARGET_NS else "OVER"
        print(f"{kind + ' payload':<32} {by_median:>8,.0f} ns {by_min:>8,.0f} ns   {verdict}")
    print(f"target: <= {TARGET_NS:,.0f} ns")
    scraped = len(generate_latest(registry).splitlines())
    print(f"\none scrape of the registry afterwards: {scraped} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
