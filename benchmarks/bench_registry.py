"""The HTTP schema registry: warm-cache throughput, cold start, and evaluate through an outage.

Run: ``python benchmarks/bench_registry.py`` (from the repository root). Serves the example
``schemas/`` from ``policy_engine.testing.FakeSchemaRegistry`` (a real HTTP server on 127.0.0.1) and
prints three sets of figures, with no pass/fail:

1. ``evaluate`` throughput with a warm HTTP cache against the embedded registry, same payload,
   same policies, in interleaved rounds of one run (``common.measure``; target: within 10 %);
2. cold start: the first payload of each of ``--subjects`` subjects, one after the other and
   as concurrent asyncio tasks, against the embedded registry's cold start, each round on a
   fresh engine (the rounds interleaved), and the same subjects once warm;
3. a ``--outage``-second outage (the registry hangs past ``REGISTRY_TIMEOUT``, then refuses
   connections) while payloads of ``--outage-subjects`` warm subjects keep arriving and their
   cache TTL (``--ttl``) runs out: how many payloads took over 5 ms (none should: an expired
   schema is served stale while the registry is asked again in the background, so one that does
   was held up by something else, a collection or the machine's other work), the latency of all
   the others (cache speed), then how fast the engine recovers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from common import (
    ROOT,
    SCHEMA,
    Case,
    fmt_ns,
    header,
    latencies,
    load,
    measure,
    paired_ratios,
    percentile,
    repeat,
    seconds_until,
    trade_event,
)
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


def bench_warm(registry: FakeSchemaRegistry, repeats: int, round_ms: float) -> None:
    """Warm-cache evaluate, HTTP registry against the embedded one."""
    os.chdir(ROOT)
    settings = Settings(registry_timeout=5.0)
    embedded = PolicyEngine(policies="policies", registry="schemas", settings=settings)
    http = PolicyEngine(policies="policies", registry=registry.url, settings=settings)
    valid = trade_event(embedded)
    invalid = {**valid, "price": -1.0}
    for eng in (embedded, http):
        if not eng.evaluate(SCHEMA, valid).valid or eng.evaluate(SCHEMA, invalid).valid:
            raise SystemExit("the example trades are not judged as expected")
    cases = {
        (source, kind): Case(
            f"{source + ':':<10}evaluate {kind}", repeat(eng.evaluate, SCHEMA, payload)
        )
        for kind, payload in (("valid", valid), ("invalid", invalid))
        for source, eng in (("embedded", embedded), ("http", http))
    }
    print(f"1. warm cache: {SCHEMA} (track chosen by the registry), median of {repeats} rounds")
    measure(list(cases.values()), repeats, round_ms)
    print(f"   {'case':<28} {'median':>10} {'min':>10} {'max':>10} {'per s':>12}")
    for case in cases.values():
        print(
            f"   {case.name:<28} {fmt_ns(case.median):>10} {fmt_ns(case.minimum):>10} "
            f"{fmt_ns(case.maximum):>10} {1e9 / case.median:>12,.0f}"
        )
    for kind in ("valid", "invalid"):
        http_case, embedded_case = cases[("http", kind)], cases[("embedded", kind)]
        ratio = http_case.median / embedded_case.median
        pairs = paired_ratios(http_case, embedded_case)
        print(
            f"   http / embedded, {kind + ':':<9} {ratio:5.3f}  (per round "
            f"{min(pairs):.3f}-{max(pairs):.3f}; target within 10 %)"
        )
    embedded.close()
    http.close()


class FreshEngines:
    """A new engine for every round of a cold-start case, closed after it (setup, teardown)."""

    def __init__(self, make: Callable[[], PolicyEngine]) -> None:
        self.make = make
        self.engine: PolicyEngine | None = None

    def setup(self) -> None:
        """A new engine, its caches empty."""
        self.engine = self.make()

    def teardown(self) -> None:
        """Close the round's engine."""
        if self.engine is not None:
            self.engine.close()
            self.engine = None

    def current(self) -> PolicyEngine:
        """The round's engine."""
        if self.engine is None:
            raise RuntimeError("no round is running")
        return self.engine


def bench_cold(registry: FakeSchemaRegistry, subjects: int, repeats: int) -> None:
    """The first payload of each of ``subjects`` subjects: HTTP (sequential, concurrent) and
    embedded, each round on a fresh engine; then the same subjects warm."""
    names = [f"bench.Subject{n:03d}" for n in range(subjects)]
    for n, name in enumerate(names):
        registry.register(f"{name}-v2", subject_schema(n))
    payload = {"id": "x", "n": 10_000}
    settings = Settings(registry_timeout=5.0)
    print(
        f"\n2. cold start: first payload of {subjects} subjects (track chosen by the registry), "
        f"a fresh engine per round, median of {repeats} rounds"
    )

    registry.reset_requests()
    with PolicyEngine(policies=[], registry=registry.url, settings=settings) as eng:
        if not all(eng.evaluate(name, payload).valid for name in names):
            raise SystemExit("a synthetic subject rejects its payload")
    requests = registry.count("/versions/")

    with tempfile.TemporaryDirectory() as tmp:
        for n, name in enumerate(names):
            (Path(tmp) / name).mkdir()
            (Path(tmp) / name / "v2.json").write_text(json.dumps(subject_schema(n)))
        http = FreshEngines(
            lambda: PolicyEngine(policies=[], registry=registry.url, settings=settings)
        )
        concurrent = FreshEngines(
            lambda: PolicyEngine(policies=[], registry=registry.url, settings=settings)
        )
        embedded = FreshEngines(lambda: PolicyEngine(policies=[], registry=tmp, settings=settings))

        def all_at_once(items: Sequence[Any]) -> None:
            eng = concurrent.current()

            async def gather() -> None:
                await asyncio.gather(*(eng.aevaluate(name, payload) for name in items))

            asyncio.run(gather())

        with PolicyEngine(policies=[], registry=registry.url, settings=settings) as warm_engine:
            cases = [
                Case(
                    "http, one after the other",
                    each_subject(http.current, payload),
                    names,
                    fixed_calls=subjects,
                    setup=http.setup,
                    teardown=http.teardown,
                ),
                Case(
                    f"http, {subjects} asyncio tasks",
                    all_at_once,
                    names,
                    fixed_calls=subjects,
                    setup=concurrent.setup,
                    teardown=concurrent.teardown,
                ),
                Case(
                    "embedded, one after other",
                    each_subject(embedded.current, payload),
                    names,
                    fixed_calls=subjects,
                    setup=embedded.setup,
                    teardown=embedded.teardown,
                ),
                Case("http, then warm", each_subject(lambda: warm_engine, payload), names),
            ]
            measure(cases, repeats)

    for case in cases:
        total = case.median * subjects
        print(
            f"   {case.name + ':':<28} {total / 1e6:8.2f} ms for {subjects} "
            f"({fmt_ns(case.median)} per subject, {fmt_ns(case.minimum)}-"
            f"{fmt_ns(case.maximum)})"
        )
    print(f"   registry requests of one cold pass: {requests}")


def each_subject(
    engine: Callable[[], PolicyEngine], payload: dict[str, Any]
) -> Callable[[Sequence[Any]], None]:
    """A body evaluating ``payload`` once for each subject of the round, on ``engine()``
    (the round's fresh engine for a cold start)."""

    def body(items: Sequence[Any]) -> None:
        evaluate = engine().evaluate
        for name in items:
            evaluate(name, payload)

    return body


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
            # Warm every subject; a first fetch may time out on a busy machine: try again.
            def warm(eng: PolicyEngine = eng) -> bool:
                return all(eng.evaluate(name, payload).valid is True for name in names)

            if seconds_until(warm, timeout=30) is None:
                raise SystemExit(f"the {subjects} subjects are not all valid after 30 s")
            registry.reset_requests()
            if kind == "hangs":
                registry.inject(Fault.slow(3600))
            else:
                registry.stop()
            recorded = latencies(lambda name: eng.evaluate(name, payload), names, seconds)
            asked = dict(observer.requests)
            if not all(eng.evaluate(n, payload).valid for n in names):
                raise SystemExit("a payload was not validated with the cached schema")
            registry.heal()
            registry.start()
            # The warm-up's requests were answered too: wait for one more than before.
            answered_before = observer.requests["ok"]

            def answered(
                eng: PolicyEngine = eng,
                observer: RecordingRegistryObserver = observer,
                before: int = answered_before,
            ) -> bool:
                for name in names:
                    eng.evaluate(name, payload)
                return observer.requests["ok"] > before

            recovered = seconds_until(answered, timeout=120)

        ordered = sorted(recorded)
        waited = [v for v in ordered if v > 5_000_000]  # slower than a registry round trip
        rest = ordered[: len(ordered) - len(waited)]
        total = len(ordered)
        print(f"   registry {kind}: {total:,} payloads, all validated with the cached schemas")
        print(
            f"     took over 5 ms: {len(waited)} payload(s)"
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
        back = "not within 120 s" if recovered is None else f"after {recovered:.2f} s"
        print(f"     registry back: first successful request {back}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="rounds (the median is shown)")
    parser.add_argument(
        "--round-ms", type=float, default=20.0, help="duration of one warm round of a case (20 ms)"
    )
    parser.add_argument("--subjects", type=int, default=100, help="subjects for the cold start")
    parser.add_argument("--outage", type=float, default=10.0, help="seconds of outage per kind")
    parser.add_argument("--outage-subjects", type=int, default=10, help="warm subjects")
    parser.add_argument("--timeout", type=float, default=0.5, help="REGISTRY_TIMEOUT, seconds")
    parser.add_argument("--ttl", type=float, default=1.0, help="REGISTRY_CACHE_TTL, seconds")
    args = parser.parse_args()

    print(header("policy-engine HTTP registry benchmark (FakeSchemaRegistry on 127.0.0.1)") + "\n")
    started_load = load()
    with FakeSchemaRegistry() as registry:
        serve_examples(registry)
        bench_warm(registry, args.repeats, args.round_ms)
        bench_cold(registry, args.subjects, args.repeats)
        bench_outage(registry, args.outage_subjects, args.outage, args.timeout, args.ttl)
    print(f"\nmachine: {started_load} at the start, {load()} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
