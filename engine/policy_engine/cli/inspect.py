"""``policy-engine explain`` and ``policy-engine validate``: one schema, one key, one payload."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from policy_engine.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    CommandError,
    Streams,
    add_common,
    build_engine,
    write_json,
)

if TYPE_CHECKING:
    from policy_engine.decision import Decision


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``explain`` and ``validate`` to the command line."""
    explain = sub.add_parser(
        "explain",
        help="which rule, canary, bucket and mode a schema/key gets, and why",
        description="Show the rule that governs SCHEMA (and track), the canary in force, and, "
        "with --key, the key's bucket and the mode it gets.",
    )
    explain.add_argument(
        "schema", metavar="SCHEMA", help="schema name, e.g. telemetry.FeedbackEvent"
    )
    explain.add_argument("--track", help="track (default: preferred track, else fallback)")
    explain.add_argument("--key", help="the key whose bucket to show (e.g. a producer id)")
    explain.add_argument(
        "--at",
        metavar="TIME",
        help="RFC 3339 time to evaluate ramps at, e.g. 2026-12-08T00:00:00Z (default: now)",
    )
    add_common(explain)
    explain.set_defaults(run=run_explain)

    validate = sub.add_parser(
        "validate",
        help="evaluate one payload",
        description="Evaluate the JSON payload in FILE ('-' for stdin) as SCHEMA. Exit 0 when it "
        "is accepted, logged or skipped, 1 when it is rejected.",
    )
    validate.add_argument("schema", metavar="SCHEMA", help="schema name")
    validate.add_argument("file", metavar="FILE", help="a JSON file with the payload, or '-'")
    validate.add_argument("--track", help="track (default: preferred track, else fallback)")
    validate.add_argument("--key", help="canary key (default: the rule's key path, else a hash)")
    add_common(validate)
    validate.set_defaults(run=run_validate)


def run_explain(args: argparse.Namespace, streams: Streams) -> int:
    """Print why a schema/key gets its mode."""
    from policy_engine.core.resolve import parse_time

    at = None
    if args.at:
        try:
            at = parse_time(args.at)
        except ValueError as exc:
            raise CommandError(f"--at: {exc}") from None
    with build_engine(args, streams) as engine:
        explanation = engine.explain(args.schema, track=args.track, key=args.key, at=at)
    if args.json:
        write_json(streams.stdout, explanation.to_dict())
        return EXIT_OK
    rule = explanation.rule
    where = f"{rule.pattern} ({rule.file}:{rule.line})" if rule else "(none: global default)"
    lines = [
        f"schema:    {explanation.schema}",
        f"track:     {explanation.track}",
        f"rule:      {where}",
        f"canary:    {explanation.canary:g}%",
        f"baseline:  {explanation.baseline}",
    ]
    if explanation.bucket is not None:
        side = "inside" if explanation.in_canary else "outside"
        lines.append(f"bucket:    {explanation.bucket} ({side} the canary)")
    lines.append(f"mode:      {explanation.mode}")
    lines.append(f"why:       {explanation.reason}")
    streams.stdout.write("\n".join(lines) + "\n")
    return EXIT_OK


def _read_payload(name: str, streams: Streams) -> Any:
    """The payload in file ``name`` (``-``: stdin), parsed as strict JSON like every envelope
    (``load_json``: NaN and Infinity are not JSON); ``CommandError`` (exit 2) says where not."""
    from policy_engine.envelope import load_json

    try:
        if name == "-":
            data = streams.stdin.read()
        else:
            with open(name, "rb") as handle:
                data = handle.read()
    except OSError as exc:
        raise CommandError(f"{name}: cannot read: {exc.strerror or exc}") from None
    try:
        return load_json(data)
    except RecursionError:
        raise CommandError(f"{name}: the JSON nests too deeply to read") from None
    except ValueError as exc:
        raise CommandError(f"{name}: not JSON: {exc}") from None


def describe_decision(decision: Decision) -> str:
    """A few lines a person reads: the outcome, then each violation."""
    rule = decision.rule
    where = f"{rule.pattern} {rule.file}:{rule.line}" if rule else "none"
    head = (
        f"{decision.action.value.upper()}: {decision.schema} {decision.track} in "
        f"{decision.mode} mode (rule {where}"
        f", canary {decision.canary:g}%, bucket {decision.bucket})"
    )
    lines = [head]
    lines.extend(f"  {v.path or '(root)'}: [{v.keyword}] {v.message}" for v in decision.violations)
    lines.append(f"  why: {decision.reason}")
    return "\n".join(lines) + "\n"


def run_validate(args: argparse.Namespace, streams: Streams) -> int:
    """Evaluate one payload; exit 1 if it is rejected."""
    from policy_engine.modes import Action

    payload = _read_payload(args.file, streams)
    with build_engine(args, streams) as engine:
        decision = engine.evaluate(args.schema, payload, key=args.key, track=args.track)
    if args.json:
        write_json(streams.stdout, decision.to_dict())
    else:
        streams.stdout.write(describe_decision(decision))
    return EXIT_FAIL if decision.action is Action.REJECTED else EXIT_OK
