"""The ``policy-engine`` command line (SPEC §6); also ``python -m policy_engine``.

``main`` is a function of (arguments, streams, environment) so tests run it with string buffers.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Mapping, Sequence
from typing import IO

from policy_engine import __version__
from policy_engine.cli import check, consume, inspect, plan, replay
from policy_engine.cli.common import EXIT_USAGE, CommandError, Streams, configure_logging
from policy_engine.errors import ConfigError, EngineError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command."""
    parser = argparse.ArgumentParser(
        prog="policy-engine",
        description="Per-schema, per-track JSON Schema enforcement: policy files in git decide "
        "off / warn / strict for each payload, with canaries and ramps.",
        epilog="Configuration comes from the environment (POLICY_PATHS, REGISTRY_URL, ...; see "
        "env.example); --policies and --registry override it. Run "
        "'policy-engine COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"policy-engine {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    check.register(sub)
    inspect.register(sub)
    replay.register(sub)
    plan.register(sub)
    consume.register(sub)
    return parser


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
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    configure_logging(
        getattr(args, "log_level", "warning"),
        streams.stderr,
        getattr(args, "log_format", "text"),
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
