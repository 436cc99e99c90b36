"""Per-payload cost of policy-engine, metrics on against metrics off, and against jsonschema-rs.

Run: ``python benchmarks/bench_evaluate.py`` (from the repository root). Every case is measured
twice in the same run, interleaved: with the default engine (metrics on, the way users run it,
here on a ``CollectorRegistry`` of its own) and with ``PolicyEngine(..., metrics=False)``:

- a **decision**: ``evaluate`` of a trade whose rule is ``mode: off`` (a temporary policy file
  ``marketdata.TradeEvent: {mode: off}``: resolved, counted, not validated), and
  ``resolve_mode(schema, key=symbol)`` under the example ``policies/`` (a 200-symbol pool);
- **resolve only**: ``resolve_mode(schema, payload)``, the key read from the payload;
- ``evaluate`` of the valid and of an invalid example ``marketdata.TradeEvent`` v2 trade;

and, as references in the same rounds, raw jsonschema-rs ``is_valid`` of the valid trade (the
floor: the validator ``evaluate`` itself calls) and the old pipeline's approach (a fresh
``Draft7Validator`` per payload). Printed, with no pass/fail, against these targets:

- decision: metrics on <= 1.25x metrics off;
- valid trade: ``evaluate`` with metrics on <= 2x raw jsonschema-rs ``is_valid``, and with
  metrics off <= 2.5x;
- resolve only (metrics off) <= 1 us;
- the old approach >= 40x slower than ``evaluate`` (metrics off).

A second section measures a producer that invents schema names (default engine): ``evaluate``
of the valid trade under a new, unknown name on every call, against the known name (target:
at most 5x), and the known name on an engine that has just seen ``--flood`` invented names,
against one that has not (target: the same cost), with the memory the flood left behind.

Figures are only comparable within one run: every ratio is of two cases of the same rounds.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs
from prometheus_client import CollectorRegistry

from common import (
    ROOT,
    SCHEMA,
    Case,
    fmt_ns,
    header,
    load,
    measure,
    paired_ratios,
    repeat,
    trade_event,
    trade_symbols,
)
from policy_engine import Mode, PolicyEngine
from policy_engine.engine import MAX_UNKNOWN_ROUTES

OFF_POLICY = f"version: 1\nschemas:\n  {SCHEMA}: {{mode: off}}\n"
#: (row, the engine's policies: "example" or "off") in the order printed.
ROWS = (
    ("decision: evaluate, rule mode off", "off"),
    ("decision: resolve_mode(key=)", "example"),
    ("resolve only: resolve_mode(payload)", "example"),
    ("evaluate, valid trade", "example"),
    ("evaluate, invalid trade", "example"),
)
ON, OFF = "metrics on (default)", "metrics off"


def engine_cases(
    row: str, engine: PolicyEngine, valid: dict[str, Any], invalid: dict[str, Any]
) -> Case:
    """The case of ``row`` on ``engine``: the loop a caller would write, the method bound once."""
    if row == "decision: resolve_mode(key=)":
        resolve = engine.resolve_mode

        def by_key(keys: Sequence[Any]) -> None:
            for key in keys:
                resolve(SCHEMA, key=key)

        return Case(row, by_key, trade_symbols())
    if row == "resolve only: resolve_mode(payload)":
        return Case(row, repeat(engine.resolve_mode, SCHEMA, valid))
    payload = invalid if row == "evaluate, invalid trade" else valid
    return Case(row, repeat(engine.evaluate, SCHEMA, payload))


def main() -> int:
    """Measure every row with both engines and the two references; print the table and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21, help="rounds (the median is shown)")
    parser.add_argument(
        "--round-ms", type=float, default=20.0, help="duration of one round of a case (20 ms)"
    )
    parser.add_argument(
        "--flood", type=int, default=300_000, help="invented names for the flood (300 000)"
    )
    args = parser.parse_args()

    os.chdir(ROOT)
    tmp = Path(tempfile.mkdtemp(prefix="bench-evaluate-"))
    (tmp / "off.yaml").write_text(OFF_POLICY)
    engines: dict[tuple[str, str], PolicyEngine] = {}
    for policies, path in (("example", "policies"), ("off", str(tmp / "off.yaml"))):
        engines[(ON, policies)] = PolicyEngine(
            policies=path, registry="schemas", metrics_registry=CollectorRegistry()
        )
        engines[(OFF, policies)] = PolicyEngine(policies=path, registry="schemas", metrics=False)

    valid = trade_event(engines[(OFF, "example")])
    invalid = copy.deepcopy(valid)
    invalid["price"] = -1.0
    invalid["side"] = "sideways"
    schema = json.loads((ROOT / "schemas" / SCHEMA / "v2.json").read_text())
    floor_validator = jsonschema_rs.validator_for(schema, validate_formats=True)

    def old_approach() -> list[str]:
        # What the old pipeline's validate_payload did for every payload.
        validator = jsonschema.Draft7Validator(schema)
        return [e.message for e in validator.iter_errors(valid)]

    for which in (ON, OFF):
        example, off_rule = engines[(which, "example")], engines[(which, "off")]
        if not example.evaluate(SCHEMA, valid).valid or example.evaluate(SCHEMA, invalid).valid:
            raise SystemExit("the example policies do not validate the trade events as expected")
        if off_rule.evaluate(SCHEMA, valid).mode is not Mode.OFF:
            raise SystemExit(f"{which}: the temporary policy does not give mode off")
    if not floor_validator.is_valid(valid) or old_approach():
        raise SystemExit("jsonschema-rs or jsonschema rejects the valid trade")

    grid: dict[tuple[str, str], Case] = {}
    for row, policies in ROWS:
        for which in (ON, OFF):
            case = engine_cases(row, engines[(which, policies)], valid, invalid)
            case.name = f"{row} [{which}]"
            grid[(row, which)] = case
    floor = Case("jsonschema-rs is_valid, valid (floor)", repeat(floor_validator.is_valid, valid))
    old = Case("old: Draft7Validator per payload", repeat(old_approach))
    cases: list[Case] = [*grid.values(), floor, old]

    print(
        header(
            f"policy-engine evaluate benchmark: {len(json.dumps(valid))}-byte {SCHEMA} v2 payload; "
            f"jsonschema-rs {version('jsonschema-rs')}, jsonschema {version('jsonschema')}"
        )
    )
    print(
        f"{len(cases)} cases interleaved, {args.repeats} rounds of ~{args.round_ms:g} ms each "
        "(rotating start); median, min and max of the rounds, per call\n",
        flush=True,
    )
    started_load = load()
    measure(cases, args.repeats, args.round_ms)

    width = max(len(name) for name in [row for row, _ in ROWS] + [floor.name, old.name])
    print(
        f"{'case':<{width}}  {ON:>30}  {OFF:>30}  {'on/off':>7}\n"
        f"{'':<{width}}  {'median (min-max)':>30}  {'median (min-max)':>30}"
    )
    for row, _ in ROWS:
        with_metrics, without = grid[(row, ON)], grid[(row, OFF)]
        print(
            f"{row:<{width}}  {spread(with_metrics):>30}  {spread(without):>30}  "
            f"{with_metrics.median / without.median:>6.2f}x"
        )
    for case in (floor, old):
        print(f"{case.name:<{width}}  {spread(case):>30}")

    decision_on, decision_off = grid[(ROWS[0][0], ON)], grid[(ROWS[0][0], OFF)]
    key_on, key_off = grid[(ROWS[1][0], ON)], grid[(ROWS[1][0], OFF)]
    valid_on, valid_off = grid[("evaluate, valid trade", ON)], grid[("evaluate, valid trade", OFF)]
    resolve_off = grid[("resolve only: resolve_mode(payload)", OFF)]
    print(
        "\ntargets (ratio of the medians; in brackets the median and range of the per-round "
        "ratios, each of two cases of one round)"
    )
    checks: list[tuple[str, Case, Case, str, Callable[[float], bool] | None]] = [
        ("decision, evaluate mode off: on / off", decision_on, decision_off, "<= 1.25x", le(1.25)),
        ("decision, resolve_mode(key=): on / off", key_on, key_off, "<= 1.25x", le(1.25)),
        ("valid trade: evaluate on / jsonschema-rs", valid_on, floor, "<= 2x", le(2.0)),
        ("valid trade: evaluate off / jsonschema-rs", valid_off, floor, "<= 2.5x", le(2.5)),
        ("old approach / evaluate valid, metrics off", old, valid_off, ">= 40x", ge(40.0)),
        ("old approach / evaluate valid, metrics on", old, valid_on, "", None),
    ]
    for label, top, bottom, target, holds in checks:
        ratio = top.median / bottom.median
        pairs = paired_ratios(top, bottom)
        paired = f"[{statistics.median(pairs):.2f}x, {min(pairs):.2f}-{max(pairs):.2f}]"
        verdict = ""
        if holds is not None:
            verdict = f"target {target:<9} " + ("holds" if holds(ratio) else "DOES NOT HOLD")
        print(f"  {label:<44} {ratio:7.2f}x  {paired:<26} {verdict}".rstrip())
    verdict = "holds" if resolve_off.median <= 1000 else "DOES NOT HOLD"
    print(
        f"  {'resolve only, metrics off':<44} {fmt_ns(resolve_off.median):>8}  {'':<26} "
        f"target {'<= 1 us':<9} {verdict}"
    )
    flood_section(valid, args)
    print(f"\nmachine: {started_load} at the start, {load()} at the end")
    for eng in engines.values():
        eng.close()
    shutil.rmtree(tmp)
    return 0


def rss_mb() -> float:
    """The process's resident memory now, in MB (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def flood_section(valid: dict[str, Any], args: argparse.Namespace) -> None:
    """Unknown schema names: their cost, and what a flood of them leaves behind."""
    known = PolicyEngine(
        policies="policies", registry="schemas", metrics_registry=CollectorRegistry()
    )
    flooded = PolicyEngine(
        policies="policies", registry="schemas", metrics_registry=CollectorRegistry()
    )
    before = rss_mb()
    for n in range(args.flood):
        flooded.evaluate(f"made.Up{n}", valid)
    grown = rss_mb() - before
    # Unique names: more of them than the unknown-route LRU holds, so every call is a new name.
    invented = [f"invented.Name{n}" for n in range(200_000)]
    evaluate = known.evaluate

    def unknown_names(names: Sequence[Any]) -> None:
        for name in names:
            evaluate(name, valid)

    unknown_case = Case("evaluate, a new unknown name each call", unknown_names, invented)
    known_case = Case("evaluate, valid trade, known name", repeat(known.evaluate, SCHEMA, valid))
    after_case = Case(
        f"same, after {args.flood:,} invented names", repeat(flooded.evaluate, SCHEMA, valid)
    )
    cases = [known_case, unknown_case, after_case]
    measure(cases, args.repeats, args.round_ms)
    print(f"\nunknown schema names (default engine), {args.repeats} rounds")
    for case in cases:
        print(f"  {case.name:<44} {spread(case):>30}")
    for label, top, bottom, target, holds in (
        ("unknown name / known name", unknown_case, known_case, "<= 5x", le(5.0)),
        ("known name after the flood / without", after_case, known_case, "<= 1.1x", le(1.1)),
    ):
        ratio = top.median / bottom.median
        verdict = "holds" if holds(ratio) else "DOES NOT HOLD"
        print(f"  {label:<44} {ratio:7.2f}x  target {target:<9} {verdict}")
    state = flooded._state
    print(
        f"  memory after {args.flood:,} invented names: +{grown:.0f} MB resident; routes kept: "
        f"{len(state.routes)} known, {len(state.unknown_routes)} unknown (at most "
        f"{MAX_UNKNOWN_ROUTES:,}); schema slots: {len(flooded._schemas._slots)}"
    )
    known.close()
    flooded.close()


def spread(case: Case) -> str:
    """``median (min-max)`` of a case, per call."""
    return f"{fmt_ns(case.median)} ({fmt_ns(case.minimum)}-{fmt_ns(case.maximum)})"


def le(bound: float) -> Callable[[float], bool]:
    """A check that a ratio is at most ``bound``."""
    return lambda ratio: ratio <= bound


def ge(bound: float) -> Callable[[float], bool]:
    """A check that a ratio is at least ``bound``."""
    return lambda ratio: ratio >= bound


if __name__ == "__main__":
    sys.exit(main())
