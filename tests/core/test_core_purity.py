"""The pure core stays pure, the package imports lazily, and its name is its own."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import policy_engine

ROOT = Path(__file__).resolve().parents[2]
CORE = Path(policy_engine.__file__).resolve().parent / "core"
#: The core in the repository, where its ruff.toml is (the imported copy may be elsewhere).
SOURCE_CORE = ROOT / "engine" / "policy_engine" / "core"
#: Libraries of the edges (YAML, HTTP, metrics, watching, brokers) the core must not load.
EDGE_LIBRARIES = ("yaml", "httpx", "prometheus_client", "watchfiles", "redis")


def loaded_after(statement: str, cwd: Path | None = None) -> set[str]:
    """Top-level module names in ``sys.modules`` after running ``statement`` in a fresh
    interpreter."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, check=True
    )
    return {name.split(".")[0] for name in json.loads(done.stdout.splitlines()[-1])}


def test_importing_the_core_loads_no_edge_library():
    """Every module of policy_engine.core imports without yaml, httpx, prometheus_client,
    watchfiles or redis."""
    modules = sorted(p.stem for p in CORE.glob("*.py") if p.stem != "__init__")
    assert {"bucket", "diff", "guardrail", "policy_set", "resolve", "route"} <= set(modules)
    statement = "\n".join(f"import policy_engine.core.{name}" for name in modules)
    assert loaded_after(statement) & set(EDGE_LIBRARIES) == set()


def test_importing_the_package_loads_nothing_heavy():
    """``import policy_engine`` alone loads no edge library, no pydantic and no jsonschema: names
    are imported on first use, so the CLI starts fast."""
    loaded = loaded_after("import policy_engine")
    assert loaded & {*EDGE_LIBRARIES, "pydantic", "jsonschema", "jsonschema_rs"} == set()


@pytest.mark.parametrize("library", EDGE_LIBRARIES)
def test_ruff_refuses_an_edge_import_in_the_core(library, tmp_path):
    """ruff's banned-api rule (TID251, core/ruff.toml) flags an edge library imported in the
    core, and only there."""
    source = f"import {library}\n\nprint({library})\n"

    def ruff(filename: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ruff", "check", "--stdin-filename", str(filename), "-"],
            input=source,
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )

    inside = ruff(SOURCE_CORE / "probe.py")
    assert inside.returncode == 1
    assert "TID251" in inside.stdout
    outside = ruff(SOURCE_CORE.parent / "probe.py")
    assert "TID251" not in outside.stdout


def test_a_users_engine_module_changes_nothing(tmp_path):
    """With a user's own ``engine.py`` in the working directory, ``python -m policy_engine`` is
    still the CLI and ``from policy_engine import PolicyEngine`` still works, beside the user's
    ``engine`` module."""
    (tmp_path / "engine.py").write_text("raise SystemExit('the user engine.py ran')\nNAME = 1\n")
    cli = subprocess.run(
        [sys.executable, "-m", "policy_engine", "--version"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.startswith("policy-engine ")
    (tmp_path / "engine.py").write_text("NAME = 'users own engine'\n")
    code = textwrap.dedent(
        """
        import engine
        from policy_engine import PolicyEngine, Mode
        with PolicyEngine(policies=[], registry='.', metrics=False) as eng:
            mode = eng.resolve_mode('any.Schema', key='k', track='v1')
        print(engine.NAME, PolicyEngine.__module__, mode.value)
        """
    )
    both = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True
    )
    assert both.stdout.split() == ["users", "own", "engine", "policy_engine.engine", "warn"]


def test_no_engine_module_is_installed(tmp_path):
    """Outside a directory that has one, ``import engine`` finds nothing: the distribution
    installs only ``policy_engine``."""
    done = subprocess.run(
        [sys.executable, "-c", "import engine"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 1
    assert "No module named 'engine'" in done.stderr
