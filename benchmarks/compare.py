"""policy-engine against the peers a team would otherwise use, in one reproducible run (issue 8).

Run from the repository root, after ``pip install -e '.[bench]'`` (this script installs nothing):

    python benchmarks/compare.py            # results in benchmarks/results/
    python benchmarks/compare.py --docs     # ... and the chart for docs/performance.png

Three sections, each timed by ``common.measure`` (the one timer of ``benchmarks/``: calls per
round calibrated after a warm-up, every case takes a turn in every round and the first case
rotates, so a burst of load from elsewhere on a shared machine hits all of them rather than one
ratio); the median of the rounds is shown with the min and the max:

1. **Per-payload decision**: which mode a key gets, with the same 25 % percentage rollout set up
   offline from a local file in each tool: policy-engine ``resolve_mode`` (by key and by the
   payload's key path; the core, ``metrics=False``, and the default engine, metrics on) and
   the default engine's ``evaluate`` of a payload whose rule is ``mode: off`` (the decision that
   metrics count, nothing validated), against UnleashClient (``flexibleRollout`` from a
   bootstrap file, fetching disabled), the OpenFeature SDK with the flagd in-process provider
   (file source, ``fractional``) and GrowthBook (features from a local file, a boolean feature
   ``force``d on with ``coverage``; ``set_attributes({"id": key})`` + ``is_on(flag)``). Every
   tool's share of keys in the rollout is checked first (25 % +- 2).
2. **Validation**: policy-engine ``evaluate`` of a valid and an invalid ``marketdata.TradeEvent``
   v2 and of a 50-bar ``marketdata.OHLCVBatch`` (all from ``examples/feed.jsonl``) against
   jsonschema (compiled validator, reused, with format checker), fastjsonschema (compiled once),
   raw jsonschema-rs and the old pipeline's approach (a fresh ``Draft7Validator`` per payload).
3. **End to end**: throughput of the consume loop (``policy-engine consume``'s ``ConsumeLoop``,
   driven by ``bench_consume.py``'s rounds), JSONL -> JSONL and Redis -> Redis, with enforcement
   on (the example ``policies/``) and off (``POLICY_FORCE_MODE=off``). Without the consume
   command or ``bench_consume.py`` the section says "not available"; without Redis, its half.

The ratios of the tables are to the core (``PolicyEngine(..., metrics=False)``); the default
engine (metrics on, counting into a ``CollectorRegistry`` of its own) is shown beside it. Writes
``compare.json``, ``compare.png`` and ``compare.md`` (the tables as Markdown) to ``--out``; with
``--docs`` also ``docs/performance.png``. The targets of issues 11 and 8 are checked at the end;
the exit status is 0 whether or not they hold (1 if a check of the set-up fails, 2 if the bench
extra is missing).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import importlib.util
import itertools
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from common import ROOT, build, feed_envelopes, fmt_ns, measure, paired_ratios
from common import Case as TimedCase

TRADE = "marketdata.TradeEvent"
OHLCV = "marketdata.OHLCVBatch"
FLAG = "trade-strict"  # the flag / feature name in every peer
ROLLOUT_PERCENT = 25  # the same percentage rollout in every tool
SHARE_KEYS = 10_000  # keys over which each tool's share of the rollout is checked
SHARE_TOLERANCE = 2.0  # percentage points (the binomial s.d. at 10 000 keys is 0.43)
UNIQUE_POOL = 20_000  # distinct keys for the "unique keys" runs
OHLCV_BARS = 50
CONSUME_BATCH = 100  # policy-engine consume's default --batch-size
BENCH_INSTALL = "pip install -e '.[bench]'"

# Module to import -> the distribution that provides it (all in the ``bench`` extra).
PEERS: dict[str, str] = {
    "UnleashClient": "UnleashClient",
    "openfeature": "openfeature-sdk",
    "openfeature.contrib.provider.flagd": "openfeature-provider-flagd",
    "growthbook": "growthbook",
    "fastjsonschema": "fastjsonschema",
    "matplotlib": "matplotlib",
}
VERSIONS = (
    "policy-engine",
    "jsonschema",
    "jsonschema-rs",
    "fastjsonschema",
    "UnleashClient",
    "yggdrasil-engine",
    "openfeature-sdk",
    "openfeature-provider-flagd",
    "openfeature-flagd-core",
    "growthbook",
    "mmh3",
    "redis",
    "matplotlib",
)


# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Case(TimedCase):
    """A ``common.Case`` with what the tables and the chart need: whose it is and its group.

    ``body(args)`` makes ``len(args)`` calls, one per argument; ``common.measure`` times it.
    """

    tool: str
    group: str  # the key set or the payload the case belongs to
    ours: bool = False
    info: str = ""  # shown in the table; "" for the core rows

    def to_dict(self) -> dict[str, Any]:
        """The case as JSON (without its callables)."""
        return {
            "tool": self.tool,
            "group": self.group,
            "ours": self.ours,
            "info": self.info,
            **super().to_dict(),
        }


# ---------------------------------------------------------------------------------------------
# Inputs from the example feed
# ---------------------------------------------------------------------------------------------


@dataclass
class Inputs:
    """The payloads and keys every section uses, all from the example feed."""

    valid_trade: dict[str, Any]
    invalid_trade: dict[str, Any]
    invalid_violations: list[str]
    ohlcv: dict[str, Any]
    trades: list[dict[str, Any]]  # the first v2 trade of each symbol, in feed order
    symbols: list[str]  # their symbols (the feed's 200)
    modes: dict[str, str] = field(default_factory=dict)  # the mode evaluate gives each payload


def load_inputs(engine: Any) -> Inputs:
    """Pick the payloads with ``engine`` (over the example policies and schemas).

    The valid trade is the feed's first valid v2 trade (as in ``bench_evaluate.py``); the invalid
    one is its first invalid v2 trade whose key resolves to ``warn``, so that evaluating it
    thousands of times does not trip the rule's guardrail and change the mode mid-run (a strict
    rejection does the same validation work); the OHLCV batch takes the first valid batch's
    header and the first 50 bars of the feed's valid batches.
    """
    valid: dict[str, Any] | None = None
    invalid: tuple[dict[str, Any], list[str]] | None = None
    batch: dict[str, Any] | None = None
    bars: list[dict[str, Any]] = []
    trades: list[dict[str, Any]] = []
    for envelope in feed_envelopes():
        schema, payload = envelope.get("schema"), envelope["payload"]
        if schema == TRADE and envelope.get("track", "v2") == "v2":
            trades.append(payload)
            if valid is not None and invalid is not None:
                continue
            decision = engine.evaluate(TRADE, payload, track="v2")
            if decision.valid and valid is None:
                valid = payload
            elif (
                decision.valid is False
                and invalid is None
                and engine.resolve_mode(TRADE, payload, track="v2").value == "warn"
            ):
                found = [f"{v.path or '/'} {v.keyword}" for v in decision.violations]
                invalid = (payload, found)
        elif schema == OHLCV and len(bars) < OHLCV_BARS and engine.evaluate(OHLCV, payload).valid:
            batch = batch or payload
            bars.extend(payload["bars"])
    if valid is None or invalid is None or batch is None or len(bars) < OHLCV_BARS:
        raise SystemExit("examples/feed.jsonl lacks the payloads this benchmark needs")
    ohlcv = {**copy.deepcopy(batch), "bars": copy.deepcopy(bars[:OHLCV_BARS])}
    # One payload per symbol: a pool that stays in the CPU caches like the payload a consumer
    # has just decoded (cycling through all ~7 000 trades would add cache misses, ~100-300 ns
    # a call here, that the real path does not have).
    first: dict[str, dict[str, Any]] = {}
    for trade in trades:
        if isinstance(trade.get("symbol"), str):
            first.setdefault(trade["symbol"], trade)
    modes = {
        "valid trade": engine.resolve_mode(TRADE, valid).value,
        "invalid trade": engine.resolve_mode(TRADE, invalid[0]).value,
        f"OHLCV batch, {OHLCV_BARS} bars": engine.resolve_mode(OHLCV, ohlcv).value,
    }
    return Inputs(valid, invalid[0], invalid[1], ohlcv, list(first.values()), list(first), modes)


# ---------------------------------------------------------------------------------------------
# 1. Per-payload decision
# ---------------------------------------------------------------------------------------------


def write_flag_files(tmp: Path) -> dict[str, Path]:
    """The same 25 % rollout as each tool's local file: policy, Unleash, flagd, GrowthBook; and
    a policy whose rule is ``mode: off`` (a decision that ``evaluate`` counts, with nothing to
    validate)."""
    policies = tmp / "policies"
    policies.mkdir()
    (tmp / "policies-off").mkdir()
    (tmp / "policies-off" / "off.yaml").write_text(
        f"version: 1\nschemas:\n  {TRADE}: {{mode: off}}\n"
    )
    (policies / "rollout.yaml").write_text(
        "version: 1\n"
        "schemas:\n"
        f"  {TRADE}:\n"
        "    tracks:\n"
        "      v2:\n"
        "        mode: strict\n"
        "        baseline: warn\n"
        f"        canary: {ROLLOUT_PERCENT}\n"
        "        key: symbol\n"
    )
    unleash = {
        "version": 2,
        "features": [
            {
                "name": FLAG,
                "type": "release",
                "enabled": True,
                "strategies": [
                    {
                        "name": "flexibleRollout",
                        "parameters": {
                            "rollout": str(ROLLOUT_PERCENT),
                            "stickiness": "userId",
                            "groupId": FLAG,
                        },
                    }
                ],
            }
        ],
    }
    flagd = {
        "$schema": "https://flagd.dev/schema/v0/flags.json",
        "flags": {
            FLAG: {
                "state": "ENABLED",
                "variants": {"strict": "strict", "warn": "warn"},
                "defaultVariant": "warn",
                "targeting": {
                    "fractional": [
                        ["strict", ROLLOUT_PERCENT],
                        ["warn", 100 - ROLLOUT_PERCENT],
                    ]
                },
            }
        },
    }
    growthbook = {  # a boolean feature, on for 25 % of ids: what is_on answers
        FLAG: {
            "defaultValue": False,
            "rules": [
                {
                    "force": True,
                    "coverage": ROLLOUT_PERCENT / 100,
                    "hashAttribute": "id",
                    "seed": FLAG,
                    "hashVersion": 2,
                }
            ],
        }
    }
    files = {
        "policies": policies,
        "policies_off": tmp / "policies-off",
        "unleash": tmp / "unleash-bootstrap.json",
        "flagd": tmp / "flagd-flags.json",
        "growthbook": tmp / "growthbook-features.json",
    }
    files["unleash"].write_text(json.dumps(unleash, indent=2))
    files["flagd"].write_text(json.dumps(flagd, indent=2))
    files["growthbook"].write_text(json.dumps(growthbook, indent=2))
    return files


Decider = Callable[[str], bool]  # key -> inside the rollout?

# The names of the decision rows the targets refer to.
KEY = "resolve_mode(key=)"
PAYLOAD = "resolve_mode(payload), key path"
KEY_DEFAULT = "resolve_mode(key=), metrics on"
OFF_RULE_DEFAULT = "evaluate(key=), rule mode off, metrics on"
GROWTHBOOK = "set_attributes + is_on"


def unleash_client(files: dict[str, Path], tmp: Path, stack: contextlib.ExitStack) -> Any:
    """An UnleashClient bootstrapped from the local file, with no network at all.

    ``FileCache.bootstrap_from_file`` seeds the cache; ``initialize_client(fetch_toggles=False)``
    uses the offline connector (it only re-reads that cache, here once an hour); registration and
    metrics are disabled, and the URL is a closed local port in case anything tried anyway.
    """
    from UnleashClient import UnleashClient
    from UnleashClient.cache import FileCache

    cache = FileCache("policy-engine-bench", directory=str(tmp / "unleash-cache"))
    cache.bootstrap_from_file(files["unleash"])
    client = UnleashClient(
        url="http://127.0.0.1:9",
        app_name="policy-engine-bench",
        cache=cache,
        disable_metrics=True,
        disable_registration=True,
        refresh_interval=3600,
    )
    client.initialize_client(fetch_toggles=False)
    stack.callback(client.destroy)
    return client


def flagd_client(files: dict[str, Path], stack: contextlib.ExitStack) -> Any:
    """An OpenFeature client over the flagd in-process provider reading the local flag file.

    ``ResolverType.FILE`` with ``offline_flag_source_path``: flagd's own evaluator (JSON Logic
    with the ``fractional`` operator) runs in this process; no flagd daemon, no gRPC.
    """
    from openfeature import api
    from openfeature.contrib.provider.flagd import FlagdProvider
    from openfeature.contrib.provider.flagd.config import ResolverType
    from openfeature.evaluation_context import EvaluationContext

    provider = FlagdProvider(
        resolver_type=ResolverType.FILE, offline_flag_source_path=str(files["flagd"])
    )
    api.set_provider_and_wait(provider)  # set_provider alone initialises in the background
    stack.callback(_stop_flagd, api)
    client = api.get_client("policy-engine-bench")
    details = client.get_string_details(FLAG, "unset", EvaluationContext(targeting_key="probe"))
    if details.value not in ("strict", "warn"):
        raise SystemExit(f"flagd file provider not ready: {details}")
    return client


def _stop_flagd(api: Any) -> None:
    """Shut OpenFeature down and wait for flagd's file watcher, which reads the file once more."""
    api.shutdown()
    for thread in threading.enumerate():
        if thread.name == "FlagdFileWatcherWorkerThread":
            thread.join(timeout=5)


def decision_cases(
    inputs: Inputs, files: dict[str, Path], tmp: Path, stack: contextlib.ExitStack
) -> tuple[list[Case], dict[str, float]]:
    """The decision cases and each tool's share of keys inside the rollout (in %)."""
    from growthbook import GrowthBook
    from openfeature.evaluation_context import EvaluationContext
    from prometheus_client import CollectorRegistry

    from policy_engine import Mode, PolicyEngine
    from policy_engine.core.route import MAX_CACHED_BUCKETS

    def policy_engine(metrics: bool, policies: Path = files["policies"]) -> PolicyEngine:
        # The default engine (metrics on) counts into a registry of its own, not the global one.
        registry = CollectorRegistry() if metrics else None
        eng = PolicyEngine(
            policies=policies, registry=ROOT / "schemas", metrics=metrics, metrics_registry=registry
        )
        stack.callback(eng.close)
        return eng

    def filled(eng: PolicyEngine) -> PolicyEngine:
        # For unique keys, fill the engine's per-route bucket cache with other keys first, so
        # that every measured key misses it and is hashed (the cache only keeps the first keys).
        for i in range(2 * MAX_CACHED_BUCKETS):
            eng.resolve_mode(TRADE, key=f"fill-{i}")
        return eng

    ours = policy_engine(False)
    ours_default = policy_engine(True)
    ours_off_rule = policy_engine(True, files["policies_off"])
    # The share check gets an engine of its own: its 10 000 keys would otherwise fill the
    # measured engine's bucket cache and turn the "repeating keys" runs into cache misses.
    ours_share = policy_engine(False)
    ours_cold = filled(policy_engine(False))
    ours_default_cold = filled(policy_engine(True))
    if ours_off_rule.evaluate(TRADE, inputs.valid_trade).mode is not Mode.OFF:
        raise SystemExit("the mode-off policy does not give mode off")

    unleash = unleash_client(files, tmp, stack)
    of_client = flagd_client(files, stack)
    features = json.loads(files["growthbook"].read_text())
    growthbook = GrowthBook(features=features)
    stack.callback(growthbook.destroy)
    strict = Mode.STRICT

    def growthbook_on(key: str) -> bool:
        growthbook.set_attributes({"id": key})
        return growthbook.is_on(FLAG)

    # -- what each tool answers for one key, for the share check
    deciders: dict[str, Decider] = {
        "policy-engine resolve_mode(key=)": (
            lambda k: ours_share.resolve_mode(TRADE, key=k) is strict
        ),
        "policy-engine resolve_mode(payload)": (
            lambda k: ours_share.resolve_mode(TRADE, {"symbol": k}) is strict
        ),
        "UnleashClient is_enabled": lambda k: bool(unleash.is_enabled(FLAG, {"userId": k})),
        "OpenFeature + flagd in-process": lambda k: (
            of_client.get_string_value(FLAG, "warn", EvaluationContext(targeting_key=k)) == "strict"
        ),
        "GrowthBook is_on": growthbook_on,
        "GrowthBook, new instance per key": lambda k: GrowthBook(
            attributes={"id": k}, features=features
        ).is_on(FLAG),
    }
    shares: dict[str, float] = {}
    keys = [f"share-{i}" for i in range(SHARE_KEYS)]
    for name, decide in deciders.items():
        shares[name] = 100 * sum(decide(k) for k in keys) / len(keys)
        if abs(shares[name] - ROLLOUT_PERCENT) > SHARE_TOLERANCE:
            raise SystemExit(
                f"{name}: {shares[name]:.2f} % of keys in the rollout, "
                f"expected {ROLLOUT_PERCENT} +- {SHARE_TOLERANCE}: not a percentage split"
            )
    for one, other in (
        ("policy-engine resolve_mode(key=)", "policy-engine resolve_mode(payload)"),
        ("GrowthBook is_on", "GrowthBook, new instance per key"),
    ):
        differ = [k for k in keys[:2000] if deciders[one](k) != deciders[other](k)]
        if differ:
            raise SystemExit(f"{one} and {other} disagree on {differ[:3]}")

    # -- the measured bodies: the loop a caller would write, the method bound once
    def pe_key(eng: PolicyEngine) -> Callable[[Sequence[Any]], object]:
        def body(args: Sequence[Any]) -> None:
            resolve = eng.resolve_mode
            for key in args:
                resolve(TRADE, key=key)

        return body

    def pe_payload(eng: PolicyEngine) -> Callable[[Sequence[Any]], object]:
        def body(args: Sequence[Any]) -> None:
            resolve = eng.resolve_mode
            for payload in args:
                resolve(TRADE, payload)

        return body

    def pe_evaluate_off(args: Sequence[Any]) -> None:
        evaluate, payload = ours_off_rule.evaluate, inputs.valid_trade
        for key in args:
            evaluate(TRADE, payload, key=key)

    def unleash_body(args: Sequence[Any]) -> None:
        is_enabled = unleash.is_enabled
        for key in args:
            is_enabled(FLAG, {"userId": key})

    def flagd_body(args: Sequence[Any]) -> None:
        get = of_client.get_string_value
        for key in args:
            get(FLAG, "warn", EvaluationContext(targeting_key=key))

    def growthbook_body(args: Sequence[Any]) -> None:
        set_attributes, is_on = growthbook.set_attributes, growthbook.is_on
        for key in args:
            set_attributes({"id": key})
            is_on(FLAG)

    def growthbook_new_body(args: Sequence[Any]) -> None:
        for key in args:
            GrowthBook(attributes={"id": key}, features=features).is_on(FLAG)

    repeating = "repeating keys"
    unique = "unique keys"
    unique_keys = [f"order-{i:08d}" for i in range(UNIQUE_POOL)]
    base = inputs.valid_trade
    unique_payloads = [{**base, "symbol": k} for k in unique_keys]
    default = "default engine"
    cases: list[Case] = []
    for group, key_pool, payload_pool, eng, eng_default in (
        (repeating, inputs.symbols, inputs.trades, ours, ours_default),
        (unique, unique_keys, unique_payloads, ours_cold, ours_default_cold),
    ):
        cases += [
            Case(KEY, pe_key(eng), key_pool, tool="policy-engine", group=group, ours=True),
            Case(
                PAYLOAD, pe_payload(eng), payload_pool, tool="policy-engine", group=group, ours=True
            ),
        ]
        cases += [
            Case(
                name, run_ours, key_pool, tool="policy-engine", group=group, ours=True, info=default
            )
            for name, run_ours in (
                (KEY_DEFAULT, pe_key(eng_default)),
                (OFF_RULE_DEFAULT, pe_evaluate_off),
            )
        ]
        cases += [
            Case(name, run_peer, key_pool, tool=tool, group=group)
            for name, run_peer, tool in (
                ("is_enabled, flexibleRollout", unleash_body, "UnleashClient"),
                ("get_string_value, fractional", flagd_body, "OpenFeature+flagd"),
                (GROWTHBOOK, growthbook_body, "GrowthBook"),
            )
        ]
        if group == repeating:
            cases.append(
                Case(
                    "new instance per key + is_on",
                    growthbook_new_body,
                    key_pool,
                    tool="GrowthBook",
                    group=group,
                    info="its per-request pattern",
                )
            )
    return cases, shares


# ---------------------------------------------------------------------------------------------
# 2. Validation
# ---------------------------------------------------------------------------------------------


def validation_cases(inputs: Inputs, stack: contextlib.ExitStack) -> list[Case]:
    """evaluate against jsonschema (compiled), fastjsonschema, jsonschema-rs and the old way.

    A valid payload is checked with each library's yes/no call (``is_valid``; fastjsonschema's
    compiled function, which returns the data); an invalid one with its error report
    (``list(iter_errors(...))``; fastjsonschema stops at the first error and raises it), since
    ``evaluate`` reports the violations. The old approach is as the old pipeline did it:
    ``Draft7Validator(schema)`` built per payload, ``list(iter_errors(payload))``, no formats.
    """
    import fastjsonschema
    import jsonschema
    import jsonschema_rs
    from prometheus_client import CollectorRegistry

    from policy_engine import PolicyEngine

    ours = PolicyEngine(policies=ROOT / "policies", registry=ROOT / "schemas", metrics=False)
    ours_metrics = PolicyEngine(
        policies=ROOT / "policies", registry=ROOT / "schemas", metrics_registry=CollectorRegistry()
    )
    stack.callback(ours.close)
    stack.callback(ours_metrics.close)

    schemas = {
        TRADE: json.loads((ROOT / "schemas" / TRADE / "v2.json").read_text()),
        OHLCV: json.loads((ROOT / "schemas" / OHLCV / "v1.json").read_text()),
    }
    payloads = [
        ("valid trade", TRADE, inputs.valid_trade, True),
        ("invalid trade", TRADE, inputs.invalid_trade, False),
        (f"OHLCV batch, {OHLCV_BARS} bars", OHLCV, inputs.ohlcv, True),
    ]
    cases: list[Case] = []
    for group, schema_name, payload, valid in payloads:
        schema = schemas[schema_name]
        cls = jsonschema.validators.validator_for(schema)
        compiled = cls(schema, format_checker=cls.FORMAT_CHECKER)
        fast = fastjsonschema.compile(schema)
        rs = jsonschema_rs.validator_for(schema, validate_formats=True)

        def evaluate(eng: PolicyEngine, name: str = schema_name) -> Callable[[Sequence[Any]], None]:
            def body(args: Sequence[Any]) -> None:
                run = eng.evaluate
                for p in args:
                    run(name, p)

            return body

        def fast_body(args: Sequence[Any], fast: Callable[[Any], Any] = fast) -> None:
            for p in args:
                # try/except, not contextlib.suppress: a context manager per call would
                # charge fastjsonschema for more than it does.
                try:  # noqa: SIM105
                    fast(p)
                except fastjsonschema.JsonSchemaValueException:
                    pass

        def old_body(args: Sequence[Any], schema: dict[str, Any] = schema) -> None:
            for p in args:
                list(jsonschema.Draft7Validator(schema).iter_errors(p))

        if valid:

            def compiled_body(args: Sequence[Any], v: Any = compiled) -> None:
                is_valid = v.is_valid
                for p in args:
                    is_valid(p)

            def rs_body(args: Sequence[Any], v: Any = rs) -> None:
                is_valid = v.is_valid
                for p in args:
                    is_valid(p)

            check, rs_check = "is_valid", "is_valid"
        else:

            def compiled_body(args: Sequence[Any], v: Any = compiled) -> None:
                iter_errors = v.iter_errors
                for p in args:
                    list(iter_errors(p))

            def rs_body(args: Sequence[Any], v: Any = rs) -> None:
                iter_errors = v.iter_errors
                for p in args:
                    list(iter_errors(p))

            check, rs_check = "list(iter_errors)", "list(iter_errors)"

        # Every tool must agree on the verdict, or the comparison is not like for like.
        verdicts = {
            "evaluate": ours.evaluate(schema_name, payload).valid,
            "jsonschema": compiled.is_valid(payload),
            "jsonschema-rs": rs.is_valid(payload),
            "fastjsonschema": _fast_valid(fast, payload, fastjsonschema.JsonSchemaValueException),
        }
        if any(v is not valid for v in verdicts.values()):
            raise SystemExit(f"{group}: the validators disagree: {verdicts}")

        cls_name = cls.__name__
        cases += [
            Case(
                "evaluate", evaluate(ours), [payload], tool="policy-engine", group=group, ours=True
            ),
            Case(
                "evaluate, metrics on",
                evaluate(ours_metrics),
                [payload],
                tool="policy-engine",
                group=group,
                ours=True,
                info="default engine",
            ),
        ]
        cases += [
            Case(name, run_peer, [payload], tool=tool, group=group)
            for name, run_peer, tool in (
                (f"{cls_name} reused, {check}", compiled_body, "jsonschema"),
                ("compiled once", fast_body, "fastjsonschema"),
                (f"validator_for, {rs_check}", rs_body, "jsonschema-rs"),
                ("Draft7Validator per payload", old_body, "old approach"),
            )
        ]
    return cases


def _fast_valid(fast: Callable[[Any], Any], payload: Any, error: type[Exception]) -> bool:
    try:
        fast(payload)
    except error:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# 3. End to end: policy-engine consume
# ---------------------------------------------------------------------------------------------


@dataclass
class ConsumeRun:
    """Throughput samples of one consume-loop configuration."""

    name: str
    source: str  # "jsonl" or "redis"
    enforcement: str  # "on" or "off"
    messages: int = 0
    rates: list[float] = field(default_factory=list)  # messages per second, one per round

    def to_dict(self) -> dict[str, Any]:
        """The configuration's figures as JSON."""
        return {
            "name": self.name,
            "source": self.source,
            "enforcement": self.enforcement,
            "messages": self.messages,
            "batch_size": CONSUME_BATCH,
            "median_msgs_per_s": round(statistics.median(self.rates), 1),
            "min_msgs_per_s": round(min(self.rates), 1),
            "max_msgs_per_s": round(max(self.rates), 1),
            "samples_msgs_per_s": [round(r, 1) for r in self.rates],
        }


def consume_missing() -> str | None:
    """Why the consume loop cannot be measured, or None if it can.

    Section 3 reuses ``benchmarks/bench_consume.py`` (the consume loop's own benchmark): it
    needs that file and the ``policy-engine consume`` command.
    """
    probe = subprocess.run(
        [sys.executable, "-m", "policy_engine", "consume", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return "consume command missing"
    if not (ROOT / "benchmarks" / "bench_consume.py").is_file():
        return "benchmarks/bench_consume.py missing"
    return None


def redis_missing(url: str) -> str | None:
    """Why Redis at ``url`` cannot be used, or None if it answers."""
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        client.ping()
        client.close()
    except Exception as exc:
        return f"no Redis at {url}: {exc}"
    return None


def consume_section(
    messages: int, repeats: int, redis_url: str
) -> tuple[list[ConsumeRun], dict[str, str]]:
    """Consume-loop throughput, JSONL and Redis, enforcement on and off, interleaved rounds.

    The rounds themselves are ``bench_consume.py``'s (``JsonlRound`` and ``RedisRound``: the
    ``ConsumeLoop`` that ``policy-engine consume`` runs, in this process, the example feed's
    envelopes repeated, rejects to a DLQ; "off" is ``POLICY_FORCE_MODE=off``), at the command's
    default batch size of 100, timed by ``common.measure`` like every other section; this
    function only picks them and keeps every sample.
    """
    reason = consume_missing()
    if reason is not None:
        return [], {"jsonl": reason, "redis": reason}
    try:
        import bench_consume
    except Exception as exc:  # ImportError, or the loop API it imports is not there yet
        return [], {"jsonl": f"consume command missing ({exc})", "redis": str(exc)}
    needed = ("feed_lines", "make_engine", "JsonlRound", "RedisRound")
    lacking = [name for name in needed if not hasattr(bench_consume, name)]
    if lacking:
        why = f"benchmarks/bench_consume.py has no {', '.join(lacking)}"
        return [], {"jsonl": why, "redis": why}

    unavailable: dict[str, str] = {}
    lines = bench_consume.feed_lines(messages)
    engines = {"on": bench_consume.make_engine(True), "off": bench_consume.make_engine(False)}
    tmp = Path(tempfile.mkdtemp(prefix="policy-engine-consume-"))
    client: Any = None
    try:
        feed = tmp / "feed.jsonl"
        feed.write_bytes(b"".join(line + b"\n" for line in lines))
        runs: list[tuple[ConsumeRun, TimedCase]] = []
        for enforcement in ("on", "off"):
            run = ConsumeRun(f"JSONL -> JSONL, enforcement {enforcement}", "jsonl", enforcement)
            jsonl = bench_consume.JsonlRound(engines[enforcement], feed, len(lines), CONSUME_BATCH)
            runs.append((run, jsonl.case(run.name)))
        redis_reason = redis_missing(redis_url)
        if redis_reason is None:
            import redis

            client = redis.Redis.from_url(redis_url)
            for enforcement in ("on", "off"):
                run = ConsumeRun(f"Redis -> Redis, enforcement {enforcement}", "redis", enforcement)
                stream = bench_consume.RedisRound(
                    engines[enforcement], client, lines, CONSUME_BATCH, redis_url.split("?", 1)[0]
                )
                runs.append((run, stream.case(run.name)))
        else:
            unavailable["redis"] = redis_reason
        measure([case for _, case in runs], repeats)  # a warm-up round each first
        for run, case in runs:
            run.messages = len(lines)
            run.rates = [1e9 / ns for ns in case.samples_ns]  # ns per message -> messages/s
    finally:
        for eng in engines.values():
            eng.close()
        if client is not None:
            client.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return [run for run, _ in runs], unavailable


# ---------------------------------------------------------------------------------------------
# Report: table, targets, JSON, chart
# ---------------------------------------------------------------------------------------------


def reference(cases: list[Case], group: str, name: str) -> Case:
    """Our case ``name`` in ``group``: what the peers of that group are divided by."""
    return next(c for c in cases if c.group == group and c.ours and c.name == name)


def table_rows(cases: list[Case], ref_name: str) -> list[list[str]]:
    """Rows: group, tool, case, median, min, max, ratio to our reference case in the group."""
    rows = []
    for case in cases:
        ref = reference(cases, case.group, ref_name)
        ratio = case.median / ref.median
        label = case.name + (f" ({case.info})" if case.info else "")
        rows.append(
            [
                case.group,
                case.tool,
                label,
                fmt_ns(case.median),
                fmt_ns(case.minimum),
                fmt_ns(case.maximum),
                f"{ratio:,.2f}x",
            ]
        )
    return rows


def render(headers: list[str], rows: list[list[str]], markdown: bool) -> str:
    """A plain-text (aligned) or Markdown table."""
    if markdown:
        right = [h in ("median", "min", "max", "ratio", "msgs/s", "messages") for h in headers]
        out = ["| " + " | ".join(headers) + " |"]
        out.append("|" + "|".join("---:" if r else "---" for r in right) + "|")
        out += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(out)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    numeric = [i >= 3 for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(cells, widths, numeric, strict=True)
        )

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def target(
    issue: int, what: str, top: Case, bottom: Case, threshold: float, at_least: bool
) -> dict[str, Any]:
    """One target: the ratio ``top / bottom`` of the medians against ``threshold``, with the
    range of the per-round ratios (the two cases ran in the same rounds)."""
    ratio = top.median / bottom.median
    pairs = paired_ratios(top, bottom)
    return {
        "issue": issue,
        "target": what,
        "value": round(ratio, 2),
        "unit": "x",
        "threshold": f"{'>=' if at_least else '<='} {threshold:g}",
        "holds": ratio >= threshold if at_least else ratio <= threshold,
        "rounds": [round(min(pairs), 2), round(max(pairs), 2)],
    }


def targets(decision: list[Case], validation: list[Case]) -> list[dict[str, Any]]:
    """The targets of issues 11 and 8, each with its measured value and whether it holds.

    Issue 11: the default engine's decision (metrics on) >= 10x faster than GrowthBook's
    ``set_attributes`` + ``is_on``, with repeating and with unique keys (both the rollout's
    ``resolve_mode(key=)`` and ``evaluate`` of a payload whose rule is ``mode: off``, the
    decision that metrics count); ``evaluate`` of the valid trade with metrics on <= 2x raw
    jsonschema-rs. Issue 8: the core (metrics off) >= 10x faster than each flag peer,
    ``evaluate`` <= 2.5x jsonschema-rs and >= 40x faster than the old approach.
    """
    groups = ("repeating keys", "unique keys")
    out: list[dict[str, Any]] = []
    for group in groups:
        growthbook = peer_case(decision, group, "GrowthBook", GROWTHBOOK)
        for name, short in (
            (KEY_DEFAULT, "resolve_mode(key=)"),
            (OFF_RULE_DEFAULT, "evaluate, mode off"),
        ):
            out.append(
                target(
                    11,
                    f"default engine {short} >= 10x faster than GrowthBook is_on ({group})",
                    growthbook,
                    reference(decision, group, name),
                    10,
                    at_least=True,
                )
            )
    evaluate = reference(validation, "valid trade", "evaluate")
    with_metrics = reference(validation, "valid trade", "evaluate, metrics on")
    floor = peer_case(validation, "valid trade", "jsonschema-rs")
    old = peer_case(validation, "valid trade", "old approach")
    out.append(
        target(
            11,
            "evaluate(valid trade), metrics on <= 2x raw jsonschema-rs",
            with_metrics,
            floor,
            2,
            at_least=False,
        )
    )
    for group, (how, ours_name) in itertools.product(groups, (("key=", KEY), ("payload", PAYLOAD))):
        ours = reference(decision, group, ours_name)
        for peer in decision:
            if peer.group != group or peer.ours or peer.info:
                continue
            out.append(
                target(
                    8,
                    f"resolve({how}) >= 10x faster than {peer.tool} ({group})",
                    peer,
                    ours,
                    10,
                    at_least=True,
                )
            )
    out += [
        target(
            8,
            "evaluate(valid trade) <= 2.5x raw jsonschema-rs",
            evaluate,
            floor,
            2.5,
            at_least=False,
        ),
        target(
            8,
            "evaluate(valid trade) >= 40x faster than the old approach",
            old,
            evaluate,
            40,
            at_least=True,
        ),
    ]
    return out


def peer_case(cases: list[Case], group: str, tool: str, name: str | None = None) -> Case:
    """The case of ``tool`` (named ``name``, if given) in ``group``."""
    return next(c for c in cases if c.group == group and c.tool == tool and name in (None, c.name))


def machine() -> dict[str, Any]:
    """CPU model, cores, load, OS and Python of this run."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "policy-engine build": build(),
    }


def versions(redis_url: str) -> dict[str, str]:
    """The version of every package involved (and of the Redis server, if it answers)."""
    found: dict[str, str] = {}
    for name in VERSIONS:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    with contextlib.suppress(Exception):
        import redis

        client = redis.Redis.from_url(redis_url, socket_connect_timeout=2)
        found["redis-server"] = str(client.info("server")["redis_version"])
        client.close()
    return found


def chart(
    decision: list[Case], validation: list[Case], consume: list[ConsumeRun], paths: list[Path]
) -> None:
    """Three panels (decision, validation, consume), median bars with min-max whiskers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[tuple[str, list[tuple[str, float, float, float, bool]], str]] = []
    for title, cases in (
        (f"1. Per-payload decision ({ROLLOUT_PERCENT} % rollout): time per call", decision),
        ("2. Validation: time per payload", validation),
    ):
        bars = [
            (
                f"{c.group}: {c.tool} {c.name}" + (f" ({c.info})" if c.info else ""),
                c.median,
                min(c.samples_ns),
                max(c.samples_ns),
                c.ours,
            )
            for c in cases
        ]
        panels.append((title, bars, "ns per call (log scale)"))
    if consume:
        bars = [
            (r.name, statistics.median(r.rates), min(r.rates), max(r.rates), r.enforcement == "on")
            for r in consume
        ]
        panels.append(("3. policy-engine consume: throughput", bars, "messages per second"))
    heights = [max(2.0, 0.28 * len(bars) + 1.0) for _, bars, _ in panels]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(12, sum(heights)), gridspec_kw={"height_ratios": heights}
    )
    for ax, (title, bars, xlabel) in zip(axes, panels, strict=True):
        labels = [b[0] for b in bars]
        medians = [b[1] for b in bars]
        low = [b[1] - b[2] for b in bars]
        high = [b[3] - b[1] for b in bars]
        colors = ["#1f6feb" if b[4] else "#9aa4ae" for b in bars]
        y = list(range(len(bars)))[::-1]
        ax.barh(y, medians, xerr=[low, high], color=colors, capsize=2, ecolor="#333333")
        ax.set_yticks(y, labels, fontsize=7)
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_xlabel(xlabel, fontsize=8)
        if "log" in xlabel:
            ax.set_xscale("log")
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(
        "policy-engine vs peers (blue: policy-engine / enforcement on; bars: median; "
        "whiskers: min-max of the rounds)",
        fontsize=9,
    )
    fig.tight_layout()
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def missing_peers() -> list[str]:
    """The distributions of the bench extra that cannot be imported here."""
    missing = []
    for module, dist in PEERS.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(dist)
    return sorted(set(missing))


def main(argv: list[str] | None = None) -> int:
    """Run the three sections, print the tables and targets, write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "benchmarks" / "results",
        help="where compare.json, compare.png and compare.md go (benchmarks/results/)",
    )
    parser.add_argument("--docs", action="store_true", help="also write docs/performance.png")
    parser.add_argument("--repeats", type=int, default=15, help="rounds per micro case (15)")
    parser.add_argument(
        "--round-ms", type=float, default=40.0, help="duration of one round of a case (40 ms)"
    )
    parser.add_argument(
        "--consume-repeats", type=int, default=5, help="rounds of each consume case (5)"
    )
    parser.add_argument(
        "--consume-messages",
        type=int,
        default=20_000,
        help="messages per consume round: the example feed's envelopes, repeated (20 000)",
    )
    parser.add_argument("--skip-consume", action="store_true", help="leave section 3 out")
    parser.add_argument(
        "--redis", default="redis://127.0.0.1:6379/0", help="Redis for section 3 (db 0 on :6379)"
    )
    args = parser.parse_args(argv)

    missing = missing_peers()
    if missing:
        print(
            f"compare.py: missing the bench extra's {', '.join(missing)}.\n"
            f"Install them from the repository root with:  {BENCH_INSTALL}",
            file=sys.stderr,
        )
        return 2

    os.chdir(ROOT)
    logging.getLogger("openfeature").setLevel(logging.ERROR)
    logging.getLogger("UnleashClient").setLevel(logging.ERROR)
    started = dt.datetime.now(dt.UTC)
    host = machine()
    print("policy-engine vs peers: " + ", ".join(f"{k} {v}" for k, v in host.items()))

    from policy_engine import PolicyEngine

    tmp = Path(tempfile.mkdtemp(prefix="policy-engine-compare-"))
    try:
        with contextlib.ExitStack() as stack:
            picker = PolicyEngine(
                policies=ROOT / "policies", registry=ROOT / "schemas", metrics=False
            )
            stack.callback(picker.close)
            inputs = load_inputs(picker)
            files = write_flag_files(tmp)

            print(f"\nmeasuring 1/3 decision ({args.repeats} rounds)...", flush=True)
            decision, shares = decision_cases(inputs, files, tmp, stack)
            measure(decision, args.repeats, args.round_ms)

            print(f"measuring 2/3 validation ({args.repeats} rounds)...", flush=True)
            validation = validation_cases(inputs, stack)
            measure(validation, args.repeats, args.round_ms)

        consume: list[ConsumeRun] = []
        unavailable: dict[str, str] = {}
        if args.skip_consume:
            unavailable = {"jsonl": "skipped (--skip-consume)", "redis": "skipped (--skip-consume)"}
        else:
            print(
                f"measuring 3/3 consume ({args.consume_repeats} rounds, "
                f"{args.consume_messages:,} messages each)...",
                flush=True,
            )
            consume, unavailable = consume_section(
                args.consume_messages, args.consume_repeats, args.redis
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    report, markdown = report_text(decision, shares, validation, inputs, consume, unavailable)
    print("\n" + report)
    goals = targets(decision, validation)

    results = {
        "generated": started.isoformat(timespec="seconds"),
        "command": " ".join(["python", "benchmarks/compare.py", *(argv or sys.argv[1:])]),
        "machine": {**host, "load_average_end": [round(x, 2) for x in os.getloadavg()]},
        "versions": versions(args.redis),
        "settings": {
            "repeats": args.repeats,
            "round_ms": args.round_ms,
            "consume_repeats": args.consume_repeats,
            "consume_messages": args.consume_messages,
            "consume_batch_size": CONSUME_BATCH,
            "rollout_percent": ROLLOUT_PERCENT,
        },
        "decision": {
            "shares_percent": {k: round(v, 2) for k, v in shares.items()},
            "cases": [c.to_dict() for c in decision],
        },
        "validation": {
            "payload_bytes": {
                "valid trade": len(json.dumps(inputs.valid_trade)),
                "invalid trade": len(json.dumps(inputs.invalid_trade)),
                f"OHLCV batch, {OHLCV_BARS} bars": len(json.dumps(inputs.ohlcv)),
            },
            "invalid_trade_violations": inputs.invalid_violations,
            "modes": inputs.modes,
            "cases": [c.to_dict() for c in validation],
        },
        "consume": {
            "runs": [r.to_dict() for r in consume],
            "unavailable": unavailable,
        },
        "targets": goals,
    }
    lines = [
        "",
        "targets, ratio of the medians (in brackets the range of the per-round ratios):",
    ]
    width = max(len(goal["target"]) for goal in goals)
    for goal in goals:
        verdict = "holds" if goal["holds"] else "DOES NOT HOLD"
        low, high = goal["rounds"]
        lines.append(
            f"  issue {goal['issue']:>2}: {goal['target']:<{width}} {goal['value']:>7,.2f}x  "
            f"[{low:.2f}-{high:.2f}]  (target {goal['threshold']})  {verdict}"
        )
    print("\n".join(lines))
    markdown += "\n\n" + render(
        ["issue", "target", "measured", "rounds", "threshold", "holds"],
        [
            [
                str(g["issue"]),
                g["target"],
                f"{g['value']:,.2f}x",
                f"{g['rounds'][0]:.2f}-{g['rounds'][1]:.2f}x",
                g["threshold"],
                "yes" if g["holds"] else "**no**",
            ]
            for g in goals
        ],
        markdown=True,
    )

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "compare.md").write_text(markdown + "\n")
    charts = [args.out / "compare.png"]
    if args.docs:
        charts.append(ROOT / "docs" / "performance.png")
    chart(decision, validation, consume, charts)
    written = [args.out / "compare.json", args.out / "compare.md", *charts]
    print(
        "\nwrote "
        + ", ".join(str(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p) for p in written)
    )
    return 0


def report_text(
    decision: list[Case],
    shares: dict[str, float],
    validation: list[Case],
    inputs: Inputs,
    consume: list[ConsumeRun],
    unavailable: dict[str, str],
) -> tuple[str, str]:
    """The three tables as aligned text (printed) and as Markdown (compare.md)."""
    head = ["keys", "tool", "case", "median", "min", "max", "ratio"]
    text: list[str] = []
    md: list[str] = []
    title = (
        f"1. Per-payload decision, {ROLLOUT_PERCENT} % rollout, time per call; ratio = case / "
        "policy-engine resolve_mode(key=) on the same keys (peer / ours)"
    )
    rows = table_rows(decision, "resolve_mode(key=)")
    shares_line = "share of keys in the rollout: " + ", ".join(
        f"{k} {v:.1f} %" for k, v in shares.items()
    )
    text += [title, render(head, rows, False), shares_line, ""]
    md += [f"**{title}**", "", render(head, rows, True), "", shares_line, ""]

    title = (
        "2. Validation, time per payload; ratio = case / policy-engine evaluate of the same "
        "payload (metrics off)"
    )
    head[0] = "payload"
    rows = table_rows(validation, "evaluate")
    sizes = (
        f"payloads: valid trade {len(json.dumps(inputs.valid_trade))} B, invalid trade "
        f"{len(json.dumps(inputs.invalid_trade))} B ({'; '.join(inputs.invalid_violations)}), "
        f"OHLCV batch {len(json.dumps(inputs.ohlcv))} B; modes (example policies, today): "
        + ", ".join(f"{k} {v}" for k, v in inputs.modes.items())
    )
    text += [title, render(head, rows, False), sizes, ""]
    md += [f"**{title}**", "", render(head, rows, True), "", sizes, ""]

    title = (
        f"3. End to end: the consume loop (bench_consume.py's rounds, batch {CONSUME_BATCH}), "
        "messages per second"
    )
    if consume:
        crows = []
        for run in consume:
            twin = next(r for r in consume if r.source == run.source and r.enforcement == "off")
            ratio = statistics.median(run.rates) / statistics.median(twin.rates)
            crows.append(
                [
                    run.name,
                    f"{run.messages:,}",
                    f"{statistics.median(run.rates):,.0f}",
                    f"{min(run.rates):,.0f}",
                    f"{max(run.rates):,.0f}",
                    f"{ratio:.2f}x",
                ]
            )
        chead = ["case", "messages", "msgs/s", "min", "max", "ratio"]
        note = (
            "ratio = median throughput / the same source with enforcement off "
            "(1 - ratio is what enforcement costs)"
        )
        text += [title, render(chead, crows, False), note]
        md += [f"**{title}**", "", render(chead, crows, True), "", note]
    else:
        text.append(title)
        md.append(f"**{title}**")
    for what, why in unavailable.items():
        prefix = "" if why.startswith(("not available", "skipped")) else "not available: "
        line = f"{what}: {prefix}{why}"
        text.append(line)
        md += ["", line]
    return "\n".join(text), "\n".join(md)


if __name__ == "__main__":
    sys.exit(main())
