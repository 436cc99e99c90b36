"""The HTTP schema registry: warm-cache throughput, cold start, and evaluate through an outage.

Run: ``python benchmarks/bench_registry.py`` (from the repository root). Serves the example
``schemas/`` from ``policy_engine.testing.FakeSchemaRegistry`` (a real HTTP server on 127.0.0.1) and
prints three sets of figures, with no pass/fail:

1. ``evaluate`` throughput with a warm HTTP cache against the embedded registry, same payload,
   same policies, measured in alternating rounds of one run (target: within 10 %);
2. cold start: the first payload of each of ``--subjects`` subjects, one after the other and
   as concurrent asyncio tasks, against the embedded registry's cold start;
3. a ``--outage``-second outage (the registry hangs past ``REGISTRY_TIMEOUT``, then refuses
   connections) while payloads of ``--outage-subjects`` warm subjects keep arriving and their
   cache TTL (``--ttl``) runs out: the payloads that waited for the registry (at most one per
   subject per backoff period, each for at most ``REGISTRY_TIMEOUT``) and the latency of all the
   others (cache speed), then how fast the engine recovers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import ROOT, SCHEMA, measure, trade_event
from policy_engine import PolicyEngine, Settings
from policy_engine.testing import FakeSchemaRegistry, Fault, RecordingRegistryObserver


def serve_examples(registry: FakeSchemaRegistry) -> None:
    """Register every ``schemas/<schema>/<track>.json`` as subject ``<schema>-<track>``."""
    for path in sorted((ROOT / "schemas").glob("*/*.json")):
        registry.register(f"{path.parent.name}-{path.stem}", json.loads(path.read_text()))


def subject_schema(n: int) -> dict[str, Any]:
    """The schema of the n-th synthetic subject (each one different)."""
    return {
        "type": "object",
        "required": ["id", "n"],
        "properties": {"id": {"type": "string"}, "n": {"type": "integer", "minimum": n}},
    }


def percentile(sorted_values: list[int], q: float) -> float:
    """The q-quantile (0..1) of already sorted values, nearest rank."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return float(sorted_values[index])


def bench_warm(registry: FakeSchemaRegistry, calls: int, repeats: int) -> None:
    """Warm-cache evaluate, HTTP registry against the embedded one."""
    os.chdir(ROOT)
    settings = Settings(registry_timeout=5.0)
    embedded = PolicyEngine(policies="policies", registry="schemas", settings=settings)
    http = PolicyEngine(policies="policies", registry=registry.url, settings=settings)
    valid = trade_event(embedded)
    invalid = {**valid, "price": -1.0}
    for eng in (embedded, http):
        assert eng.evaluate(SCHEMA, valid).valid is True
        assert eng.evaluate(SCHEMA, invalid).valid is False
    cases: list[tuple[str, Callable[[], object], int]] = [
        ("embedded: evaluate valid", lambda: embedded.evaluate(SCHEMA, valid), calls),
        ("http:     evaluate valid", lambda: http.evaluate(SCHEMA, valid), calls),
        ("embedded: evaluate invalid", lambda: embedded.evaluate(SCHEMA, invalid), calls),
        ("http:     evaluate invalid", lambda: http.evaluate(SCHEMA, invalid), calls),
    ]
    print(f"1. warm cache: {SCHEMA} (track chosen by the registry), median of {repeats} rounds")
    print(f"   {'case':<28} {'median ns':>10} {'min':>10} {'max':>10} {'per s':>12}")
    medians: dict[str, float] = {}
    for name, values in measure(cases, repeats).items():
        medians[name] = statistics.median(values)
        print(
            f"   {name:<28} {medians[name]:>10,.0f} {min(values):>10,.0f} {max(values):>10,.0f} "
            f"{1e9 / medians[name]:>12,.0f}"
        )
    for kind in ("valid", "invalid"):
        ratio = medians[f"http:     evaluate {kind}"] / medians[f"embedded: evaluate {kind}"]
        print(f"   http / embedded, {kind + ':':<9} {ratio:5.3f}  (target within 10 %)")
    embedded.close()
    http.close()


def bench_cold(registry: FakeSchemaRegistry, subjects: int) -> None:
    """The first payload of each of ``subjects`` subjects: HTTP (sequential, concurrent) and
    embedded."""
    names = [f"bench.Subject{n:03d}" for n in range(subjects)]
    for n, name in enumerate(names):
        registry.register(f"{name}-v2", subject_schema(n))
    payload = {"id": "x", "n": 10_000}
    settings = Settings(registry_timeout=5.0)
    print(f"\n2. cold start: first payload of {subjects} subjects (track chosen by the registry)")

    registry.reset_requests()
    with PolicyEngine(policies=[], registry=registry.url, settings=settings) as eng:
        started = time.perf_counter()
        for name in names:
            assert eng.evaluate(name, payload).valid is True
        sequential = time.perf_counter() - started
        started = time.perf_counter()
        for name in names:
            eng.evaluate(name, payload)
        warm = time.perf_counter() - started
    requests = registry.count("/versions/")

    registry.reset_requests()
    with PolicyEngine(policies=[], registry=registry.url, settings=settings) as eng:

        async def all_at_once() -> None:
            decisions = await asyncio.gather(*(eng.aevaluate(n, payload) for n in names))
            assert all(d.valid for d in decisions)

        started = time.perf_counter()
        asyncio.run(all_at_once())
        concurrent = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as tmp:
        for n, name in enumerate(names):
            (Path(tmp) / name).mkdir()
            (Path(tmp) / name / "v2.json").write_text(json.dumps(subject_schema(n)))
        with PolicyEngine(policies=[], registry=tmp, settings=settings) as eng:
            started = time.perf_counter()
            for name in names:
                eng.evaluate(name, payload)
            embedded = time.perf_counter() - started

    print(
        f"   http, one after the other:  {sequential * 1000:8.1f} ms  "
        f"({sequential / subjects * 1000:.2f} ms per subject, {requests} registry requests)"
    )
    print(f"   http, {subjects} asyncio tasks:     {concurrent * 1000:8.1f} ms")
    print(f"   embedded, one after other:  {embedded * 1000:8.1f} ms")
    print(f"   then warm, all {subjects}:          {warm * 1000:8.3f} ms")


def run_outage(
    eng: PolicyEngine, names: list[str], payload: dict[str, Any], seconds: float
) -> array[int]:
    """Evaluate round-robin for ``seconds``; every call's latency in ns."""
    latencies: array[int] = array("q")
    clock = time.perf_counter_ns
    deadline = clock() + int(seconds * 1e9)
    i = 0
    count = len(names)
    while True:
        name = names[i % count]
        i += 1
        start = clock()
        eng.evaluate(name, payload)
        end = clock()
        latencies.append(end - start)
        if end > deadline:
            return latencies


def bench_outage(
    registry: FakeSchemaRegistry, subjects: int, seconds: float, timeout: float, ttl: float
) -> None:
    """Evaluate through an outage: first a hung registry, then a refused connection."""
    names = [f"bench.Subject{n:03d}" for n in range(subjects)]
    payload = {"id": "x", "n": 10_000}
    print(
        f"\n3. outage: {seconds:g} s per kind, {subjects} warm subjects, "
        f"REGISTRY_CACHE_TTL={ttl:g}, REGISTRY_TIMEOUT={timeout:g}"
    )
    for kind in ("hangs", "refuses"):
        observer = RecordingRegistryObserver()
        settings = Settings(registry_timeout=timeout, registry_cache_ttl=ttl)
        with PolicyEngine(
            policies=[], registry=registry.url, settings=settings, hooks=[observer]
        ) as eng:
            for name in names:
                assert eng.evaluate(name, payload).valid is True
            registry.reset_requests()
            if kind == "hangs":
                registry.inject(Fault.slow(3600))
            else:
                registry.stop()
            latencies = run_outage(eng, names, payload, seconds)
            asked = dict(observer.requests)
            assert all(eng.evaluate(n, payload).valid for n in names)  # still validating
            registry.heal()
            registry.start()
            started = time.perf_counter()
            while observer.requests["ok"] == 0 and time.perf_counter() - started < 120:
                for name in names:
                    eng.evaluate(name, payload)
            recovered = time.perf_counter() - started

        ordered = sorted(latencies)
        waited = [v for v in ordered if v > 5_000_000]  # more than 5 ms: a registry round trip
        rest = ordered[: len(ordered) - len(waited)]
        total = len(ordered)
        print(f"   registry {kind}: {total:,} payloads, all validated with the cached schemas")
        print(
            f"     waited for the registry: {len(waited)} payload(s)"
            + (
                f", {min(waited) / 1e6:.1f}-{max(waited) / 1e6:.1f} ms "
                f"(REGISTRY_TIMEOUT {timeout * 1000:.0f} ms)"
                if waited
                else ""
            )
            + f"; registry requests {asked or '{}'}"
        )
        print(
            f"     all other payloads: p50 {percentile(rest, 0.5) / 1000:.1f} us, "
            f"p99 {percentile(rest, 0.99) / 1000:.1f} us, "
            f"p99.9 {percentile(rest, 0.999) / 1000:.1f} us, max {rest[-1] / 1e6:.2f} ms"
        )
        print(
            f"     all payloads: p99 {percentile(ordered, 0.99) / 1000:.1f} us, "
            f"p99.99 {percentile(ordered, 0.9999) / 1e6:.2f} ms, max {ordered[-1] / 1e6:.1f} ms"
        )
        print(f"     registry back: first successful request after {recovered:.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per round (warm)")
    parser.add_argument("--repeats", type=int, default=15, help="rounds (the median is shown)")
    parser.add_argument("--subjects", type=int, default=100, help="subjects for the cold start")
    parser.add_argument("--outage", type=float, default=10.0, help="seconds of outage per kind")
    parser.add_argument("--outage-subjects", type=int, default=10, help="warm subjects")
    parser.add_argument("--timeout", type=float, default=0.5, help="REGISTRY_TIMEOUT, seconds")
    parser.add_argument("--ttl", type=float, default=1.0, help="REGISTRY_CACHE_TTL, seconds")
    args = parser.parse_args()

    print("policy-engine HTTP registry benchmark (FakeSchemaRegistry on 127.0.0.1)")
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs\n")
    with FakeSchemaRegistry() as registry:
        serve_examples(registry)
        bench_warm(registry, args.calls, args.repeats)
        bench_cold(registry, args.subjects)
        bench_outage(registry, args.outage_subjects, args.outage, args.timeout, args.ttl)
    return 0


if __name__ == "__main__":
    sys.exit(main())
