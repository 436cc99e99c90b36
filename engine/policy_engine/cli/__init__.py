"""The ``policy-engine`` command line; also ``python -m policy_engine``.

``main`` is a function of (arguments, streams, environment) so tests run it with string buffers.
Command modules import what they need inside their run functions, so that building the parser
(and ``policy-engine --version``) stays fast.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Mapping, Sequence
from contextlib import redirect_stderr, redirect_stdout
from typing import IO, cast

from policy_engine import __version__
from policy_engine.cli import (
    check,
    completion,
    consume,
    init,
    inspect,
    plan,
    policytest,
    replay,
    status,
)
from policy_engine.cli.common import (
    EXIT_USAGE,
    CommandError,
    CommandLineParser,
    Streams,
    configure_logging,
)
from policy_engine.cli.terminal import COLOR_CHOICES
from policy_engine.errors import ConfigError, EngineError

COLOR_HELP = (
    "colour the output: auto (on a terminal, unless NO_COLOR is set), always, never "
    "(default: auto); accepted before or after the command name"
)


def build_parser() -> CommandLineParser:
    """The argument parser with every command."""
    parser = CommandLineParser(
        prog="policy-engine",
        description="Per-schema, per-track JSON Schema enforcement: policy files in git decide "
        "off / warn / strict for each payload, with canaries and ramps.",
        epilog="Configuration comes from the environment (POLICY_PATHS, REGISTRY_URL, ...; see "
        "env.example); --policies and --registry override it. Run "
        "'policy-engine COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"policy-engine {__version__}")
    parser.add_argument(
        "--color", choices=COLOR_CHOICES, default="auto", metavar="WHEN", help=COLOR_HELP
    )
    # The commands' parsers are CommandLineParsers too (argparse makes them of the parent's
    # class); the register functions only need what any ArgumentParser has.
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", metavar="COMMAND", required=True),
    )
    check.register(sub)
    inspect.register(sub)
    replay.register(sub)
    plan.register(sub)
    consume.register(sub)
    status.register(sub)
    policytest.register(sub)
    init.register(sub)
    completion.register(sub)
    add_commands(parser, sub)
    return parser


def add_commands(
    parser: CommandLineParser, sub: argparse._SubParsersAction[argparse.ArgumentParser]
) -> None:
    """Record the commands for did-you-mean, and give each the global ``--color`` too.

    After the command name ``--color`` has no default of its own, so one given before the name
    is not overwritten by it.
    """
    parser.commands = dict(sub.choices)
    done: set[int] = set()
    for command in sub.choices.values():
        if id(command) in done:  # an alias shares its command's parser
            continue
        done.add(id(command))
        command.add_argument(
            "--color",
            choices=COLOR_CHOICES,
            default=argparse.SUPPRESS,
            metavar="WHEN",
            help=COLOR_HELP,
        )


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: IO[bytes] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run one command; returns the exit code (0 ok, 1 failed check / rejected, 2 usage)."""
    streams = Streams(
        stdin=stdin if stdin is not None else sys.stdin.buffer,
        stdout=stdout if stdout is not None else sys.stdout,
        stderr=stderr if stderr is not None else sys.stderr,
        environ=os.environ if environ is None else environ,
    )
    parser = build_parser()
    try:
        # argparse prints help, version and usage errors to sys.stdout/sys.stderr itself
        with redirect_stdout(streams.stdout), redirect_stderr(streams.stderr):
            args = parser.parse_command_line(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    streams.color = args.color
    configure_logging(
        getattr(args, "log_level", "warning"),
        streams.stderr,
        getattr(args, "log_format", "text"),
        streams.painter(streams.stderr),
    )
    try:
        code: int = args.run(args, streams)
    except (CommandError, ConfigError) as exc:
        streams.stderr.write(f"policy-engine {args.command}: {exc}\n")
        return EXIT_USAGE
    except EngineError as exc:
        streams.stderr.write(f"policy-engine {args.command}: {exc}\n")
        return EXIT_USAGE
    except BrokenPipeError:
        # `policy-engine replay ... | head`: the reader left; that is not an error.
        try:
            sys.stdout = io.TextIOWrapper(io.BytesIO())
        finally:
            return 0  # noqa: B012
    return code


__all__ = ["build_parser", "main"]
