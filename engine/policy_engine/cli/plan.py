"""``policy-engine plan --base REF``: what a policy change does, before it merges.

Compares the policy set at a git revision (read with ``git show``, no checkout) with the
working tree: for every schema/track whose effective mode, canary, ramp or guardrail (or any
other deciding field) changes, before -> after; ratchet warnings for rollbacks; and with
``--sample`` how many sample payloads change action.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

from policy_engine.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    CommandError,
    Streams,
    add_common,
    decision_logs_quiet,
    settings_from,
    write_json,
)
from policy_engine.cli.terminal import Painter
from policy_engine.errors import PolicyLoadError, RegistryError

if TYPE_CHECKING:
    from policy_engine.core.diff import RuleChange
    from policy_engine.core.policy_set import PolicySet
    from policy_engine.settings import Settings


GIT_TIMEOUT = 30.0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``plan`` to the command line."""
    plan = sub.add_parser(
        "plan",
        help="what a policy change does compared with a git revision",
        description="Compare the policy set at git revision REF (read with 'git show', nothing is "
        "checked out) with the working tree: every schema/track whose effective rule changes, "
        "before -> after, with warnings for rollbacks (a lower mode or canary, an edited past "
        "ramp step). With --sample, how many sample payloads change action. Exit 0, or with "
        "--fail-on-warning 1 when there is a rollback warning.",
    )
    plan.add_argument("paths", nargs="*", metavar="PATHS", help="policy paths (default: as check)")
    plan.add_argument("--base", required=True, metavar="REF", help="git revision, e.g. origin/main")
    plan.add_argument("--sample", metavar="FILE.jsonl", help="envelopes to evaluate with both sets")
    plan.add_argument(
        "--at", metavar="TIME", help="RFC 3339 time to compare canaries at (default: now)"
    )
    plan.add_argument(
        "--format",
        choices=["text", "json", "github"],
        default=None,
        help="text (default), json (same as --json) or github (Markdown for a PR comment)",
    )
    plan.add_argument(
        "--fail-on-warning",
        action="store_true",
        help="exit 1 when the change lowers keys' mode or edits a past ramp step (a CI gate "
        "that makes a rollback need a deliberate override)",
    )
    add_common(plan)
    plan.set_defaults(run=run_plan)


# ---------------------------------------------------------------- reading a revision


def _git(args: list[str], cwd: Path) -> bytes:
    try:
        result = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, timeout=GIT_TIMEOUT, check=False
        )
    except FileNotFoundError:
        raise CommandError("git is not installed; plan reads the base revision with git") from None
    except subprocess.TimeoutExpired:
        raise CommandError(f"git {' '.join(args)} took longer than {GIT_TIMEOUT:g} s") from None
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        raise CommandError(f"git {args[0]} failed: {message[-1] if message else 'unknown error'}")
    return result.stdout


def files_at_revision(ref: str, paths: Iterable[str]) -> list[tuple[str, str, bytes]]:
    """``(display name, path relative to its policy path, bytes)`` of policy files at ``ref``."""
    cwd = Path.cwd()
    top = Path(_git(["rev-parse", "--show-toplevel"], cwd).decode().strip())
    _git(["rev-parse", "--verify", f"{ref}^{{commit}}"], top)
    found: list[tuple[str, str, bytes]] = []
    for raw in paths:
        path = Path(raw).resolve()
        try:
            inside = path.relative_to(top.resolve()).as_posix()
        except ValueError:
            raise CommandError(f"{raw} is not inside the git repository at {top}") from None
        listing = _git(["ls-tree", "-r", "-z", "--name-only", ref, "--", inside or "."], top)
        for name in filter(None, listing.decode().split("\0")):
            file = PurePosixPath(name)
            relative = file.relative_to(inside) if inside and name != inside else file
            if name == inside:  # the policy path is a single file
                relative = PurePosixPath(file.name)
            if any(part.startswith(".") for part in relative.parts):
                continue
            if file.suffix not in (".yaml", ".yml"):
                continue
            data = _git(["show", f"{ref}:{name}"], top)
            found.append((f"{ref}:{name}", relative.as_posix(), data))
    return found


def load_base(
    ref: str, paths: Iterable[str], known: Mapping[str, tuple[str, ...]], settings: Settings
) -> PolicySet:
    """The policy set at git revision ``ref`` (``PolicyLoadError`` if it does not load)."""
    from policy_engine.policy.load import load_policy_texts

    return load_policy_texts(
        files_at_revision(ref, paths), default_mode=settings.enforcement, known_schemas=known
    )


def changes_between(
    before: PolicySet,
    after: PolicySet,
    known: Mapping[str, tuple[str, ...]],
    settings: Settings,
    now: float,
) -> list[RuleChange]:
    """Every schema/track whose effective rule differs, with its ratchet warnings."""
    from policy_engine.core.diff import diff_policy_sets, pairs_to_compare

    pairs = pairs_to_compare(before, after, known, (settings.prefer_track, settings.fallback_track))
    return diff_policy_sets(before, after, pairs, default_mode=settings.enforcement, now=now)


# ---------------------------------------------------------------- sample


def sample_changes(
    before: PolicySet,
    after: PolicySet,
    settings: Settings,
    stream: IO[bytes],
    now: float,
) -> tuple[dict[tuple[str, str], Counter[tuple[str, str]]], int, int]:
    """Per (schema, track), payloads moving between actions; also totals and bad lines."""
    from policy_engine.engine import PolicyEngine
    from policy_engine.envelope import EnvelopeError, parse_envelope, read_lines

    changes: dict[tuple[str, str], Counter[tuple[str, str]]] = {}
    total = bad = 0
    # Guardrails off: the comparison is of policies, not of a window of outcomes.
    engines = [
        PolicyEngine(
            policy_set, settings=settings, clock=lambda: now, metrics=False, guardrails=False
        )
        for policy_set in (before, after)
    ]
    try:
        for _, line in read_lines(stream):
            try:
                envelope = parse_envelope(line) if line is not None else None
            except EnvelopeError:
                envelope = None
            if envelope is None:
                bad += 1
                continue
            total += 1
            old, new = (
                e.evaluate(
                    envelope.schema, envelope.payload, key=envelope.key, track=envelope.track
                )
                for e in engines
            )
            if old.action is not new.action:
                counter = changes.setdefault((new.schema, new.track), Counter())
                counter[(old.action.value, new.action.value)] += 1
    finally:
        for engine in engines:
            engine.close()
    return changes, total, bad


# ---------------------------------------------------------------- output


def _summary(rule: dict[str, Any]) -> str:
    ramp = rule["ramp"]
    steps = ", ".join(
        f"{s['canary']:g}% from {time.strftime('%Y-%m-%d %H:%M', time.gmtime(s['at']))}"
        for s in ramp
    )
    ramp_text = f", ramp: {steps}" if ramp else ""
    guard = ", guardrail" if rule["guardrail"] else ""
    return f"{rule['mode']} {rule['canary_now']:g}% (baseline {rule['baseline']}{ramp_text}{guard})"


def _text(
    changes: list[RuleChange],
    now: float,
    heads: tuple[str, str],
    sample: tuple[dict[tuple[str, str], Counter[tuple[str, str]]], int, int] | None,
    markdown: bool,
    paint: Painter | None = None,
) -> str:
    """The plan as text, or as Markdown for a pull-request comment (``paint`` colours text)."""
    paint = paint or Painter(False)
    base, head = heads
    out: list[str] = []
    if markdown:
        out.append(f"### policy-engine plan: `{base}` → `{head}`\n")
    else:
        out.append(f"plan: {base} -> {head}")
    if not changes:
        out.append("no schema/track changes its effective rule")
    elif markdown:
        out.append("| schema | track | changed | before | after |")
        out.append("|---|---|---|---|---|")
        for c in changes:
            d = c.to_dict(now)
            out.append(
                f"| `{c.schema}` | {c.track} | {', '.join(c.fields)} | "
                f"{_summary(d['before'])} | {_summary(d['after'])} |"  # type: ignore[arg-type]
            )
    else:
        for c in changes:
            d = c.to_dict(now)
            out.append(
                f"  {paint(c.schema, 'heading')} {c.track}: {', '.join(c.fields)} changed\n"
                f"      {paint('before:', 'muted')} {_summary(d['before'])}\n"  # type: ignore[arg-type]
                f"      {paint('after:', 'muted')}  {_summary(d['after'])}"  # type: ignore[arg-type]
            )
    warnings = [w for c in changes for w in c.warnings]
    if warnings:
        out.append(
            "\n**Rollbacks to confirm:**"
            if markdown
            else paint("warnings (rollbacks?):", "warning")
        )
        out.extend(f"- {w}" if markdown else f"  {w}" for w in warnings)
    if sample is not None:
        moved, total, bad = sample
        out.append(
            f"\n**Sample:** {total} envelope(s), {bad} bad line(s)"
            if markdown
            else f"sample: {total} envelope(s), {bad} bad line(s)"
        )
        if not moved:
            out.append("no sample payload changes action")
        for (schema, track), counter in sorted(moved.items()):
            parts = ", ".join(f"{a} -> {b}: {n}" for (a, b), n in counter.most_common())
            out.append(
                f"- `{schema}` {track}: {parts}" if markdown else f"  {schema} {track}: {parts}"
            )
    return "\n".join(out) + "\n"


def run_plan(args: argparse.Namespace, streams: Streams) -> int:
    """Compare the base revision's policy set with the working tree's."""
    with decision_logs_quiet():  # the sample's per-payload failures are the report's business
        return _plan(args, streams)


def _plan(args: argparse.Namespace, streams: Streams) -> int:
    from policy_engine.core.resolve import parse_time
    from policy_engine.policy.load import load_policy_set
    from policy_engine.sources import open_schema_source

    settings = settings_from(args, streams.environ)
    paths = args.paths or list(settings.policy_paths)
    now = time.time()
    if args.at:
        try:
            now = parse_time(args.at)
        except ValueError as exc:
            raise CommandError(f"--at: {exc}") from None
    known: dict[str, tuple[str, ...]] = {}
    try:
        source = open_schema_source(settings.registry_url, settings)
        try:
            known = dict(source.known_schemas())
        finally:
            source.close()
    except RegistryError as exc:
        streams.stderr.write(f"warning: registry not read ({exc}); comparing written names only\n")
    try:
        before = load_base(args.base, paths, known, settings)
        after = load_policy_set(paths, default_mode=settings.enforcement, known_schemas=known)
    except PolicyLoadError as exc:
        for problem in exc.problems:
            streams.stderr.write(f"{problem}\n")
        raise CommandError(
            "a policy set does not load; fix it first ('policy-engine check')"
        ) from None
    changes = changes_between(before, after, known, settings, now)
    sample = None
    if args.sample:
        try:
            with open(args.sample, "rb") as handle:
                sample = sample_changes(before, after, settings, handle, now)
        except OSError as exc:
            raise CommandError(f"{args.sample}: cannot read: {exc.strerror or exc}") from None
    fmt = "json" if args.json else (args.format or "text")
    heads = (f"{args.base} ({before.checksum})", f"working tree ({after.checksum})")
    if fmt == "json":
        result: dict[str, Any] = {
            "base": {"ref": args.base, "checksum": before.checksum},
            "head": {"checksum": after.checksum},
            "at": now,
            "changes": [c.to_dict(now) for c in changes],
        }
        if sample is not None:
            moved, total, bad = sample
            result["sample"] = {
                "total": total,
                "bad_lines": bad,
                "changes": [
                    {"schema": s, "track": t, "from": a, "to": b, "count": n}
                    for (s, t), counter in sorted(moved.items())
                    for (a, b), n in counter.most_common()
                ],
            }
        write_json(streams.stdout, result)
    else:
        markdown = fmt == "github"
        paint = streams.painter(streams.stdout) if not markdown else None
        streams.stdout.write(_text(changes, now, heads, sample, markdown, paint))
    warned = any(change.warnings for change in changes)
    return EXIT_FAIL if args.fail_on_warning and warned else EXIT_OK


__all__ = ["files_at_revision", "register", "sample_changes"]
