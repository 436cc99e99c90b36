"""``policy-engine completion SHELL``: a shell completion script made from the argument parser.

shtab writes the script from the same ``argparse`` parser that reads the command line, so the
completions never drift from the commands and options; file and directory arguments complete
paths.
"""

from __future__ import annotations

import argparse

from policy_engine.cli.common import EXIT_OK, Streams

SHELLS = ("bash", "zsh", "fish")

#: Metavars whose values are paths; every other argument completes its choices or nothing.
FILE_METAVARS = frozenset({"FILE", "FILE.jsonl", "PATHS", "PATH", "SOURCE", "SINK", "DLQ"})
DIRECTORY_METAVARS = frozenset({"DIR"})

INSTALL = {
    "bash": "policy-engine completion bash > ~/.local/share/bash-completion/completions/"
    "policy-engine",
    "zsh": 'policy-engine completion zsh > "${fpath[1]}/_policy-engine"',
    "fish": "policy-engine completion fish > ~/.config/fish/completions/policy-engine.fish",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``completion`` to the command line."""
    completion = sub.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh, fish)",
        description="Print the completion script for SHELL on stdout. Install it with, e.g.:  "
        + ";  ".join(INSTALL.values()),
    )
    completion.add_argument("shell", metavar="SHELL", choices=SHELLS, help=", ".join(SHELLS))
    completion.set_defaults(run=run_completion)


def mark_paths(parser: argparse.ArgumentParser, files: object, directories: object) -> None:
    """Tell shtab which arguments of ``parser`` and its commands take paths."""
    for action in parser._actions:
        metavar = action.metavar if isinstance(action.metavar, str) else None
        if metavar in FILE_METAVARS:
            action.complete = files  # type: ignore[attr-defined]  # shtab's hook
        elif metavar in DIRECTORY_METAVARS:
            action.complete = directories  # type: ignore[attr-defined]
        if isinstance(action, argparse._SubParsersAction):
            for command in dict.fromkeys(action.choices.values()):
                mark_paths(command, files, directories)


def run_completion(args: argparse.Namespace, streams: Streams) -> int:
    """Print the completion script for ``args.shell``."""
    import shtab

    from policy_engine.cli import build_parser

    parser = build_parser()
    mark_paths(parser, shtab.FILE, shtab.DIRECTORY)
    script = shtab.complete(parser, shell=args.shell)
    streams.stdout.write(script if script.endswith("\n") else script + "\n")
    return EXIT_OK


__all__ = ["SHELLS", "register", "run_completion"]
