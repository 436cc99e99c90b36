"""Session-wide checks: which build of policy-engine the suite tests, and that it is current.

An install compiles the hot path with mypyc (``setup.py``); an editable install puts the
extensions next to the sources, where they shadow the ``.py`` files. Tests of stale extensions
would pass or fail for the wrong code, so the session refuses to start when a compiled module's
source changed since it was built.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

import policy_engine
import policy_engine.engine

PACKAGE = Path(policy_engine.__file__).resolve().parent
COMPILED = not policy_engine.engine.__file__.endswith(".py")


def stale_extensions() -> list[str]:
    """The compiled modules whose ``.py`` changed since the extensions were built."""
    info = PACKAGE / "_compiled.json"
    if not COMPILED or not info.is_file():
        return []
    built = json.loads(info.read_text(encoding="utf-8"))["sources"]
    return sorted(
        name
        for name, digest in built.items()
        if (PACKAGE / name).is_file()
        and hashlib.sha256((PACKAGE / name).read_bytes()).hexdigest() != digest
    )


def pytest_report_header() -> str:
    """Say which build runs: the compiled extensions or the pure-Python modules."""
    build = "compiled with mypyc" if COMPILED else "pure Python"
    return f"policy-engine: {build} ({PACKAGE})"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop before testing extensions built from older sources."""
    stale = stale_extensions()
    if stale:
        raise pytest.UsageError(
            f"the compiled policy-engine is older than its sources ({', '.join(stale)}): run "
            "'pip install -e .' again (or POLICY_ENGINE_COMPILE=0 pip install -e . for a "
            "pure-Python install)"
        )
