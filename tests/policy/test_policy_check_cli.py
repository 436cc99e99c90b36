"""``policy-engine check`` on files that used to escape the loader: a report, never a traceback.

Each bad file of the table is checked in every ``--format``; the answer is exit 1 with the
problem at its ``file:line:col``, and ``--format json`` stays one parseable document.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from policy_engine.cli import main
from policy_engine.policy import load

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = str(REPO / "schemas")
HEAD = "version: 1\nschemas:\n  telemetry.FeedbackEvent:\n"
RAMP = HEAD + "    ramp: [{{at: {}, canary: 5}}]\n"

#: (name, file content, line, column, text in the message)
ESCAPED = [
    ("month-13", RAMP.format("2026-13-45T00:00:00Z"), 4, 17, "no such month"),
    ("feb-30", RAMP.format("2026-02-30T00:00:00Z"), 4, 17, "no such day"),
    ("hour-25", RAMP.format("2026-01-01T25:00:00Z"), 4, 17, "the hour"),
    ("offset", RAMP.format("2026-01-01T00:00:00+99:00"), 4, 17, "offset"),
    ("int-tag", HEAD + "    canary: !!int abc\n", 4, 13, "tagged !!int"),
    ("float-tag", HEAD + "    canary: !!float abc\n", 4, 13, "tagged !!float"),
    ("long-int", HEAD + "    canary: " + "9" * 4400 + "\n", 4, 13, "4400 digits"),
    ("base-60", HEAD + "    canary: 1:05\n", 4, 13, "'1:05'"),
    ("nul", HEAD + '    salt: "a\0b"\n', 4, 13, "NUL byte"),
]


def run(args: list[str]) -> tuple[int, str, str]:
    """The CLI in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = main(args, stdin=io.BytesIO(), stdout=out, stderr=err, environ={})
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("fmt", ["text", "json", "github"])
@pytest.mark.parametrize(
    ("text", "line", "column", "words"), [c[1:] for c in ESCAPED], ids=[c[0] for c in ESCAPED]
)
def test_check_reports_a_bad_value_at_its_place_in_every_format(
    tmp_path: Path, fmt: str, text: str, line: int, column: int, words: str
):
    """A value the YAML reader cannot take fails the check with file:line:col, no traceback."""
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    code, out, err = run(["check", str(path), "--registry", SCHEMAS, "--format", fmt])
    assert code == 1
    assert "Traceback" not in out + err
    if fmt == "json":
        (problem,) = json.loads(out)["problems"]
        assert (problem["file"], problem["line"], problem["column"]) == (str(path), line, column)
        assert words in problem["message"]
    elif fmt == "github":
        where = f"file={str(path).replace(':', '%3A')},line={line},col={column}"
        assert out.startswith(f"::error {where}::")
        assert words in out
    else:
        assert out.startswith(f"{path}:{line}:{column}: ")
        assert words in out


def test_check_reports_a_loader_failure_instead_of_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Even an exception the loader was never meant to raise becomes a reported problem."""

    def broken(*args: object, **kwargs: object) -> object:
        raise ValueError("a bug")

    monkeypatch.setattr(load, "load_policy_set", broken)
    (tmp_path / "p.yaml").write_text("version: 1\n", encoding="utf-8")
    code, out, err = run(["check", str(tmp_path), "--registry", SCHEMAS, "--json"])
    assert code == 1
    (problem,) = json.loads(out)["problems"]
    assert "ValueError('a bug')" in problem["message"]
    assert err == ""


def test_check_as_a_process_prints_no_traceback(tmp_path: Path):
    """Run as a real process on an impossible date, stderr stays empty and stdout has the spot."""
    path = tmp_path / "p.yaml"
    path.write_text(ESCAPED[0][1], encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "policy_engine", "check", str(path), "--registry", SCHEMAS],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "POLICY_WATCH": "false"},
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == ""
    assert f"{path}:4:17: " in result.stdout
