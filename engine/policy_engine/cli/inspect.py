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
    nearest,
    write_json,
)
from policy_engine.cli.terminal import Painter

if TYPE_CHECKING:
    from policy_engine.decision import Decision, Explanation
    from policy_engine.engine import PolicyEngine

ALLOW_UNKNOWN_HELP = (
    "go on with a schema or track that neither the registry nor the policies know (a warning "
    "on stderr) instead of stopping with exit 2"
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``explain`` and ``validate`` to the command line."""
    explain = sub.add_parser(
        "explain",
        help="which rule, canary, bucket and mode a schema/key gets, and why",
        description="Show the rule that governs SCHEMA (and track), the canary in force, and, "
        "with --key, the key's bucket and the mode it gets. A schema or track that neither the "
        "registry nor a policy names is a typo until shown otherwise: exit 2 with the nearest "
        "known name, unless --allow-unknown.",
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
    explain.add_argument("--allow-unknown", action="store_true", help=ALLOW_UNKNOWN_HELP)
    add_common(explain)
    explain.set_defaults(run=run_explain)

    validate = sub.add_parser(
        "validate",
        help="evaluate one payload",
        description="Evaluate the JSON payload in FILE ('-' for stdin) as SCHEMA. Exit 0 when it "
        "is accepted, logged or skipped, 1 when it is rejected, 2 when the input cannot be read "
        "or SCHEMA or --track is a name neither the registry nor a policy knows (unless "
        "--allow-unknown).",
    )
    validate.add_argument("schema", metavar="SCHEMA", help="schema name")
    validate.add_argument("file", metavar="FILE", help="a JSON file with the payload, or '-'")
    validate.add_argument("--track", help="track (default: preferred track, else fallback)")
    validate.add_argument("--key", help="canary key (default: the rule's key path, else a hash)")
    validate.add_argument("--allow-unknown", action="store_true", help=ALLOW_UNKNOWN_HELP)
    add_common(validate)
    validate.set_defaults(run=run_validate)


def unknown_name(engine: PolicyEngine, schema: str, track: str | None) -> str | None:
    """Why ``schema`` (or ``track`` of it) looks like a typo, or ``None`` if a source knows it.

    Known schemas: those the registry lists and those an exact (non-glob) policy entry names; a
    glob matching a name proves nothing about it. Known tracks of a schema: those the registry
    lists for it and those the policy entry that governs it writes. With no registry listing (the
    registry disabled or unreachable) nothing can be ruled out, and nothing is.
    """
    listing = engine.registry_listing
    if listing is None:
        return None
    policy_set = engine.policy_set
    if schema not in listing and schema not in policy_set.exact:
        best = nearest(schema, [*listing, *policy_set.exact])
        hint = f"did you mean {best!r}?" if best else "neither the registry nor a policy names it"
        return f"unknown schema {schema!r} ({hint})"
    if track is None:
        return None
    tracks = dict.fromkeys(listing.get(schema, ()))
    governing, _ = policy_set.match(schema)
    if governing is not None:
        tracks.update(dict.fromkeys(governing.rule.tracks or ()))
    if track in tracks:
        return None
    best = nearest(track, tracks)
    if best is not None:
        hint = f"did you mean {best!r}?"
    elif tracks:
        hint = f"{schema} has {', '.join(sorted(tracks))}"
    else:
        hint = f"neither the registry nor a policy names a track of {schema}"
    return f"unknown track {track!r} ({hint})"


def check_names(
    engine: PolicyEngine, args: argparse.Namespace, streams: Streams, command: str
) -> None:
    """Stop with exit 2 on an unknown schema or track, or warn with ``--allow-unknown``."""
    problem = unknown_name(engine, args.schema, args.track)
    if problem is None:
        return
    if not args.allow_unknown:
        raise CommandError(f"{problem}; --allow-unknown to go on anyway")
    warning = streams.painter(streams.stderr)("warning", "warning")
    streams.stderr.write(f"policy-engine {command}: {warning}: {problem}\n")


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
        check_names(engine, args, streams, "explain")
        explanation = engine.explain(args.schema, track=args.track, key=args.key, at=at)
    if args.json:
        write_json(streams.stdout, explanation.to_dict())
        return EXIT_OK
    streams.stdout.write(describe_explanation(explanation, streams.painter(streams.stdout)))
    return EXIT_OK


def describe_explanation(explanation: Explanation, paint: Painter) -> str:
    """``label: value`` lines a person reads, the mode coloured on a terminal."""
    rule = explanation.rule
    where = f"{rule.pattern} ({rule.file}:{rule.line})" if rule else "(none: global default)"
    mode = explanation.mode.value
    rows = [
        ("schema", explanation.schema),
        ("track", explanation.track),
        ("rule", where),
        ("canary", f"{explanation.canary:g}%"),
        ("baseline", paint(explanation.baseline.value, explanation.baseline.value)),
    ]
    if explanation.bucket is not None:
        side = "inside" if explanation.in_canary else "outside"
        rows.append(("bucket", f"{explanation.bucket} ({side} the canary)"))
    rows.append(("mode", paint(mode, mode)))
    rows.append(("why", explanation.reason))
    return "".join(
        f"{paint(f'{label}:', 'muted')}{' ' * (10 - len(label))}{value}\n" for label, value in rows
    )


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


def describe_decision(decision: Decision, paint: Painter | None = None) -> str:
    """A few lines a person reads: the outcome, then each violation (coloured by ``paint``)."""
    paint = paint or Painter(False)
    rule = decision.rule
    where = f"{rule.pattern} {rule.file}:{rule.line}" if rule else "none"
    action = decision.action.value
    head = (
        f"{paint(action.upper(), action)}: {decision.schema} {decision.track} in "
        f"{paint(decision.mode.value, decision.mode.value)} mode (rule {where}"
        f", canary {decision.canary:g}%, bucket {decision.bucket})"
    )
    lines = [head]
    lines.extend(
        f"  {paint(v.path or '(root)', 'name')}: [{v.keyword}] {v.message}"
        for v in decision.violations
    )
    lines.append(f"  {paint('why:', 'muted')} {decision.reason}")
    return "\n".join(lines) + "\n"


def run_validate(args: argparse.Namespace, streams: Streams) -> int:
    """Evaluate one payload; exit 1 if it is rejected."""
    from policy_engine.modes import Action

    with build_engine(args, streams) as engine:
        check_names(engine, args, streams, "validate")
        payload = _read_payload(args.file, streams)
        decision = engine.evaluate(args.schema, payload, key=args.key, track=args.track)
    if args.json:
        write_json(streams.stdout, decision.to_dict())
    else:
        streams.stdout.write(describe_decision(decision, streams.painter(streams.stdout)))
    return EXIT_FAIL if decision.action is Action.REJECTED else EXIT_OK
