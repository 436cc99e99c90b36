"""What every command shares: the common options, building the engine, printing, exit codes,
and where log records go (stderr, or above a progress bar while one is drawn)."""

from __future__ import annotations

import argparse
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, NoReturn

from policy_engine.cli.terminal import Painter, color_enabled
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


def nearest(word: str, candidates: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The candidate closest to ``word`` (ignoring case), if any is close enough to suggest.

    Dotted names that share a namespace are compared by what follows it, so
    ``telemetry.Unknown`` is not "near" every other ``telemetry.*`` schema.

    >>> nearest("--stirct", ["--strict", "--base"]), nearest("v9", ["v1", "v2"])
    ('--strict', None)
    >>> names = ["telemetry.FeedbackEvent"]
    >>> nearest("telemetry.FeedbakEvent", names), nearest("telemetry.Unknown", names)
    ('telemetry.FeedbackEvent', None)
    """
    from difflib import SequenceMatcher  # only when a name is wrong

    wanted = word.lower()
    best, best_score = None, cutoff
    for candidate in candidates:
        name = candidate.lower()
        same = next(
            (i for i, (a, b) in enumerate(zip(wanted, name, strict=False)) if a != b),
            min(len(wanted), len(name)),
        )
        cut = wanted.rfind(".", 0, same) + 1  # after the namespace both share
        score = SequenceMatcher(None, wanted[cut:], name[cut:]).ratio()
        if score > best_score or (score == best_score and best is None):
            best, best_score = candidate, score
    return best


# argparse's wording, stable since 3.2: "argument --format: invalid choice: 'jsn' (choose ...";
# the value is its repr, in either kind of quotes.
_INVALID_CHOICE = re.compile(
    r"^argument (?P<argument>\S+?): invalid choice: "
    r"(?P<value>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
)


class CommandLineParser(argparse.ArgumentParser):
    """argparse with suggestions: an unknown command or choice names the nearest one, and an
    unknown option is reported by the command it was given to, with that command's usage and
    the nearest of its options (``check --stirct``: "did you mean --strict?").

    Errors still go the argparse way (usage and message on stderr, ``SystemExit(2)``), so
    callers of ``parse_args`` see what they expect; ``parse_command_line`` is what ``main``
    uses to get the per-command report of unknown options.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: command name -> its parser; filled in by ``add_commands`` on the top-level parser
        self.commands: dict[str, argparse.ArgumentParser] = {}

    def parse_command_line(self, argv: Sequence[str] | None) -> argparse.Namespace:
        """Parse ``argv``; leftovers are reported by the parser of the command they followed."""
        namespace, extras = self.parse_known_args(argv)
        if extras:
            owner = self.commands.get(getattr(namespace, "command", None) or "", self)
            message = f"unrecognized arguments: {' '.join(extras)}"
            options = [e.partition("=")[0] for e in extras if e.startswith("-") and len(e) > 1]
            suggestions = [s for s in (_nearest_option(owner, o) for o in options) if s]
            if suggestions:
                message += f" (did you mean {' or '.join(dict.fromkeys(suggestions))}?)"
            owner.error(message)
        return namespace

    def error(self, message: str) -> NoReturn:
        """Report a usage error, with the nearest valid name where argparse found an invalid
        choice; exits 2."""
        match = _INVALID_CHOICE.match(message)
        if match is not None:
            import ast

            value = str(ast.literal_eval(match["value"]))
            if match["argument"] == "COMMAND" and self.commands:
                best = nearest(value, self.commands)
                hint = (
                    f"did you mean {best!r}?" if best else f"commands: {', '.join(self.commands)}"
                )
                message = f"unknown command {value!r} ({hint})"
            else:
                choices = _choices_of(self, match["argument"])
                best = nearest(value, choices) if choices else None
                if best is not None:
                    message += f"; did you mean {best!r}?"
        super().error(message)


def _nearest_option(parser: argparse.ArgumentParser, option: str) -> str | None:
    """The option of ``parser`` nearest to the unknown ``option``."""
    names = [name for action in parser._actions for name in action.option_strings]
    return nearest(option, [n for n in names if n.startswith("--")] or names)


def _choices_of(parser: argparse.ArgumentParser, argument: str) -> list[str]:
    """The choices of the option named ``argument`` in an argparse error message (``-f/--format``
    for an option with two names)."""
    names = set(argument.split("/"))
    for action in parser._actions:
        if names & {*action.option_strings, action.metavar, action.dest}:
            return [str(c) for c in action.choices or ()]
    return []


@dataclass
class Streams:
    """The command's standard streams, so tests can pass string buffers, and the ``--color``
    choice that decides, per stream, whether what goes there is coloured."""

    stdin: IO[bytes]
    stdout: IO[str]
    stderr: IO[str]
    environ: Mapping[str, str]
    color: str = "auto"

    def painter(self, stream: IO[str]) -> Painter:
        """The painter for ``stream`` (``self.stdout`` or ``self.stderr``)."""
        return Painter(self.colors(stream))

    def colors(self, stream: IO[str]) -> bool:
        """Whether ``stream`` is coloured: a terminal, ``NO_COLOR`` unset, or ``--color always``."""
        return color_enabled(self.color, stream, self.environ)


def add_common(parser: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    """``--policies``, ``--registry``, the log options and ``--json``: every command takes them
    after its name."""
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


class _LevelFormatter(logging.Formatter):
    """``LEVEL logger: message``, the level coloured when stderr is."""

    ROLES: Mapping[int, str] = {
        logging.ERROR: "error",
        logging.CRITICAL: "error",
        logging.WARNING: "warning",
        logging.DEBUG: "muted",
    }

    def __init__(self, paint: Painter) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")
        self.paint = paint

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        text = super().formatMessage(record)
        role = self.ROLES.get(record.levelno)
        if role is None or not self.paint.enabled:
            return text
        return self.paint(record.levelname, role) + text[len(record.levelname) :]


def configure_logging(
    level: str, stderr: IO[str], log_format: str = "text", paint: Painter | None = None
) -> None:
    """Log records of the ``policy_engine`` tree to stderr, one line each (``json``: one object;
    ``paint`` colours the level of text lines)."""
    handler = logging.StreamHandler(stderr)
    if log_format == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(_LevelFormatter(paint or Painter(False)))
    root = logging.getLogger("policy_engine")
    for old in [h for h in root.handlers if isinstance(h, logging.StreamHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


@contextmanager
def logs_to(stream: IO[str]) -> Iterator[None]:
    """Send the log records ``configure_logging`` routed to stderr to ``stream`` for a while
    (a progress bar's "print above me" stream), then back."""
    root = logging.getLogger("policy_engine")
    moved = [
        (h, h.stream)
        for h in root.handlers
        if isinstance(h, logging.StreamHandler) and h.stream is not stream
    ]
    for handler, _ in moved:
        handler.setStream(stream)
    try:
        yield
    finally:
        for handler, old in moved:
            handler.setStream(old)


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
