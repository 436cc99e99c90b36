"""Per-payload cost of metrics and logging: ``evaluate`` with both on versus both off.

Run: ``python benchmarks/bench_metrics.py`` (from the repository root). Two engines over the
example ``policies/`` and ``schemas/`` evaluate the same valid and invalid trade events:

- **on**: metrics on a ``CollectorRegistry`` (the default hook) and the ``policy_engine`` loggers
  writing JSON lines (``JsonLogFormatter``) to ``os.devnull``; warn-mode failures are logged
  at most once per 10 s per schema/track, as in production;
- **off**: ``PolicyEngine(..., metrics=False)`` and the ``policy_engine.decisions`` logger disabled.

The cases take turns within each round (``common.measure``, like every script here), so load
from elsewhere on a shared machine hits both sides of a difference. Target: overhead <= 1 us per
payload.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import statistics
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import version
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from common import ROOT, SCHEMA, Case, header, load, measure, paired_ratios, table, trade_event
from policy_engine import PolicyEngine
from policy_engine.logs import JsonLogFormatter

TARGET_NS = 1000.0


def main() -> int:
    """Measure the four cases interleaved; print them and the overhead per payload."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21, help="rounds (the median is shown)")
    parser.add_argument(
        "--round-ms", type=float, default=20.0, help="duration of one round of a case (20 ms)"
    )
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
        if not eng.evaluate(SCHEMA, valid, track="v2").valid:
            raise SystemExit("the valid trade is not valid")
        if eng.evaluate(SCHEMA, invalid, track="v2").valid is not False:
            raise SystemExit("the invalid trade is not invalid")

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

    def run(eng: PolicyEngine, payload: dict[str, Any]) -> Callable[[Sequence[Any]], None]:
        evaluate = eng.evaluate

        def body(items: Sequence[Any]) -> None:
            for _ in items:
                evaluate(SCHEMA, payload, track="v2")

        return body

    cases = {
        (kind, side): Case(
            f"{kind}, metrics+logging {side}",
            run(on if side == "on" else off, payload),
            setup=logging_on if side == "on" else logging_off,
        )
        for kind, payload in (("valid", valid), ("invalid", invalid))
        for side in ("off", "on")
    }
    print(
        header(
            f"policy-engine metrics/logging overhead: {SCHEMA} v2, {len(json.dumps(valid))} bytes; "
            f"prometheus-client {version('prometheus-client')}, "
            f"jsonschema-rs {version('jsonschema-rs')}"
        )
    )
    print(
        f"{len(cases)} cases interleaved, {args.repeats} rounds of ~{args.round_ms:g} ms "
        "(rotating start)\n",
        flush=True,
    )
    started_load = load()
    measure(list(cases.values()), args.repeats, args.round_ms)
    engine_log.removeHandler(handler)
    sink.close()
    print(table(list(cases.values()), 32))

    # The minimum of the rounds is the figure least disturbed by other load on the machine;
    # the per-round differences pair the two sides of one round.
    print(
        f"\n{'overhead per payload (on - off)':<32} {'of medians':>11} {'of minima':>11} "
        f"{'per round':>11}"
    )
    for kind in ("valid", "invalid"):
        with_, without = cases[(kind, "on")], cases[(kind, "off")]
        by_median = with_.median - without.median
        by_min = with_.minimum - without.minimum
        by_round = statistics.median(
            a - b for a, b in zip(with_.samples_ns, without.samples_ns, strict=True)
        )
        ratio = statistics.median(paired_ratios(with_, without))
        verdict = "ok" if by_min <= TARGET_NS else "OVER"
        print(
            f"{kind + ' payload':<32} {by_median:>8,.0f} ns {by_min:>8,.0f} ns "
            f"{by_round:>8,.0f} ns   {verdict}  (on/off {ratio:.2f}x)"
        )
    print(f"target: <= {TARGET_NS:,.0f} ns")
    scraped = len(generate_latest(registry).splitlines())
    print(f"\none scrape of the registry afterwards: {scraped} lines")
    print(f"machine: {started_load} at the start, {load()} at the end")
    on.close()
    off.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
