"""``policy-engine check`` and ``policy-engine schema``: lint policy files, publish their format."""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from policy_engine.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    CommandError,
    Streams,
    add_common,
    settings_from,
    write_json,
)
from policy_engine.cli.terminal import Painter
from policy_engine.errors import ConfigError, PolicyLoadError, Problem, RegistryError

if TYPE_CHECKING:
    from policy_engine.core.policy_set import PolicySet
    from policy_engine.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``check`` and ``schema`` to the command line."""
    check = sub.add_parser(
        "check",
        help="load and lint policy files",
        description="Load policy files as one policy set and report every problem as "
        "file:line:col: message. Warnings (a schema or track the registry does not know) do not "
        "fail the check unless --strict. Exit 0 when the set loads, 1 when it does not (or, with "
        "--strict, has warnings; with --base and --fail-on-warning, rollback warnings).",
    )
    check.add_argument(
        "paths",
        nargs="*",
        metavar="PATHS",
        help="policy files or directories (default: --policies, $POLICY_PATHS or 'policies')",
    )
    add_common(check)
    check.add_argument(
        "--format",
        choices=["text", "json", "github"],
        default=None,
        help="text (default), json (same as --json) or github (workflow annotations)",
    )
    check.add_argument("--strict", action="store_true", help="fail on warnings too")
    check.add_argument(
        "--base",
        metavar="REF",
        help="also warn about rollbacks against git revision REF: a lower mode or canary, "
        "or an edited ramp step in the past",
    )
    check.add_argument(
        "--fail-on-warning",
        action="store_true",
        help="with --base: exit 1 when there is a rollback warning (other warnings still pass; "
        "--strict fails on every warning)",
    )
    check.set_defaults(run=run_check)

    schema = sub.add_parser(
        "schema",
        help="print the JSON Schema of the policy file format",
        description="Print the JSON Schema of policy files (format version 1), for editors: "
        "point yaml-language-server at it with '# yaml-language-server: $schema=<file>'. "
        "The format does not depend on policies or registry; --policies and --registry are "
        "accepted like on every command and not used.",
    )
    add_common(schema, json_flag=False)  # its output is JSON already
    schema.set_defaults(run=run_schema)


def run_schema(args: argparse.Namespace, streams: Streams) -> int:
    """Print the policy format's JSON Schema."""
    from policy_engine.policy.model import policy_json_schema

    write_json(streams.stdout, policy_json_schema())
    return EXIT_OK


def registry_warnings(policy_set: PolicySet, known: Mapping[str, tuple[str, ...]]) -> list[Problem]:
    """Warnings for rules naming a schema or track the registry does not know."""
    found: list[Problem] = []
    for entry in policy_set.entries:
        if entry.is_glob:
            if not any(entry.regex and entry.regex.match(name) for name in known):
                found.append(
                    Problem(
                        entry.file,
                        entry.line,
                        entry.column,
                        f"glob {entry.pattern!r} matches no schema the registry knows",
                        "warning",
                    )
                )
            continue
        tracks = known.get(entry.pattern)
        if tracks is None:
            found.append(
                Problem(
                    entry.file,
                    entry.line,
                    entry.column,
                    f"schema {entry.pattern!r} is not in the registry",
                    "warning",
                )
            )
            continue
        for track, (line, column) in entry.track_marks.items():
            if track not in tracks:
                found.append(
                    Problem(
                        entry.file,
                        line,
                        column,
                        f"schema {entry.pattern!r} has no track {track!r} in the registry "
                        f"(it has {', '.join(tracks)})",
                        "warning",
                    )
                )
    return found


def _ratchet(
    base: str,
    paths: list[str],
    policy_set: PolicySet,
    known: Mapping[str, tuple[str, ...]],
    settings: Settings,
) -> list[Problem]:
    """Ratchet warnings of the working tree against the policy set at git revision ``base``."""
    from policy_engine.cli.plan import changes_between, load_base  # plan's git reader, when used

    try:
        before = load_base(base, paths, known, settings)
    except PolicyLoadError:
        return [
            Problem(
                base, 0, 0, f"the policy set at {base} does not load; no ratchet check", "warning"
            )
        ]
    changes = changes_between(before, policy_set, known, settings, time.time())
    return [warning for change in changes for warning in change.warnings]


def _problem_text(problem: Problem, paint: Painter) -> str:
    """``file:line:col: [warning: ]message``, the location and severity coloured by ``paint``."""
    if not paint.enabled:
        return f"{problem}\n"
    where = problem.file if problem.line == 0 else f"{problem.file}:{problem.line}:{problem.column}"
    if problem.severity == "error":
        return f"{paint(where, 'name')}: {paint(problem.message, 'error')}\n"
    return f"{paint(where, 'name')}: {paint('warning:', 'warning')} {problem.message}\n"


def _github_escape(text: str, *, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def run_check(args: argparse.Namespace, streams: Streams) -> int:
    """Load, lint, print the problems; exit 1 on errors (or on warnings with ``--strict``)."""
    from policy_engine.policy.load import load_policy_set
    from policy_engine.sources import open_schema_source, redact_url

    if args.fail_on_warning and not args.base:
        raise CommandError(
            "--fail-on-warning needs --base REF (it fails on rollback warnings against REF); "
            "--strict fails on every warning"
        )
    settings = settings_from(args, streams.environ)
    paths = args.paths or list(settings.policy_paths)
    problems: list[Problem] = []
    ratchet: list[Problem] = []
    policy_set: PolicySet | None = None
    known: Mapping[str, tuple[str, ...]] = {}
    try:
        source = open_schema_source(settings.registry_url, settings)
        try:
            known = source.known_schemas()
        finally:
            source.close()
    except Exception as exc:  # a registry that cannot be listed only costs the registry check
        reason = str(exc) if isinstance(exc, RegistryError | ConfigError) else repr(exc)
        problems.append(
            Problem(
                redact_url(settings.registry_url),
                0,
                0,
                f"registry not checked: {reason}",
                "warning",
            )
        )
    try:
        policy_set = load_policy_set(paths, default_mode=settings.enforcement, known_schemas=known)
        problems.extend(policy_set.warnings)
        if known:
            problems.extend(registry_warnings(policy_set, known))
    except PolicyLoadError as exc:
        problems.extend(exc.problems)
    except Exception as exc:  # the loader's contract is PolicyLoadError; report, never trace back
        policy_set = None
        problems.append(Problem(paths[0] if paths else ".", 1, 1, f"cannot load: {exc!r}"))
    if args.base and policy_set is not None:
        ratchet = _ratchet(args.base, paths, policy_set, known, settings)
        problems.extend(ratchet)

    errors = [p for p in problems if p.severity == "error"]
    warnings = [p for p in problems if p.severity == "warning"]
    failing_warnings = warnings if args.strict else ratchet if args.fail_on_warning else []
    ok = not errors and not failing_warnings
    fmt = "json" if args.json else (args.format or "text")
    if fmt == "json":
        write_json(
            streams.stdout,
            {
                "ok": ok,
                "checksum": policy_set.checksum if policy_set else None,
                "files": list(policy_set.files) if policy_set else [],
                "problems": [p.to_dict() for p in problems],
            },
        )
    elif fmt == "github":
        for p in problems:
            level = "error" if p.severity == "error" or p in failing_warnings else "warning"
            location = f"file={_github_escape(p.file, prop=True)}"
            if p.line:
                location += f",line={p.line},col={p.column}"
            streams.stdout.write(f"::{level} {location}::{_github_escape(p.message)}\n")
    else:
        paint = streams.painter(streams.stdout)
        for p in problems:
            streams.stdout.write(_problem_text(p, paint))
        verdict = paint("ok", "ok") if ok else paint("failed", "error")
        if policy_set is not None:
            rules = sum(1 for _ in policy_set.entries)
            streams.stdout.write(
                f"{verdict}: {len(policy_set.files)} file(s), {rules} rule(s), "
                f"checksum {policy_set.checksum}; {len(warnings)} warning(s)\n"
            )
        else:
            streams.stdout.write(f"{verdict}: {len(errors)} error(s), {len(warnings)} warning(s)\n")
    return EXIT_OK if ok else EXIT_FAIL
