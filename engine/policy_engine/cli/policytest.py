"""``policy-engine test``: run policy test files (``*.test.yaml``) against the policies.

The files are read and checked first (``policy_engine.policytests``); a bad one stops the run
with every problem at ``file:line:col`` (exit 2) before any case is evaluated. Then each case is
one evaluation by a real engine, built from ``--policies``/``--registry``/the environment like
every command, at the case's time. Exit 0 when every case passes, 1 when one fails.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from policy_engine.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    Streams,
    add_common,
    build_engine,
    decision_logs_quiet,
    write_json,
)

if TYPE_CHECKING:
    from policy_engine.cli.terminal import Painter
    from policy_engine.errors import Problem
    from policy_engine.policytests import CaseResult


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``test`` to the command line."""
    test = sub.add_parser(
        "test",
        help="run policy test files: cases that pin what the policies decide",
        description="Run the cases of policy test files (*.test.yaml): each case evaluates one "
        "payload as a schema (and track, key, time) with the policies and registry, and says "
        "what must come out (mode, action, valid, in_canary). Exit 0 when every case passes, "
        "1 when one fails, 2 when a test file is bad (every problem is printed as "
        "file:line:col) or the policies do not load.",
    )
    test.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="test files, or directories searched for *.test.yaml and *.test.yml at any "
        "depth (default: tests/policies)",
    )
    test.add_argument(
        "--junit",
        metavar="FILE",
        help="also write the results to FILE as JUnit XML, one testcase per case, for CI "
        "systems (GitLab, Jenkins, Azure Pipelines, ...)",
    )
    add_common(test)
    test.set_defaults(run=run_test)


def run_test(args: argparse.Namespace, streams: Streams) -> int:
    """Read the test files, evaluate every case, report; exit 0, 1 or 2."""
    from policy_engine import policytests

    files, problems = policytests.discover_test_files(args.paths or [policytests.DEFAULT_TEST_DIR])
    cases: list[policytests.PolicyCase] = []
    if not problems:
        try:
            cases = policytests.load_test_files(files)
        except policytests.PolicyTestFileError as exc:
            problems = exc.problems
    if problems:
        return _bad_files(args, streams, problems)
    clock = policytests.CaseClock()
    # Guardrails off: a case pins what the policies say, not what earlier cases tripped.
    with (
        decision_logs_quiet(),
        build_engine(args, streams, clock=clock, metrics=False, guardrails=False) as engine,
    ):
        problems = policytests.unknown_names(cases, engine.policy_set, engine.registry_listing)
        if problems:
            return _bad_files(args, streams, problems)
        results = [policytests.evaluate_case(engine, clock, case) for case in cases]
        checksum = engine.checksum
    if args.junit:
        _write_junit(args.junit, policytests.junit_xml(results))
    passed = sum(1 for r in results if r.ok)
    failed = len(results) - passed
    if args.json:
        write_json(
            streams.stdout,
            {
                "passed": passed,
                "failed": failed,
                "checksum": checksum,
                "cases": [r.to_dict() for r in results],
            },
        )
    else:
        streams.stdout.write(_text(results, len(files), checksum, streams.painter(streams.stdout)))
    return EXIT_FAIL if failed else EXIT_OK


def _text(results: list[CaseResult], files: int, checksum: str, paint: Painter) -> str:
    """A line per case (PASS/FAIL, file:line, name), what differed under each failure, a
    summary."""
    from policy_engine.policytests import describe_mismatches

    lines = []
    width = max((len(r.case.where) for r in results), default=0)
    for result in results:
        case = result.case
        verdict = paint("PASS", "ok") if result.ok else paint("FAIL", "error")
        lines.append(f"{verdict}  {paint(case.where.ljust(width), 'name')}  {case.name}")
        if not result.ok:
            for part in describe_mismatches(result).split("; "):
                lines.append(f"      {paint(part, 'error')}")
            lines.append(f"      {paint('why: ' + result.reason, 'muted')}")
    passed = sum(1 for r in results if r.ok)
    failed = len(results) - passed
    lines.append(
        f"{paint(f'{passed} passed', 'ok' if passed else '')}, "
        f"{paint(f'{failed} failed', 'error' if failed else '')} "
        f"in {files} file{'s' if files != 1 else ''} (policy set {checksum})"
    )
    return "\n".join(lines) + "\n"


def _bad_files(args: argparse.Namespace, streams: Streams, problems: list[Problem]) -> int:
    """Report test-file problems (nothing ran) and exit 2."""
    from policy_engine.policytests import junit_xml

    if args.junit:
        _write_junit(args.junit, junit_xml([], problems))
    if args.json:
        result: dict[str, Any] = {
            "passed": 0,
            "failed": 0,
            "cases": [],
            "problems": [p.to_dict() for p in problems],
        }
        write_json(streams.stdout, result)
    else:
        paint = streams.painter(streams.stdout)
        for problem in problems:
            where = (
                f"{problem.file}:{problem.line}:{problem.column}" if problem.line else problem.file
            )
            streams.stdout.write(f"{paint(where, 'name')}: {paint(problem.message, 'error')}\n")
        streams.stdout.write(
            f"{paint('error:', 'error')} {len(problems)} problem(s) in the test files; "
            "no case was run\n"
        )
    return EXIT_USAGE


def _write_junit(name: str, data: bytes) -> None:
    try:
        path = Path(name)
        if path.parent != Path():
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        raise CommandError(f"--junit {name}: cannot write: {exc.strerror or exc}") from None


__all__ = ["register", "run_test"]
