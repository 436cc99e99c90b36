"""How long a command takes before it does anything: CLI start-up against the bare interpreter.

Run (from the repository root, with the project installed)::

    python benchmarks/bench_startup.py [--rounds 11] [--runs 5]

Every command a CI job or an operator types starts a fresh interpreter, so what the CLI imports
before it works is paid on each call. Measured, as wall-clock time of a whole process
(``subprocess.run``, output captured):

- **bare interpreter**: ``python -c pass`` (the floor every command pays);
- **--version**: ``policy-engine --version`` through the installed console script (the way users
  run it), and ``python -m policy_engine --version``;
- **check**: ``policy-engine check`` on the example ``policies/`` and ``schemas/`` (loads the
  policies and the registry listing, compiles nothing it does not need);
- **explain**: ``policy-engine explain`` of one schema at a fixed time (loads the policies and
  resolves one route).

The cases take turns within each round (``common.measure``, ``--runs`` processes per case and
round, a warm-up round first so the page cache holds the files); the median round is shown, and
"over bare" is the median of the per-round differences to the bare interpreter, which cancels a
machine that is slower in one round than in the next. Target: ``--version`` at most 0.3 s over
the bare interpreter.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import ROOT, Case, fmt_ns, header, load, measure

TARGET_S = 0.3


def command_case(name: str, argv: Sequence[str], runs: int) -> Case:
    """A case whose every call starts ``argv`` as a process and waits for it to exit 0."""

    def body(items: Sequence[Any]) -> None:
        for _ in items:
            done = subprocess.run(argv, cwd=ROOT, capture_output=True, check=False)
            if done.returncode != 0:
                raise SystemExit(
                    f"{name}: {' '.join(argv)} exited {done.returncode}: "
                    f"{done.stderr.decode(errors='replace')[-500:]}"
                )

    return Case(name, body, fixed_calls=runs)


def console_script() -> str:
    """The installed ``policy-engine`` next to this interpreter (a venv's ``bin``), else PATH's."""
    beside = Path(sys.executable).with_name("policy-engine")
    if beside.is_file():
        return str(beside)
    found = shutil.which("policy-engine")
    if found is None:
        raise SystemExit("policy-engine is not installed: pip install -e . first")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11, help="rounds (the median is shown)")
    parser.add_argument("--runs", type=int, default=5, help="processes per case and round")
    options = parser.parse_args()

    cli = console_script()
    project = ["--policies", "policies", "--registry", "schemas"]
    cases = [
        command_case(
            "bare interpreter: python -c pass", [sys.executable, "-c", "pass"], options.runs
        ),
        command_case("policy-engine --version", [cli, "--version"], options.runs),
        command_case(
            "python -m policy_engine --version",
            [sys.executable, "-m", "policy_engine", "--version"],
            options.runs,
        ),
        command_case("policy-engine check (examples)", [cli, "check", *project], options.runs),
        command_case(
            "policy-engine explain (one schema)",
            [
                cli,
                "explain",
                "marketdata.TradeEvent",
                "--at",
                "2026-01-10T00:00:00Z",
                *project,
            ],
            options.runs,
        ),
    ]
    print(header(f"CLI start-up, {options.runs} processes x {options.rounds} rounds per case"))
    measure(cases, repeats=options.rounds)

    bare = cases[0]
    width = max(len(case.name) for case in cases)
    print(f"{'case':<{width}} {'median':>10} {'min':>10} {'max':>10} {'over bare':>10}")
    over: dict[str, float] = {}
    for case in cases:
        diffs = [a - b for a, b in zip(case.samples_ns, bare.samples_ns, strict=True)]
        over[case.name] = statistics.median(diffs)
        print(
            f"{case.name:<{width}} {fmt_ns(case.median):>10} {fmt_ns(case.minimum):>10} "
            f"{fmt_ns(case.maximum):>10} {fmt_ns(over[case.name]) if case is not bare else '':>10}"
        )
    version_over = over["policy-engine --version"] / 1e9
    verdict = "met" if version_over <= TARGET_S else "NOT met"
    print(
        f"target: --version at most {TARGET_S:.1f} s over the bare interpreter: {verdict} "
        f"({version_over:.3f} s)"
    )
    print(f"machine: {load()} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
