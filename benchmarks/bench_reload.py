"""Hot-reload figures: change-to-visible latency, load time of big sets, throughput while reloading.

Run: ``python benchmarks/bench_reload.py`` (from the repository root). Prints:

1. From a file change to the first evaluation that sees it, median and p99 over N changes, for
   an in-place write, a write-to-temp + rename, and a Kubernetes ConfigMap ``..data`` symlink
   swap (target: p99 <= 500 ms).
2. The time to load a policy set of 1 000 and 10 000 rules (target: <= 1 s for a cold load of
   10 000), beside PyYAML's C loader alone (``yaml.load`` with ``yaml.CSafeLoader``: no
   validation, no positions) reading the same 10 000 nine-line rules in the same rounds.
3. ``evaluate`` throughput while the policy file changes every 100 ms, against no reloads, in
   the same run (target: >= 90 %).

The loads and the throughput are measured with ``common.measure`` (interleaved rounds); the
latency of a change with ``common.seconds_until``.

Everything runs in a temporary directory; nothing is left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from itertools import count
from pathlib import Path
from typing import Any

import yaml

from common import (
    ROOT,
    SCHEMA,
    Case,
    header,
    load,
    measure,
    paired_ratios,
    percentile,
    repeat,
    seconds_until,
)
from policy_engine import PolicyEngine, load_policy_set
from policy_engine.policy.load import ParseCache

PAYLOAD = {
    "symbol": "AAPL",
    "venue": "XNAS",
    "price": 189.5,
    "size": 100,
    "side": "buy",
    "trade_id": "XNAS-20261125-000000001",
    "ts": "2026-11-25T10:00:00.000Z",
    "producer_id": "md-feed-001",
    "sequence": 1,
}


def policy(version: int) -> str:
    """A small policy whose rule line changes with ``version``, so decisions tell sets apart."""
    return "#\n" * (version % 7) + (
        f"version: 1\nschemas:\n  {SCHEMA}:\n    mode: warn\n    canary: {version % 100}\n"
    )


def configmap_update(root: Path, version: int, text: str) -> None:
    """Update ``root`` as kubelet does: new ..<stamp> dir, ..data_tmp link renamed over ..data."""
    stamp = root / f"..2026_11_25_{version:06d}"
    stamp.mkdir()
    (stamp / "p.yaml").write_text(text)
    old = os.readlink(root / "..data") if (root / "..data").is_symlink() else None
    (root / "..data_tmp").symlink_to(stamp.name)
    os.replace(root / "..data_tmp", root / "..data")
    if not (root / "p.yaml").is_symlink():
        (root / "p.yaml").symlink_to(Path("..data") / "p.yaml")
    if old is not None:
        shutil.rmtree(root / old)


def change_latency(kind: str, changes: int, workdir: Path) -> list[float]:
    """Seconds from each change to the first evaluate() whose decision reflects it."""
    root = workdir / kind
    root.mkdir()
    if kind == "configmap":
        configmap_update(root, 0, policy(0))
    else:
        (root / "p.yaml").write_text(policy(0))
    found: list[float] = []
    with PolicyEngine(str(root), str(ROOT / "schemas")) as engine:
        engine.start_watching()
        for version in range(1, changes + 1):
            text = policy(version)

            def change(version: int = version, text: str = text) -> None:
                if kind == "write":
                    (root / "p.yaml").write_text(text)
                elif kind == "rename":
                    (root / ".p.yaml.tmp").write_text(text)
                    os.replace(root / ".p.yaml.tmp", root / "p.yaml")
                else:
                    configmap_update(root, version, text)

            def seen(version: int = version) -> bool:
                return engine.evaluate(SCHEMA, PAYLOAD, track="v2").canary == version % 100

            latency = seconds_until(seen, change, timeout=10)
            if latency is None:
                raise SystemExit(f"{kind}: change {version} not seen within 10 s")
            found.append(latency)
            time.sleep(0.05)  # let the watcher go idle, as between real deployments
    return found


def big_policy(directory: Path, rules: int, style: str) -> None:
    """``rules`` exact rules spread over files of 1 000, plus 10 globs.

    ``compact`` rules are one line (``name: {mode: strict, canary: 25}``); ``full`` rules are
    nine, with two tracks and a two-step ramp.
    """
    directory.mkdir()
    per_file = 1000
    for start in range(0, rules, per_file):
        lines = ["version: 1", "defaults: {mode: warn, key: producer_id}", "schemas:"]
        for i in range(start, min(start + per_file, rules)):
            if style == "compact":
                lines.append(f"  team{i % 50}.Event{i}: {{mode: strict, canary: {i % 100}}}")
                continue
            lines += [
                f"  team{i % 50}.Event{i}:",
                "    mode: strict",
                f"    canary: {i % 100}",
                "    tracks:",
                "      v1: {mode: warn}",
                "      v2:",
                "        ramp:",
                "          - {at: 2026-12-01T00:00:00Z, canary: 10}",
                "          - {at: 2026-12-08T00:00:00Z, canary: 50}",
            ]
        (directory / f"rules-{start // per_file:03d}.yaml").write_text("\n".join(lines) + "\n")
    globs = ["version: 1", "schemas:"] + [f'  "team{i}.*": {{mode: warn}}' for i in range(10)]
    (directory / "globs.yaml").write_text("\n".join(globs) + "\n")


def load_cases(rules: int, style: str, workdir: Path) -> list[Case]:
    """A cold load of the set, and a reload after one file of it changed (parse cache warm)."""
    directory = workdir / f"big-{rules}-{style}"
    big_policy(directory, rules, style)
    names = [f"team{i % 50}.Event{i}" for i in range(rules)]
    cache = ParseCache()
    edits = count()

    def cold(items: Sequence[Any]) -> None:
        for _ in items:
            load_policy_set([directory], known_schemas=names)

    def edit_one_file() -> None:
        # Untimed: the cache holds the set as it is, then one of its files changes.
        load_policy_set([directory], known_schemas=names, cache=cache)
        with (directory / "globs.yaml").open("a") as handle:
            handle.write(f"# edit {next(edits)}\n")

    def reload(items: Sequence[Any]) -> None:
        for _ in items:
            load_policy_set([directory], known_schemas=names, cache=cache)

    label = f"{rules:>6} {style:<8}"
    return [
        Case(f"{label} {'cold load':<24}", cold, fixed_calls=1),
        Case(f"{label} {'reload, 1 file changed':<24}", reload, fixed_calls=1, setup=edit_one_file),
    ]


def c_loader_cases(rules: int, style: str, workdir: Path) -> list[Case]:
    """The baselines: ``yaml.load`` with ``yaml.CSafeLoader`` over the files ``load_cases`` wrote
    (read from disk too), i.e. parsing alone, without validation, checks or positions; once as
    is, once with the cyclic garbage collector paused as ``load_policy_set`` pauses it."""
    files = sorted((workdir / f"big-{rules}-{style}").glob("*.yaml"))

    def parse_only(items: Sequence[Any]) -> None:
        for _ in items:
            for path in files:
                yaml.load(path.read_bytes(), Loader=yaml.CSafeLoader)

    def parse_only_gc_paused(items: Sequence[Any]) -> None:
        gc.disable()
        try:
            parse_only(items)
        finally:
            gc.enable()

    label = f"{rules:>6} {style:<8}"
    return [
        Case(f"{label} {'yaml.CSafeLoader alone':<24}", parse_only, fixed_calls=1),
        Case(f"{label} {'yaml.CSafeLoader, gc off':<24}", parse_only_gc_paused, fixed_calls=1),
    ]


class Flipper:
    """Rewrites a policy file (temp file + rename) every ``every`` seconds while switched on."""

    def __init__(self, root: Path, every: float) -> None:
        self.root = root
        self.every = every
        self.version = 1
        self.on = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            if not self.on.wait(0.05):
                continue
            if self.stop.wait(self.every):
                return
            if self.on.is_set():
                self.version += 1
                (self.root / ".p.tmp").write_text(policy(self.version))
                os.replace(self.root / ".p.tmp", self.root / "p.yaml")

    def start(self) -> None:
        """Start changing the file (a round's setup)."""
        self.on.set()

    def pause(self) -> None:
        """Stop changing the file and give the watcher time to finish its reload (a round's
        teardown), so that the next case's round does not pay for it."""
        self.on.clear()
        time.sleep(0.3)

    def close(self) -> None:
        """Stop the thread."""
        self.stop.set()
        self.on.set()
        self.thread.join()


def throughput_cases(workdir: Path, every: float, stack: contextlib.ExitStack) -> list[Case]:
    """evaluate on an engine watching a file that changes every ``every`` seconds, and on one
    watching a file that never changes."""
    cases = []
    for name, flips in (("no reloads", False), (f"reload every {every * 1000:.0f} ms", True)):
        root = workdir / f"tput-{flips}"
        root.mkdir(parents=True)
        (root / "p.yaml").write_text(policy(1))
        engine = stack.enter_context(PolicyEngine(str(root), str(ROOT / "schemas")))
        engine.start_watching()
        case = Case(name, repeat(engine.evaluate, SCHEMA, PAYLOAD))
        if flips:
            flipper = Flipper(root, every)
            stack.callback(flipper.close)
            case.setup, case.teardown = flipper.start, flipper.pause
        cases.append(case)
    return cases


def main() -> int:
    """Run the three measurements and print them against their targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=50, help="changes per kind (50)")
    parser.add_argument("--load-rounds", type=int, default=3, help="rounds of each load (3)")
    parser.add_argument(
        "--rounds", type=int, default=10, help="rounds of each throughput case (10)"
    )
    parser.add_argument(
        "--round-ms", type=float, default=500.0, help="one throughput round (500 ms)"
    )
    args = parser.parse_args()
    print(header("policy-engine hot-reload benchmark"))
    started_load = load()
    with tempfile.TemporaryDirectory(prefix="bench-reload-") as tmp:
        work = Path(tmp)
        print(f"\n1. change -> first evaluation that sees it ({args.changes} changes each)")
        print(f"   {'kind':<10} {'median ms':>10} {'p99 ms':>10} {'max ms':>10}")
        for kind in ("write", "rename", "configmap"):
            values = [v * 1000 for v in change_latency(kind, args.changes, work)]
            print(
                f"   {kind:<10} {statistics.median(values):>10.1f} "
                f"{percentile(values, 0.99):>10.1f} {max(values):>10.1f}"
            )
        print("   target: p99 <= 500 ms")

        print(
            f"\n2. load time of a policy set (median of {args.load_rounds} interleaved rounds, "
            "after one warm-up round)",
            flush=True,
        )
        sets = {
            (rules, style): load_cases(rules, style, work)
            for rules in (1_000, 10_000)
            for style in ("compact", "full")
        }
        cold = sets[(10_000, "full")][0]
        baseline, baseline_paused = c_loader_cases(10_000, "full", work)
        loads = [case for cases in sets.values() for case in cases]
        loads += [baseline, baseline_paused]
        measure(loads, args.load_rounds)
        print(f"   {'rules':>6} {'style':<8} {'':<24} {'median ms':>10} {'min':>8} {'max':>8}")
        for case in loads:
            print(
                f"   {case.name} {case.median / 1e6:>10.0f} {case.minimum / 1e6:>8.0f} "
                f"{case.maximum / 1e6:>8.0f}"
            )
        for against, what in ((baseline, "alone"), (baseline_paused, "with gc off")):
            pairs = paired_ratios(cold, against)
            print(
                f"   10 000 full cold load / yaml.CSafeLoader {what}: "
                f"{cold.median / against.median:.2f} (per round {min(pairs):.2f}-{max(pairs):.2f})"
            )
        print("   target: <= 1000 ms for a cold load of 10 000 rules")

        print(
            f"\n3. evaluate throughput, {args.rounds} interleaved rounds of ~{args.round_ms:g} ms "
            "each",
            flush=True,
        )
        with contextlib.ExitStack() as stack:
            quiet, busy = throughput_cases(work, 0.1, stack)
            measure([quiet, busy], args.rounds, args.round_ms)
        share = quiet.median / busy.median  # time per call, so the inverse of the throughputs
        pairs = paired_ratios(quiet, busy)
        for case in (quiet, busy):
            print(f"   {case.name + ':':<21} {1e9 / case.median:12,.0f} evaluations/s")
        print(
            f"   reloading / no reloads: {share:.1%} (per round {min(pairs):.1%}-{max(pairs):.1%})"
        )
        print("   target: >= 90 %")
    print(f"\nmachine: {started_load} at the start, {load()} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
