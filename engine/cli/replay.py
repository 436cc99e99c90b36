"""``policy-engine replay``: evaluate a JSONL feed offline and tabulate what would happen."""

from __future__ import annotations

import argparse
import logging
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any

from engine.cli.common import EXIT_OK, CommandError, Streams, add_common, build_engine, write_json
from engine.decision import Action, Decision
from engine.engine import PolicyEngine
from engine.envelope import MAX_LINE_BYTES, EnvelopeError, parse_envelope, read_lines

#: Bad lines are all counted; this many are described on stderr.
SHOWN_BAD_LINES = 20
_INDEX = re.compile(r"/\d+(?=/|$)")


def fold_indices(pointer: str) -> str:
    """A JSON Pointer with array indices folded to ``*``: ``/bars/3/close`` -> ``/bars/*/close``."""
    return _INDEX.sub("/*", pointer)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``replay`` to the command line."""
    replay = sub.add_parser(
        "replay",
        help="evaluate a JSONL feed offline; a table per schema/track",
        description="Evaluate every envelope of FILE ('-' for stdin), one JSON object per line: "
        '{"schema": ..., "track"?: ..., "key"?: ..., "payload": {...}}. Prints, per schema and '
        "track, the totals, the accepted/logged/rejected/skipped counts and the most frequent "
        "failing paths (array indices folded to *). Bad lines are counted and reported with "
        "their line numbers. Exit 0.",
    )
    replay.add_argument("file", metavar="FILE.jsonl", help="the feed, or '-' for stdin")
    replay.add_argument(
        "--top", type=int, default=5, metavar="N", help="failing paths shown per group (5)"
    )
    replay.add_argument(
        "--progress",
        choices=["auto", "always", "never"],
        default="auto",
        help="progress bar on stderr: auto (only on a terminal), always, never",
    )
    add_common(replay)
    replay.set_defaults(run=run_replay)


@dataclass
class Group:
    """Counts for one (schema, track)."""

    schema: str
    track: str
    actions: Counter[str] = field(default_factory=Counter)
    invalid: int = 0
    paths: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, decision: Decision) -> None:
        self.actions[decision.action.value] += 1
        if decision.valid is False:
            self.invalid += 1
            for violation in decision.violations:
                self.paths[(fold_indices(violation.path), violation.keyword)] += 1

    @property
    def total(self) -> int:
        return sum(self.actions.values())

    def to_dict(self, top: int) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "track": self.track,
            "total": self.total,
            "invalid": self.invalid,
            **{action.value: self.actions[action.value] for action in Action},
            "top_paths": [
                {"path": path, "keyword": keyword, "count": count}
                for (path, keyword), count in self.paths.most_common(top)
            ],
        }


class Progress:
    """A one-line progress bar on a terminal: bytes read of the file, lines, rate."""

    def __init__(self, stream: IO[str], total_bytes: int | None, enabled: bool) -> None:
        self.stream = stream
        self.total = total_bytes
        self.enabled = enabled
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, done_bytes: int, lines: int, *, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not final and now - self._last < 0.1:
            return
        self._last = now
        rate = lines / max(now - self.started, 1e-9)
        if self.total:
            share = min(done_bytes / self.total, 1.0)
            bar = "#" * int(share * 30)
            text = f"\r[{bar:<30}] {share:6.1%} {lines} lines {rate:,.0f}/s"
        else:
            text = f"\r{lines} lines {rate:,.0f}/s"
        self.stream.write(text + ("\n" if final else ""))
        self.stream.flush()


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
    progress: Progress,
) -> tuple[dict[tuple[str, str], Group], int, int]:
    """Evaluate every envelope; the groups, the number evaluated and the number of bad lines."""
    groups: dict[tuple[str, str], Group] = {}
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
                group = groups.get((decision.schema, decision.track))
                if group is None:
                    group = groups[(decision.schema, decision.track)] = Group(
                        decision.schema, decision.track
                    )
                group.add(decision)
                total += 1
                progress.update(done_bytes, total)
                continue
        if bad <= SHOWN_BAD_LINES:
            stderr.write(f"{name}:{number}: bad line skipped: {reason}\n")
        elif bad == SHOWN_BAD_LINES + 1:
            stderr.write(f"{name}: more bad lines; only the first {SHOWN_BAD_LINES} are shown\n")
    progress.update(done_bytes, total, final=True)
    return groups, total, bad


def _table(groups: list[Group], top: int, total: int, bad: int) -> str:
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

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [fmt(headers), fmt(["-" * w for w in widths])]
    for group, row in zip(groups, rows, strict=True):
        out.append(fmt(row))
        for (path, keyword), count in group.paths.most_common(top):
            out.append(f"    {count:>7}  {path or '(root)'}  [{keyword}]")
    out.append(f"{total} envelope(s) evaluated, {bad} bad line(s)")
    return "\n".join(out) + "\n"


def run_replay(args: argparse.Namespace, streams: Streams) -> int:
    """Replay a feed and print the table (or JSON)."""
    if args.top < 0:
        raise CommandError("--top must be 0 or more")
    # Per-failure log lines would drown the table; the table is the report.
    logging.getLogger("engine.decisions").setLevel(logging.CRITICAL)
    stream, size = _open(args.file, streams)
    enabled = args.progress == "always" or (
        args.progress == "auto" and hasattr(streams.stderr, "isatty") and streams.stderr.isatty()
    )
    try:
        # Offline, the whole feed arrives "at once": a guardrail's time window would see it
        # all and trip, which says nothing about the policies. Replay judges the policies.
        with build_engine(args, streams, guardrails=False) as engine:
            groups, total, bad = replay_feed(
                engine,
                stream,
                name=args.file,
                stderr=streams.stderr,
                progress=Progress(streams.stderr, size, enabled),
            )
    finally:
        if stream is not streams.stdin:
            stream.close()
    ordered = sorted(groups.values(), key=lambda g: (g.schema, g.track))
    if args.json:
        write_json(
            streams.stdout,
            {
                "total": total,
                "bad_lines": bad,
                "groups": [g.to_dict(args.top) for g in ordered],
            },
        )
    else:
        streams.stdout.write(_table(ordered, args.top, total, bad))
    return EXIT_OK
