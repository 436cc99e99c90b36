"""Build hook: compile the hot path with mypyc when this machine can; pure Python otherwise.

Everything else about the package is declared in ``pyproject.toml``. The modules listed in
``COMPILED`` (the pure core, the decision and the engine facade: what runs for every payload)
are type-checked with ``mypy --strict`` anyway, so mypyc can compile them to C extensions, which
makes a decision two to three times faster (``benchmarks/bench_evaluate.py``). The ``.py``
files stay in the package and are what runs when no extension was built:

- ``POLICY_ENGINE_COMPILE=0`` skips the compilation (for a quick editable install while the
  compiled modules are being changed, or a platform with no C compiler);
- a failed compilation (no compiler, no Python headers) leaves a pure-Python install, with a
  warning, instead of a failed one.

An editable install (``pip install -e .``) builds the extensions next to the sources; after
changing a compiled module run it again (``tests/conftest.py`` refuses to test stale ones).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
PACKAGE = ROOT / "engine" / "policy_engine"
#: The modules compiled with mypyc, relative to the package.
COMPILED = (
    "core/bucket.py",
    "core/guardrail.py",
    "core/policy_set.py",
    "core/resolve.py",
    "core/route.py",
    "decision.py",
    "loop/core.py",
    "loop/records.py",
    "loop/transports/redis_streams.py",
    "loop/transports/wire.py",
    "engine.py",
)
#: Written next to the extensions: the hash of each source they were built from.
BUILD_INFO = "_compiled.json"


def _compile_wanted() -> bool:
    return os.environ.get("POLICY_ENGINE_COMPILE", "1").strip().lower() not in ("0", "false", "no")


def _remove_inplace_extensions() -> None:
    """Delete extensions an earlier editable install built next to the sources: they would
    shadow the ``.py`` files of a pure-Python install."""
    for name in COMPILED:
        for built in (PACKAGE / name).parent.glob(Path(name).stem + ".*.so"):
            built.unlink()
    for group in PACKAGE.parent.glob("policy_engine__mypyc.*.so"):
        group.unlink()
    (PACKAGE / BUILD_INFO).unlink(missing_ok=True)


def _extensions() -> list[object]:
    if not _compile_wanted():
        _remove_inplace_extensions()
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("policy-engine: mypyc is not available; installing pure Python", file=sys.stderr)
        return []
    # Paths relative to this file: setuptools wants them so, and mypyc names the modules from
    # the package layout (engine/ holds the policy_engine package).
    paths = [f"engine/policy_engine/{name}" for name in COMPILED]
    # The build environment holds the build requirements only, not the runtime dependencies
    # (prometheus-client, redis, ...): mypyc needs the types of the compiled modules, not a
    # strict verdict on every module they import (``mypy`` in CI gives that). So: no project
    # config, unknown libraries are Any, and errors outside the compiled modules are not ours.
    options = [
        f"--config-file={os.devnull}",
        "--ignore-missing-imports",
        "--follow-imports=silent",
        "--python-version=3.11",
    ]
    try:
        return list(mypycify([*options, *paths], opt_level="3", group_name="policy_engine"))
    except (Exception, SystemExit) as exc:  # mypyc type-checks first and exits on an error
        print(
            f"policy-engine: mypyc cannot compile ({exc}); installing pure Python", file=sys.stderr
        )
        return []


class OptionalBuildExt(build_ext):
    """Build every extension or none: a failure leaves the pure-Python package working."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # CompileError, a missing compiler or header, ...
            self._give_up(exc)
            return
        self._write_build_info()

    def _give_up(self, exc: BaseException) -> None:
        print(
            f"policy-engine: compiling with mypyc failed ({exc}); installing pure Python",
            file=sys.stderr,
        )
        for output in self.get_outputs():
            Path(output).unlink(missing_ok=True)
        self.extensions = []

    def _write_build_info(self) -> None:
        hashes = {
            name: hashlib.sha256((PACKAGE / name).read_bytes()).hexdigest() for name in COMPILED
        }
        text = json.dumps({"sources": hashes}, indent=2, sort_keys=True) + "\n"
        targets = [Path(self.build_lib) / "policy_engine" / BUILD_INFO]
        if self.inplace:
            targets = [PACKAGE / BUILD_INFO]
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
