"""Per-payload cost of policy-engine against raw jsonschema-rs and the old pipeline's approach.

Run: ``python benchmarks/bench_evaluate.py`` (from the repository root). Prints the median
nanoseconds per call of several repeats, and the ratios the targets are stated in:

- resolve only (``resolve_mode``): target <= 1 us;
- ``evaluate`` of a valid trade event: target <= 2.5x the raw jsonschema-rs floor;
- the old approach (a fresh ``Draft7Validator`` per payload): target >= 40x slower than evaluate.

Figures are only comparable within one run: the baseline is measured in the same process.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
from collections.abc import Callable
from importlib.metadata import version

import jsonschema
import jsonschema_rs

from common import ROOT, SCHEMA, measure, trade_event
from policy_engine import PolicyEngine


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per round")
    parser.add_argument("--repeats", type=int, default=15, help="rounds (the median is shown)")
    args = parser.parse_args()

    os.chdir(ROOT)
    # The core, as issue 2 states its targets; bench_metrics.py measures what metrics add.
    engine = PolicyEngine(policies="policies", registry="schemas", metrics=False)
    with_metrics = PolicyEngine(policies="policies", registry="schemas")
    valid = trade_event(engine)
    invalid = copy.deepcopy(valid)
    invalid["price"] = -1.0
    invalid["side"] = "sideways"
    schema = json.loads((ROOT / "schemas" / SCHEMA / "v2.json").read_text())
    floor_validator = jsonschema_rs.validator_for(schema, validate_formats=True)

    def old_approach() -> list[str]:
        # What the old pipeline's validate_payload did for every payload.
        validator = jsonschema.Draft7Validator(schema)
        return [e.message for e in validator.iter_errors(valid)]

    assert engine.evaluate(SCHEMA, valid, track="v2").valid is True
    assert engine.evaluate(SCHEMA, invalid, track="v2").valid is False
    assert floor_validator.is_valid(valid)
    assert old_approach() == []

    cases: list[tuple[str, Callable[[], object], int]] = [
        ("resolve only (resolve_mode)", lambda: engine.resolve_mode(SCHEMA, valid), args.calls),
        ("evaluate, valid trade", lambda: engine.evaluate(SCHEMA, valid), args.calls),
        ("evaluate, valid, metrics on", lambda: with_metrics.evaluate(SCHEMA, valid), args.calls),
        ("evaluate, invalid trade", lambda: engine.evaluate(SCHEMA, invalid), args.calls // 5),
        ("jsonschema_rs is_valid (floor)", lambda: floor_validator.is_valid(valid), args.calls),
        ("old: Draft7Validator per payload", old_approach, max(args.calls // 100, 50)),
    ]
    print(f"policy-engine evaluate benchmark: {len(json.dumps(valid))}-byte {SCHEMA} v2 payload")
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"jsonschema-rs {version('jsonschema-rs')}, jsonschema {version('jsonschema')}, "
        f"policy-engine {version('policy-engine')}"
    )
    print(f"median of {args.repeats} repeats\n")
    results: dict[str, float] = {}
    print(f"{'case':<36} {'median ns':>11} {'min':>11} {'max':>11}")
    for name, values in measure(cases, args.repeats).items():
        results[name] = statistics.median(values)
        print(f"{name:<36} {results[name]:>11,.0f} {min(values):>11,.0f} {max(values):>11,.0f}")

    floor = results["jsonschema_rs is_valid (floor)"]
    evaluate = results["evaluate, valid trade"]
    old = results["old: Draft7Validator per payload"]
    resolve = results["resolve only (resolve_mode)"]
    print()
    print(f"resolve only:                 {resolve / 1000:6.2f} us   (target <= 1 us)")
    print(f"evaluate valid / floor:       {evaluate / floor:6.2f} x    (target <= 2.5 x)")
    print(f"old approach / evaluate:      {old / evaluate:6.1f} x    (target >= 40 x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
