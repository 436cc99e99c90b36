"""The README's and the docs' examples print what they show (``docblocks.py`` says how they run).

A change that alters a command's output fails here until the page that shows it follows.
"""

from __future__ import annotations

import difflib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import docblocks
import pytest

BLOCKS = docblocks.all_blocks()

#: The examples that are shown but not run, by page and reason. A new one is a decision: add it
#: here with the ``<!-- not run: REASON -->`` comment in the page.
NOT_RUN = {
    ("README.md", "needs a Redis server"): 1,
    ("docs/consume.md", "needs a running consume whose source Redis is down"): 1,
    ("docs/consume.md", "needs a Redis server"): 1,
    ("docs/cli.md", "needs two replicas serving /status"): 1,
    ("docs/cli.md", "writes into the shell's configuration"): 1,
    ("docs/deploy.md", "needs Docker"): 1,
    ("docs/scaling.md", "starts Redis servers and consume processes, about ten minutes"): 1,
    ("docs/deploy.md", "needs a Kubernetes cluster"): 2,
    (
        "docs/validation.md",
        "runs part of the test suite, with the JSON Schema Test Suite beside the repository",
    ): 1,
}

RUN = [block for block in BLOCKS if block.runs]


@pytest.fixture(scope="session")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Every runnable example, run once in a process of its own; results by block id."""
    base = tmp_path_factory.mktemp("docs")
    done = subprocess.run(
        [sys.executable, str(Path(docblocks.__file__)), str(base)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results: dict[str, list[dict[str, Any]]] = json.loads(done.stdout)
    return results


def _report(result: dict[str, Any]) -> str:
    want = docblocks.mask(result["expected"]).splitlines()
    got = docblocks.mask(result["actual"]).splitlines()
    diff = "\n".join(difflib.unified_diff(want, got, "shown", "printed", lineterm=""))
    return f"line {result['line']}: $ {result['command']} (exit {result['code']})\n{diff}"


@pytest.mark.parametrize("block", [pytest.param(block, id=block.id) for block in RUN])
def test_example_prints_what_the_page_shows(
    block: docblocks.Block, ran: dict[str, list[dict[str, Any]]]
) -> None:
    """Each command of a console block, or a python block, prints the output shown under it."""
    results = ran[block.id]
    wrong = [r for r in results if not docblocks.matches(r["expected"], r["actual"])]
    assert not wrong, "\n\n".join(_report(r) for r in wrong)


def test_examples_not_run_are_the_known_ones() -> None:
    """The examples marked ``not run`` are exactly those listed here, with their reasons."""
    marked = Counter((block.page, block.not_run) for block in BLOCKS if block.not_run)
    assert dict(marked) == NOT_RUN


def test_only_examples_are_marked_not_run() -> None:
    """A ``not run`` mark sits on an example, not on a block the test would not run anyway."""
    stray = [block.id for block in BLOCKS if block.not_run and not block.is_example]
    assert not stray


def test_matching_masks_and_ellipses() -> None:
    """``...`` lines stand for any lines, ``...`` in a line for any text, masks for times."""
    assert docblocks.matches("a\n...\nd", "a\nb\nc\nd")
    assert docblocks.matches("a\n...\nb", "a\nb")
    assert not docblocks.matches("a\nd", "a\nb\nd")
    assert docblocks.matches("why: x; ...", "why: x; y; z")
    assert docblocks.matches('{"time": "2026-11-25T18:46:48.899+00:00"}', '{"time": "now"}')
    folded = '{"a": {"b": 1, ...}, ...}'
    assert docblocks.matches(folded, json.dumps({"a": {"b": 1, "c": 2}, "d": 3}, indent=2))
    assert not docblocks.matches('{"a": 2}', '{"a": 1}')
