"""`plan --base REF` and `check --base REF`: policy changes against a git revision."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from policy_engine.cli import main

REPO = Path(__file__).resolve().parents[2]

TELEMETRY = """\
version: 1
schemas:
  telemetry.FeedbackEvent:
    mode: warn
    tracks:
      v2:
        mode: strict
        canary: 25
        ramp:
          - {at: 2026-01-01T00:00:00Z, canary: 25}
          - {at: 2099-01-01T00:00:00Z, canary: 50}
"""


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository with policies/ committed and schemas/ beside it; cwd is its root."""
    git(tmp_path, "init", "-q")
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "t.yaml").write_text(TELEMETRY)
    shutil.copytree(REPO / "schemas", tmp_path / "schemas")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "base")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(args, stdin=io.BytesIO(), stdout=out, stderr=err, environ={})
    return code, out.getvalue(), err.getvalue()


def edit(repo: Path, old: str, new: str) -> None:
    path = repo / "policies" / "t.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_plan_with_no_change_says_so(repo: Path) -> None:
    """An unchanged working tree has no changes; exit 0."""
    code, out, _ = run(["plan", "--base", "HEAD", "--json"])
    result = json.loads(out)
    assert code == 0
    assert result["changes"] == []
    assert result["base"]["checksum"] == result["head"]["checksum"]


def test_plan_shows_a_mode_change_before_and_after(repo: Path) -> None:
    """Raising v1 from warn to strict is one change with the mode before and after."""
    edit(repo, "    mode: warn\n", "    mode: strict\n")
    code, out, _ = run(["plan", "--base", "HEAD", "--json"])
    (change,) = json.loads(out)["changes"]
    assert code == 0
    assert (change["schema"], change["track"], change["changed"]) == (
        "telemetry.FeedbackEvent",
        "v1",
        ["mode", "baseline"],
    )
    assert (change["before"]["mode"], change["after"]["mode"]) == ("warn", "strict")
    assert change["warnings"] == []


def test_plan_warns_when_the_canary_is_lowered(repo: Path) -> None:
    """Lowering the canary in force is flagged as a rollback, not refused (exit 0)."""
    edit(repo, "{at: 2026-01-01T00:00:00Z, canary: 25}", "{at: 2026-01-01T00:00:00Z, canary: 5}")
    code, out, _ = run(["plan", "--base", "HEAD", "--at", "2026-06-01T00:00:00Z", "--json"])
    (change,) = json.loads(out)["changes"]
    assert code == 0
    messages = [w["message"] for w in change["warnings"]]
    assert any("20% of keys lowered strict -> warn" in m for m in messages)
    assert any("ramp step already in the past" in m for m in messages)


def test_plan_does_not_flag_a_stricter_rule_with_a_smaller_canary(repo: Path) -> None:
    """warn for all keys -> strict for 5 % (warn for the rest) lowers nobody: no warning."""
    edit(repo, "    mode: warn\n    tracks:", "    mode: strict\n    canary: 5\n    tracks:")
    code, out, _ = run(["plan", "--base", "HEAD", "--at", "2026-06-01T00:00:00Z", "--json"])
    changes = {(c["schema"], c["track"]): c for c in json.loads(out)["changes"]}
    assert code == 0
    assert changes[("telemetry.FeedbackEvent", "v1")]["warnings"] == []


def test_plan_does_not_flag_editing_a_future_ramp_step(repo: Path) -> None:
    """Changing a step still in the future is a change but not a rollback warning."""
    edit(repo, "{at: 2099-01-01T00:00:00Z, canary: 50}", "{at: 2099-01-01T00:00:00Z, canary: 75}")
    code, out, _ = run(["plan", "--base", "HEAD", "--at", "2026-06-01T00:00:00Z", "--json"])
    (change,) = json.loads(out)["changes"]
    assert code == 0
    assert change["changed"] == ["ramp"]
    assert change["warnings"] == []


def test_plan_sample_counts_payloads_that_change_action(repo: Path, tmp_path: Path) -> None:
    """With --sample, invalid payloads moving from logged to rejected are counted per track."""
    # v2 goes from a 25 % canary (ramp step in force) to every key strict
    (repo / "policies" / "t.yaml").write_text(TELEMETRY.split("        canary: 25", maxsplit=1)[0])
    invalid = {"event_id": "not-a-uuid"}
    sample = tmp_path / "sample.jsonl"
    lines = [
        json.dumps(
            {"schema": "telemetry.FeedbackEvent", "track": "v2", "key": f"k{i}", "payload": invalid}
        )
        for i in range(40)
    ]
    sample.write_text("\n".join([*lines, "not json"]) + "\n")
    code, out, _ = run(
        [
            "plan",
            "--base",
            "HEAD",
            "--sample",
            str(sample),
            "--at",
            "2026-06-01T00:00:00Z",
            "--json",
        ]
    )
    result = json.loads(out)["sample"]
    assert code == 0
    assert (result["total"], result["bad_lines"]) == (40, 1)
    moved = {(c["from"], c["to"]): c["count"] for c in result["changes"]}
    assert set(moved) == {("logged", "rejected")}
    assert 0 < moved[("logged", "rejected")] < 40  # the keys that were outside the 25 % canary


def test_plan_github_format_is_a_markdown_table(repo: Path) -> None:
    """--format github writes a Markdown table for a PR comment."""
    edit(repo, "    mode: warn\n", "    mode: off\n")
    code, out, _ = run(["plan", "--base", "HEAD", "--format", "github"])
    assert code == 0
    assert out.startswith("### policy-engine plan")
    assert "| `telemetry.FeedbackEvent` | v1 | mode" in out
    assert "100% of keys lowered warn -> off" in out


def test_plan_with_an_unknown_revision_is_a_usage_error(repo: Path) -> None:
    """A revision git does not know stops plan with exit 2 and git's reason."""
    code, _, err = run(["plan", "--base", "no-such-branch"])
    assert code == 2
    assert "git rev-parse failed" in err


def test_plan_reads_new_policy_files_as_absent_at_the_base(repo: Path) -> None:
    """A policy file added in the working tree shows its rules as changes from the default."""
    (repo / "policies" / "m.yaml").write_text(
        "version: 1\nschemas:\n  marketdata.OHLCVBatch: {mode: strict}\n"
    )
    code, out, _ = run(["plan", "--base", "HEAD", "--json"])
    changes = {(c["schema"], c["track"]): c for c in json.loads(out)["changes"]}
    assert code == 0
    change = changes[("marketdata.OHLCVBatch", "v1")]
    assert change["before"]["rule"] is None
    assert change["after"]["mode"] == "strict"


def test_check_base_adds_ratchet_warnings_without_failing(repo: Path) -> None:
    """`check --base` flags a lowered mode as a warning; exit 0, exit 1 with --strict."""
    edit(repo, "        mode: strict\n", "        mode: warn\n")
    code, out, _ = run(["check", "--base", "HEAD", "--json"])
    result = json.loads(out)
    assert code == 0
    warnings = [p["message"] for p in result["problems"] if p["severity"] == "warning"]
    assert any("25% of keys lowered strict -> warn" in m for m in warnings)
    strict_code, _, _ = run(["check", "--base", "HEAD", "--strict"])
    assert strict_code == 1


# ---------------------------------------------------------------- --fail-on-warning (CI gates)


def test_plan_fail_on_warning_exits_1_on_a_rollback(repo: Path) -> None:
    """`plan --fail-on-warning` exits 1 when the change lowers a canary in force, and still
    prints the plan with its warning."""
    edit(repo, "{at: 2026-01-01T00:00:00Z, canary: 25}", "{at: 2026-01-01T00:00:00Z, canary: 5}")
    args = ["plan", "--base", "HEAD", "--at", "2026-06-01T00:00:00Z"]
    assert run(args)[0] == 0
    code, out, _ = run([*args, "--fail-on-warning"])
    assert code == 1
    assert "warnings (rollbacks?):" in out
    assert "20% of keys lowered strict -> warn" in out


def test_plan_fail_on_warning_passes_a_change_without_rollback(repo: Path) -> None:
    """`plan --fail-on-warning` exits 0 for a change that only raises strictness."""
    edit(repo, "    mode: warn\n", "    mode: strict\n")
    code, out, _ = run(["plan", "--base", "HEAD", "--fail-on-warning"])
    assert code == 0
    assert "telemetry.FeedbackEvent v1: mode, baseline changed" in out


def test_check_base_fail_on_warning_fails_on_rollbacks_only(repo: Path, tmp_path: Path) -> None:
    """`check --base --fail-on-warning` exits 1 on a rollback warning (annotated as an error in
    GitHub format) but not on a registry warning, which only --strict fails on."""
    edit(repo, "        mode: strict\n", "        mode: warn\n")
    code, out, _ = run(["check", "--base", "HEAD", "--fail-on-warning", "--format", "github"])
    assert code == 1
    assert "::error file=policies/t.yaml" in out
    git(repo, "commit", "-qam", "lowered")
    (repo / "policies" / "x.yaml").write_text(
        "version: 1\nschemas:\n  telemetry.Unknown: {mode: warn}\n"
    )
    code, out, _ = run(["check", "--base", "HEAD", "--fail-on-warning"])
    assert code == 0
    assert "schema 'telemetry.Unknown' is not in the registry" in out
    assert run(["check", "--base", "HEAD", "--strict"])[0] == 1


def test_check_fail_on_warning_without_base_is_a_usage_error(repo: Path) -> None:
    """`check --fail-on-warning` without --base exits 2 and says what to use instead."""
    code, _, err = run(["check", "--fail-on-warning"])
    assert code == 2
    assert "--fail-on-warning needs --base" in err
    assert "--strict" in err
