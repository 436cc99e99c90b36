"""What every command shares: the common options, building the engine, printing, exit codes."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from policy_engine.errors import ConfigError, PolicyLoadError
from policy_engine.logs import JsonLogFormatter

if TYPE_CHECKING:
    from policy_engine.engine import PolicyEngine
    from policy_engine.settings import Settings

EXIT_OK = 0
EXIT_FAIL = 1  # check found errors, validate rejected
EXIT_USAGE = 2  # bad arguments, unreadable input, policies that do not load


class CommandError(Exception):
    """A problem the user must fix before the command can run; printed without a traceback."""


@dataclass
class Streams:
    """The command's standard streams, so tests can pass string buffers."""

    stdin: IO[bytes]
    stdout: IO[str]
    stderr: IO[str]
    environ: Mapping[str, str]


def add_common(parser: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    """``--policies``, ``--registry`` (SPEC §6: after the command name) and ``--json``."""
    parser.add_argument(
        "--policies",
        metavar="PATHS",
        help="policy files or directories, ':'-separated (default: $POLICY_PATHS or 'policies')",
    )
    parser.add_argument(
        "--registry",
        metavar="URL",
        help="schema registry: a directory of <schema>/<track>.json, a file:// path, or the "
        "http(s):// URL of a Confluent-compatible registry (default: $REGISTRY_URL or 'schemas')",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="log records at this level and above go to stderr (default: warning)",
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="log lines as text, or as one JSON object each with the structured fields "
        "(schema, track, mode, action, rule, checksum, violation_count, ...) (default: text)",
    )
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print one JSON object")


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Settings from the environment, with ``--policies``/``--registry`` on top."""
    from policy_engine.settings import Settings  # pydantic: imported by the commands using it

    settings = Settings.from_env(environ)
    changes: dict[str, Any] = {}
    if getattr(args, "policies", None):
        changes["policy_paths"] = tuple(p for p in args.policies.split(":") if p)
        changes["policy_paths_explicit"] = True
    if getattr(args, "registry", None):
        changes["registry_url"] = args.registry
    # The CLI commands here are one-shot: no watcher thread.
    changes["policy_watch"] = False
    return settings.with_overrides(**changes)


def build_engine(args: argparse.Namespace, streams: Streams, **options: Any) -> PolicyEngine:
    """The engine the command runs with; a policy set that fails to load stops the command.

    ``options`` go to ``PolicyEngine`` (``guardrails=False`` for offline analysis).
    """
    from policy_engine.engine import PolicyEngine

    settings = settings_from(args, streams.environ)
    try:
        return PolicyEngine(settings=settings, **options)
    except PolicyLoadError as exc:
        for problem in exc.problems:
            streams.stderr.write(f"{problem}\n")
        raise CommandError(
            f"the policy set does not load ({len(exc.problems)} problem(s)); "
            "run 'policy-engine check' for details"
        ) from exc
    except ConfigError as exc:
        raise CommandError(str(exc)) from exc


def configure_logging(level: str, stderr: IO[str], log_format: str = "text") -> None:
    """Log records of the ``policy_engine`` tree to stderr, one line each (``json``: one object)."""
    handler = logging.StreamHandler(stderr)
    if log_format == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("policy_engine")
    for old in [h for h in root.handlers if isinstance(h, logging.StreamHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def write_json(stream: IO[str], value: Any) -> None:
    """One JSON object and a newline."""
    stream.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")


@contextmanager
def decision_logs_quiet() -> Iterator[None]:
    """Silence per-payload failure logs while a command builds its own report of them.

    The previous level is restored afterwards: ``main`` may run again in the same process.
    """
    logger = logging.getLogger("policy_engine.decisions")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)
