"""``policy-engine replay``: evaluate a JSONL feed offline and tabulate what would happen."""

from __future__ import annotations

import argparse
import os
from typing import IO, TYPE_CHECKING, Any

from policy_engine.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    CommandError,
    Streams,
    add_common,
    build_engine,
    decision_logs_quiet,
    logs_to,
    write_json,
)
from policy_engine.cli.terminal import Painter, ProgressBar, is_terminal

if TYPE_CHECKING:
    from policy_engine.engine import PolicyEngine
    from policy_engine.report import DriftRecorder, DriftReport, GroupDrift


#: Bad lines are all counted; this many are described on stderr.
SHOWN_BAD_LINES = 20


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``replay`` to the command line."""
    from policy_engine.report import DEFAULT_BAR

    replay = sub.add_parser(
        "replay",
        help="evaluate a JSONL feed offline; a table per schema/track",
        description="Evaluate every envelope of FILE ('-' for stdin), one JSON object per line: "
        '{"schema": ..., "track"?: ..., "key"?: ..., "payload": {...}}. Prints, per schema and '
        "track, the totals, the accepted/logged/rejected/skipped counts and the most frequent "
        "failing paths (array indices folded to *), then a readiness verdict per schema/track "
        "against --bar. Bad lines are counted and reported with their line numbers. Exit 0; with "
        "--gate, exit 1 when a schema/track that is validated is not ready.",
    )
    replay.add_argument("file", metavar="FILE.jsonl", help="the feed, or '-' for stdin")
    replay.add_argument(
        "--top", type=int, default=5, metavar="N", help="failing paths shown per group (5)"
    )
    replay.add_argument(
        "--bar",
        type=float,
        default=DEFAULT_BAR,
        metavar="PERCENT",
        help=f"readiness bar: at most this percent invalid (default {DEFAULT_BAR:g})",
    )
    replay.add_argument(
        "--gate",
        action="store_true",
        help="a CI gate: exit 1 when the verdict of a schema/track is not ready (above --bar, or "
        "nothing validated); schema/tracks in mode off are not judged",
    )
    replay.add_argument(
        "--html",
        metavar="FILE",
        help="also write a self-contained HTML report: summary, chart, failing paths and keys",
    )
    replay.add_argument(
        "--progress",
        choices=["auto", "always", "never"],
        default="auto",
        help="progress bar on stderr: auto (only on a terminal), always, never",
    )
    add_common(replay)
    replay.set_defaults(run=run_replay)


def _open(name: str, streams: Streams) -> tuple[IO[bytes], int | None]:
    if name == "-":
        return streams.stdin, None
    try:
        handle = open(name, "rb")  # noqa: SIM115 - closed by the caller
    except OSError as exc:
        raise CommandError(f"{name}: cannot read: {exc.strerror or exc}") from None
    try:
        size: int | None = os.fstat(handle.fileno()).st_size
    except OSError:
        size = None
    return handle, size


def replay_feed(
    engine: PolicyEngine,
    stream: IO[bytes],
    *,
    name: str,
    stderr: IO[str],
    progress: ProgressBar,
    recorder: DriftRecorder,
) -> tuple[int, int]:
    """Evaluate every envelope into ``recorder``; the number evaluated and of bad lines.

    Bad lines are described on ``stderr`` (the progress bar's "above" stream while it is drawn).
    """
    from policy_engine.envelope import MAX_LINE_BYTES, EnvelopeError, parse_envelope, read_lines

    total = bad = 0
    done_bytes = 0
    for number, line in read_lines(stream):
        if line is None:
            bad += 1
            reason = f"line longer than {MAX_LINE_BYTES} bytes"
        else:
            done_bytes += len(line)
            try:
                envelope = parse_envelope(line)
            except EnvelopeError as exc:
                bad += 1
                reason = str(exc)
            else:
                decision = engine.evaluate(
                    envelope.schema, envelope.payload, key=envelope.key, track=envelope.track
                )
                recorder.after_evaluation(decision, 0.0)
                total += 1
                progress.update(done_bytes, total)
                continue
        if bad <= SHOWN_BAD_LINES:
            stderr.write(f"{name}:{number}: bad line skipped: {reason}\n")
        elif bad == SHOWN_BAD_LINES + 1:
            stderr.write(f"{name}: more bad lines; only the first {SHOWN_BAD_LINES} are shown\n")
    progress.update(done_bytes, total, final=True)
    return total, bad


def _table(groups: list[GroupDrift], top: int, total: int, bad: int, paint: Painter) -> str:
    """The per schema/track counts with the top failing paths under each row."""
    from policy_engine.modes import Action

    headers = ["schema", "track", "total", "invalid", "accepted", "logged", "rejected", "skipped"]
    rows = [
        [
            g.schema,
            g.track,
            str(g.total),
            str(g.invalid),
            *(str(g.actions[a.value]) for a in Action),
        ]
        for g in groups
    ]
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def fmt(cells: list[str], roles: list[str | None]) -> str:
        # pad first: escape sequences have a length but no width
        padded = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        painted = [paint(c, role) if role else c for c, role in zip(padded, roles, strict=True)]
        return "  ".join(painted).rstrip()

    plain: list[str | None] = [None] * len(headers)
    out = [fmt(headers, ["heading"] * len(headers)), fmt(["-" * w for w in widths], plain)]
    for group, row in zip(groups, rows, strict=True):
        roles = list(plain)
        roles[3] = "error" if group.invalid else None
        roles[6] = "rejected" if group.actions["rejected"] else None
        out.append(fmt(row, roles))
        for (path, keyword), count in group.paths.most_common(top):
            out.append(f"    {paint(f'{count:>7}', 'muted')}  {path or '(root)'}  [{keyword}]")
    out.append(f"{total} envelope(s) evaluated, {bad} bad line(s)")
    return "\n".join(out) + "\n"


def gate(report: DriftReport, bar: float) -> tuple[list[GroupDrift], list[GroupDrift]]:
    """The schema/tracks ``--gate`` fails on (verdict not ready), and those it does not judge
    (mode off: validation is deliberately not on, so there is no failure rate to hold)."""
    from policy_engine.modes import Mode

    judged = [g for g in report.groups if g.mode is not Mode.OFF]
    failing = [g for g in judged if not g.assess(bar).ready]
    return failing, [g for g in report.groups if g.mode is Mode.OFF]


def _gate_text(failing: list[GroupDrift], unjudged: list[GroupDrift], paint: Painter) -> str:
    """One line saying whether the gate passed, and on what."""
    names = ", ".join(f"{g.schema} {g.track}" for g in failing)
    line = (
        f"{paint('gate: failed', 'error')}: {len(failing)} schema/track(s) not ready: {names}"
        if failing
        else f"{paint('gate: passed', 'ok')}: every schema/track judged is ready"
    )
    if unjudged:
        line += f" (not judged, mode off: {', '.join(f'{g.schema} {g.track}' for g in unjudged)})"
    return line + "\n"


def run_replay(args: argparse.Namespace, streams: Streams) -> int:
    """Replay a feed and print the table (or JSON)."""
    # Per-failure log lines would drown the table; the table is the report.
    with decision_logs_quiet():
        return _replay(args, streams)


def _replay(args: argparse.Namespace, streams: Streams) -> int:
    from policy_engine.report import SERIES_POINTS, DriftRecorder

    if args.top < 0:
        raise CommandError("--top must be 0 or more")
    if not 0 <= args.bar <= 100:
        raise CommandError("--bar is a percentage, 0 to 100")
    stream, size = _open(args.file, streams)
    enabled = args.progress == "always" or (args.progress == "auto" and is_terminal(streams.stderr))
    bar = ProgressBar(streams.stderr, size, enabled=enabled, color=streams.colors(streams.stderr))
    try:
        # Offline, the whole feed arrives "at once": a guardrail's time window would see it
        # all and trip, which says nothing about the policies. Replay judges the policies.
        # ~SERIES_POINTS points in the failure-rate chart, guessing ~400 bytes per line
        recorder = DriftRecorder(slice_size=max(50, (size or 0) // (SERIES_POINTS * 400)))
        # while the bar is drawn, log records and bad-line messages go above it
        with build_engine(args, streams, guardrails=False) as engine, bar, logs_to(bar.above):
            total, bad = replay_feed(
                engine,
                stream,
                name=args.file,
                stderr=bar.above,
                progress=bar,
                recorder=recorder,
            )
    finally:
        if stream is not streams.stdin:
            stream.close()
    report = recorder.report()
    if args.html:
        try:
            with open(args.html, "w", encoding="utf-8") as handle:
                handle.write(report.to_html(args.bar, title=f"policy-engine replay of {args.file}"))
        except OSError as exc:
            raise CommandError(f"{args.html}: cannot write: {exc.strerror or exc}") from None
    failing, unjudged = gate(report, args.bar)
    if args.json:
        result: dict[str, Any] = {
            "total": total,
            "bad_lines": bad,
            "bar_percent": args.bar,
            "policy_checksums": list(report.checksums),
            "groups": [_group_json(g, args.top, args.bar) for g in report.groups],
        }
        if args.gate:
            result["gate"] = {
                "passed": not failing,
                "failing": [{"schema": g.schema, "track": g.track} for g in failing],
                "not_judged": [{"schema": g.schema, "track": g.track} for g in unjudged],
            }
        write_json(streams.stdout, result)
    else:
        paint = streams.painter(streams.stdout)
        streams.stdout.write(_table(report.groups, args.top, total, bad, paint))
        streams.stdout.write(f"\nreadiness (bar: at most {args.bar:g} % invalid):\n")
        streams.stdout.write(report.to_text(args.bar, args.top, paint))
        if args.gate:
            streams.stdout.write("\n" + _gate_text(failing, unjudged, paint))
    return EXIT_FAIL if args.gate and failing else EXIT_OK


def _group_json(group: GroupDrift, top: int, bar: float) -> dict[str, Any]:
    """A replay group (schema, track, counts per action, top paths), plus ``invalid`` and the
    ``drift`` details."""
    from policy_engine.modes import Action

    return {
        "schema": group.schema,
        "track": group.track,
        "total": group.total,
        "invalid": group.invalid,
        **{action.value: group.actions[action.value] for action in Action},
        "top_paths": [
            {"path": path, "keyword": keyword, "count": count}
            for (path, keyword), count in group.paths.most_common(top)
        ],
        "drift": group.to_dict(bar, top),
    }
