"""The command line, driven as a function of (arguments, streams, environment)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import mmh3
import pytest

from policy_engine.cli import main

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = str(REPO / "schemas")
POLICIES = str(REPO / "policies")


def run(
    args: list[str], stdin: bytes = b"", env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = main(args, stdin=io.BytesIO(stdin), stdout=out, stderr=err, environ=env or {})
    return code, out.getvalue(), err.getvalue()


def bucket(salt: str, key: str) -> int:
    """SPEC §3.5 written out independently of the engine."""
    return (mmh3.hash(f"{salt}:{key}".encode(), 0, signed=False) * 10000) >> 32


def key_in(salt: str, threshold: int, inside: bool) -> str:
    """A key whose bucket is inside (or outside) the first ``threshold`` buckets."""
    for i in range(100_000):
        key = f"k{i}"
        if (bucket(salt, key) < threshold) == inside:
            return key
    raise AssertionError("no key found")


STRICT_POLICY = """\
version: 1
schemas:
  telemetry.FeedbackEvent:
    tracks:
      v2: {mode: strict, canary: 40, key: source.id}
"""


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """A policy directory with one strict canary rule."""
    (tmp_path / "p.yaml").write_text(STRICT_POLICY)
    return tmp_path


def common(policy_dir: Path) -> list[str]:
    return ["--policies", str(policy_dir), "--registry", SCHEMAS]


# ---------------------------------------------------------------- check


def test_check_passes_on_the_example_policies() -> None:
    """`check` on the repo's own policies exits 0 with no problems."""
    code, out, _ = run(["check", POLICIES, "--registry", SCHEMAS, "--json"])
    result = json.loads(out)
    assert code == 0
    assert result["ok"] is True
    assert result["problems"] == []


def test_check_reports_every_error_with_file_line_column(tmp_path: Path) -> None:
    """Two errors in two files are both reported as file:line:col and the exit code is 1."""
    (tmp_path / "a.yaml").write_text("version: 1\nschemas:\n  x.Y:\n    mode: loud\n")
    (tmp_path / "b.yaml").write_text("version: 1\nschemas:\n  x.Z:\n    canary: 150\n")
    code, out, _ = run(["check", str(tmp_path), "--registry", SCHEMAS])
    assert code == 1
    assert f"{tmp_path / 'a.yaml'}:4:11: " in out
    assert "mode" in out.splitlines()[0]
    assert f"{tmp_path / 'b.yaml'}:4:13: " in out
    assert "between 0 and 100" in out


def test_check_json_lists_problems_with_their_fields(tmp_path: Path) -> None:
    """`check --json` gives ok=false and each problem's file, line, column, message, severity."""
    (tmp_path / "a.yaml").write_text("version: 2\n")
    code, out, _ = run(["check", str(tmp_path), "--registry", SCHEMAS, "--json"])
    result = json.loads(out)
    assert code == 1
    assert result["ok"] is False
    (problem,) = result["problems"]
    assert problem["file"].endswith("a.yaml")
    assert (problem["line"], problem["column"], problem["severity"]) == (1, 10, "error")
    assert "version" in problem["message"]


def test_check_github_format_writes_annotations(tmp_path: Path) -> None:
    """`--format github` writes ::error annotations with file, line and col."""
    (tmp_path / "a.yaml").write_text("version: 1\nschemas:\n  x.Y: {colour: red}\n")
    code, out, _ = run(["check", str(tmp_path), "--registry", SCHEMAS, "--format", "github"])
    assert code == 1
    line = out.strip().splitlines()[0]
    assert line.startswith("::error file=")
    assert ",line=3,col=9::" in line
    assert "colour" in line


def test_check_warns_about_schemas_and_tracks_the_registry_does_not_know(tmp_path: Path) -> None:
    """Unknown schema or track is a warning: exit 0, but exit 1 with --strict."""
    (tmp_path / "a.yaml").write_text(
        "version: 1\nschemas:\n  nope.Missing: {mode: warn}\n"
        "  marketdata.OHLCVBatch:\n    tracks:\n      v9: {mode: warn}\n"
    )
    code, out, _ = run(["check", str(tmp_path), "--registry", SCHEMAS, "--json"])
    problems = json.loads(out)["problems"]
    assert code == 0
    assert {p["severity"] for p in problems} == {"warning"}
    messages = " ".join(p["message"] for p in problems)
    assert "nope.Missing" in messages
    assert "v9" in messages
    strict_code, _, _ = run(["check", str(tmp_path), "--registry", SCHEMAS, "--strict"])
    assert strict_code == 1


# ---------------------------------------------------------------- schema


def test_schema_prints_a_json_schema_that_validates_the_examples() -> None:
    """`schema` prints a JSON Schema, equal to the committed docs/policy.schema.json."""
    code, out, _ = run(["schema"])
    printed = json.loads(out)
    assert code == 0
    assert printed["type"] == "object"
    assert "version" in printed["required"]
    committed = json.loads((REPO / "docs" / "policy.schema.json").read_text())
    assert printed == committed, "docs/policy.schema.json is stale: regenerate it"


# ---------------------------------------------------------------- explain


def test_explain_json_gives_rule_bucket_and_mode(policy_dir: Path) -> None:
    """`explain --json` reports the rule's place, the canary, the key's bucket and its mode."""
    salt = "telemetry.FeedbackEvent:v2"
    inside = key_in(salt, 4000, inside=True)
    code, out, _ = run(
        ["explain", "telemetry.FeedbackEvent", "--key", inside, "--json", *common(policy_dir)]
    )
    result = json.loads(out)
    assert code == 0
    assert result["track"] == "v2"
    assert result["canary"] == 40
    assert result["bucket"] == bucket(salt, inside)
    assert result["in_canary"] is True
    assert result["mode"] == "strict"
    assert result["baseline"] == "warn"
    assert result["rule"] == {"file": str(policy_dir / "p.yaml"), "line": 5}


def test_explain_text_names_the_mode_for_a_key_outside_the_canary(policy_dir: Path) -> None:
    """A key outside the canary gets the baseline, and the text says so."""
    outside = key_in("telemetry.FeedbackEvent:v2", 4000, inside=False)
    code, out, _ = run(
        ["explain", "telemetry.FeedbackEvent", "--key", outside, *common(policy_dir)]
    )
    assert code == 0
    assert "outside the canary" in out
    assert "mode:      warn" in out


def test_explain_at_a_time_uses_the_ramp_step_in_force(tmp_path: Path) -> None:
    """`--at` picks the ramp step in force at that time."""
    (tmp_path / "p.yaml").write_text(
        "version: 1\nschemas:\n  telemetry.FeedbackEvent:\n    mode: strict\n    ramp:\n"
        "      - {at: 2026-12-01T00:00:00Z, canary: 10}\n"
        "      - {at: 2026-12-08T00:00:00Z, canary: 50}\n"
    )
    args = ["explain", "telemetry.FeedbackEvent", "--json", *common(tmp_path)]
    before = json.loads(run([*args, "--at", "2026-11-30T23:59:59Z"])[1])
    first = json.loads(run([*args, "--at", "2026-12-01T00:00:00Z"])[1])
    second = json.loads(run([*args, "--at", "2026-12-09T00:00:00+01:00"])[1])
    assert (before["canary"], first["canary"], second["canary"]) == (0, 10, 50)


def test_explain_rejects_a_time_without_offset(policy_dir: Path) -> None:
    """An --at without an offset is a usage error (exit 2) that says why."""
    code, _, err = run(
        ["explain", "telemetry.FeedbackEvent", "--at", "2026-12-01T00:00:00", *common(policy_dir)]
    )
    assert code == 2
    assert "offset" in err


# ---------------------------------------------------------------- validate

VALID_V2 = {
    "event_id": "6f1c0a7e-3c55-4d2b-9a57-2b1a1f0c9d11",
    "source": {"id": "p-1", "kind": "service"},
}


def feedback_v2(**overrides: object) -> dict[str, object]:
    """A valid telemetry.FeedbackEvent v2 payload taken from the example feed."""
    for line in (REPO / "examples" / "feed.jsonl").open():
        try:
            env = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(env, dict)
            and env.get("schema") == "telemetry.FeedbackEvent"
            and env.get("track") in (None, "v2")
            and isinstance(env.get("payload"), dict)
            and "source" in env["payload"]
        ):
            payload = dict(env["payload"])
            payload.update(overrides)
            return payload
    raise AssertionError("no FeedbackEvent v2 in the feed")


def test_validate_rejects_an_invalid_payload_inside_the_strict_canary(policy_dir: Path) -> None:
    """An invalid payload whose key is inside the canary is rejected: exit 1, JSON decision."""
    inside = key_in("telemetry.FeedbackEvent:v2", 4000, inside=True)
    payload = feedback_v2(event_id="not-a-uuid")
    code, out, _ = run(
        [
            "validate",
            "telemetry.FeedbackEvent",
            "-",
            "--key",
            inside,
            "--json",
            *common(policy_dir),
        ],
        stdin=json.dumps(payload).encode(),
    )
    decision = json.loads(out)
    assert code == 1
    assert decision["action"] == "rejected"
    assert decision["mode"] == "strict"
    assert decision["valid"] is False
    assert {"path": "/event_id", "keyword": "format"}.items() <= decision["violations"][0].items()
    assert set(decision) >= {
        "schema", "track", "mode", "valid", "action", "violations", "rule", "bucket",
        "canary", "key_source", "policy_checksum",
    }  # fmt: skip


def test_validate_logs_an_invalid_payload_outside_the_canary(
    policy_dir: Path, tmp_path: Path
) -> None:
    """The same invalid payload with a key outside the canary is logged: exit 0."""
    outside = key_in("telemetry.FeedbackEvent:v2", 4000, inside=False)
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(feedback_v2(event_id="not-a-uuid")))
    code, out, _ = run(
        ["validate", "telemetry.FeedbackEvent", str(path), "--key", outside, *common(policy_dir)]
    )
    assert code == 0
    assert out.startswith("LOGGED: telemetry.FeedbackEvent v2 in warn mode")
    assert "/event_id: [format]" in out


def test_validate_accepts_a_valid_payload(policy_dir: Path) -> None:
    """A valid payload is accepted with exit 0 whatever its bucket."""
    code, out, _ = run(
        ["validate", "telemetry.FeedbackEvent", "-", "--json", *common(policy_dir)],
        stdin=json.dumps(feedback_v2()).encode(),
    )
    assert code == 0
    assert json.loads(out)["action"] == "accepted"


@pytest.mark.parametrize(
    ("stdin", "message"),
    [(b"{not json", "not JSON"), (b"[" * 100_000, "nests too deeply")],
)
def test_validate_reports_unreadable_input_without_a_traceback(
    policy_dir: Path, stdin: bytes, message: str
) -> None:
    """Input that is not JSON is a usage error (exit 2) with a one-line reason."""
    code, out, err = run(
        ["validate", "telemetry.FeedbackEvent", "-", *common(policy_dir)], stdin=stdin
    )
    assert code == 2
    assert out == ""
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_validate_refuses_nan_and_infinity_as_not_json_saying_where(
    policy_dir: Path, tmp_path: Path, constant: str
) -> None:
    """A payload file holding NaN or Infinity is not JSON: exit 2 naming the file, the constant,
    and its line and column; nothing is evaluated."""
    payload = tmp_path / "payload.json"
    payload.write_text('{"event_id": "NaN",\n "rating": ' + constant + "}\n")
    code, out, err = run(["validate", "telemetry.FeedbackEvent", str(payload), *common(policy_dir)])
    assert code == 2
    assert out == ""
    assert err == (
        f"policy-engine validate: {payload}: not JSON: {constant} is not a JSON value: "
        "line 2 column 12 (char 31)\n"
    )


def test_validate_a_missing_file_is_a_usage_error(policy_dir: Path) -> None:
    """A FILE that does not exist gives exit 2 naming it."""
    code, _, err = run(
        ["validate", "telemetry.FeedbackEvent", "/nonexistent/p.json", *common(policy_dir)]
    )
    assert code == 2
    assert "/nonexistent/p.json" in err


def test_commands_stop_with_exit_2_when_the_policies_do_not_load(tmp_path: Path) -> None:
    """A broken policy set stops evaluate-type commands with its problems on stderr."""
    (tmp_path / "p.yaml").write_text("version: 1\nschemas:\n  x.Y: {mode: loud}\n")
    code, out, err = run(["explain", "x.Y", *common(tmp_path)])
    assert code == 2
    assert out == ""
    assert "p.yaml:3:" in err


# ---------------------------------------------------------------- replay


def write_feed(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_replay_json_counts_actions_per_schema_and_track(policy_dir: Path, tmp_path: Path) -> None:
    """`replay --json` tallies each action per (schema, track) and folds array indices in paths."""
    inside = key_in("telemetry.FeedbackEvent:v2", 4000, inside=True)
    outside = key_in("telemetry.FeedbackEvent:v2", 4000, inside=False)
    good = feedback_v2()
    bad = feedback_v2(event_id="nope")
    lines = [
        json.dumps({"schema": "telemetry.FeedbackEvent", "key": inside, "payload": good}),
        json.dumps({"schema": "telemetry.FeedbackEvent", "key": inside, "payload": bad}),
        json.dumps({"schema": "telemetry.FeedbackEvent", "key": outside, "payload": bad}),
        json.dumps({"schema": "telemetry.FeedbackEvent", "key": outside, "payload": bad}),
        json.dumps({"schema": "telemetry.RateAdjustment", "track": "v9", "payload": {}}),
    ]
    feed = write_feed(tmp_path / "feed.jsonl", lines)
    code, out, _ = run(["replay", str(feed), "--json", *common(policy_dir)])
    result = json.loads(out)
    assert code == 0
    assert (result["total"], result["bad_lines"]) == (5, 0)
    groups = {(g["schema"], g["track"]): g for g in result["groups"]}
    fb = groups[("telemetry.FeedbackEvent", "v2")]
    assert (fb["total"], fb["accepted"], fb["rejected"], fb["logged"], fb["skipped"]) == (
        4,
        1,
        1,
        2,
        0,
    )
    assert fb["top_paths"] == [{"path": "/event_id", "keyword": "format", "count": 3}]
    # an unknown track has no schema: on_registry_error defaults to allow -> skipped
    assert groups[("telemetry.RateAdjustment", "v9")]["skipped"] == 1


def test_replay_counts_and_reports_bad_lines_with_their_numbers(
    policy_dir: Path, tmp_path: Path
) -> None:
    """Bad envelopes are counted and named by line number on stderr; no traceback; exit 0."""
    good = json.dumps({"schema": "telemetry.FeedbackEvent", "payload": feedback_v2()})
    lines = [good, "{oops", "[1, 2]", '{"schema": "x.Y"}', '{"payload": {}}', "", good]
    feed = write_feed(tmp_path / "feed.jsonl", lines)
    code, out, err = run(["replay", str(feed), "--json", *common(policy_dir)])
    result = json.loads(out)
    assert code == 0
    assert (result["total"], result["bad_lines"]) == (2, 4)
    for number in (2, 3, 4, 5):
        assert f"feed.jsonl:{number}: bad line skipped" in err
    assert "feed.jsonl:6:" not in err  # a blank line is not bad, just empty
    assert "Traceback" not in err


def test_replay_counts_nan_as_a_bad_line_saying_where(policy_dir: Path, tmp_path: Path) -> None:
    """A line holding NaN is a bad line, its reason naming the constant and its column."""
    good = json.dumps({"schema": "telemetry.FeedbackEvent", "payload": feedback_v2()})
    nan = '{"schema": "telemetry.FeedbackEvent", "payload": {"rating": NaN}}'
    feed = write_feed(tmp_path / "feed.jsonl", [good, nan])
    code, out, err = run(["replay", str(feed), "--json", *common(policy_dir)])
    result = json.loads(out)
    assert code == 0
    assert (result["total"], result["bad_lines"]) == (1, 1)
    assert (
        "feed.jsonl:2: bad line skipped: not JSON (NaN is not a JSON value: line 1 column 61 "
        "(char 60))" in err
    )


def test_replay_folds_array_indices_in_failing_paths(tmp_path: Path) -> None:
    """Violations at /bars/0/close and /bars/7/close are one path /bars/*/close, one payload."""
    (tmp_path / "p.yaml").write_text(
        "version: 1\nschemas:\n  marketdata.OHLCVBatch: {mode: warn}\n"
    )
    feed_lines = []
    for line in (REPO / "examples" / "feed.jsonl").open():
        try:
            env = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(env, dict)
            and env.get("schema") == "marketdata.OHLCVBatch"
            and "payload" in env
        ):
            payload = env["payload"]
            if len(payload.get("bars", [])) >= 8:
                payload["bars"][0]["close"] = -1
                payload["bars"][7]["close"] = -2
                feed_lines.append(
                    json.dumps({"schema": "marketdata.OHLCVBatch", "payload": payload})
                )
                break
    feed = write_feed(tmp_path / "feed.jsonl", feed_lines)
    code, out, _ = run(
        ["replay", str(feed), "--json", "--policies", str(tmp_path), "--registry", SCHEMAS]
    )
    (group,) = json.loads(out)["groups"]
    assert code == 0
    assert {"path": "/bars/*/close", "keyword": "exclusiveMinimum", "count": 1} in group[
        "top_paths"
    ]


def test_replay_table_shows_counts_and_top_paths(policy_dir: Path, tmp_path: Path) -> None:
    """The text table has a header, a row per group and the failing paths under it."""
    bad = feedback_v2(event_id="nope")
    feed = write_feed(
        tmp_path / "feed.jsonl",
        [json.dumps({"schema": "telemetry.FeedbackEvent", "payload": bad})] * 3,
    )
    code, out, _ = run(["replay", str(feed), *common(policy_dir)])
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == [
        "schema", "track", "total", "invalid", "accepted", "logged", "rejected", "skipped",
    ]  # fmt: skip
    row = lines[2].split()
    assert row[:4] == ["telemetry.FeedbackEvent", "v2", "3", "3"]
    assert lines[3].split() == ["3", "/event_id", "[format]"]
    assert "3 envelope(s) evaluated, 0 bad line(s)" in lines


def test_replay_progress_bar_only_when_asked_or_on_a_terminal(
    policy_dir: Path, tmp_path: Path
) -> None:
    """No progress bar on a non-terminal by default; `--progress always` draws one."""
    feed = write_feed(
        tmp_path / "feed.jsonl",
        [json.dumps({"schema": "telemetry.FeedbackEvent", "payload": feedback_v2()})] * 5,
    )
    _, _, quiet = run(["replay", str(feed), *common(policy_dir)])
    _, _, noisy = run(["replay", str(feed), "--progress", "always", *common(policy_dir)])
    assert quiet == ""
    assert "100%" in noisy
    assert "5 lines" in noisy


def test_replay_of_a_missing_file_is_a_usage_error(policy_dir: Path) -> None:
    """A feed that does not exist gives exit 2 naming it."""
    code, _, err = run(["replay", "/nonexistent/feed.jsonl", *common(policy_dir)])
    assert code == 2
    assert "/nonexistent/feed.jsonl" in err


# ---------------------------------------------------------------- the program itself


def test_help_of_every_command_exits_0() -> None:
    """Every command answers --help with exit 0 and a usage line."""
    for command in ("check", "schema", "explain", "validate", "replay"):
        out = io.StringIO()
        code = main([command, "--help"], stdout=out, stderr=io.StringIO(), environ={})
        assert code == 0


def test_unknown_command_is_a_usage_error() -> None:
    """An unknown command exits 2."""
    code, _, _ = run(["frobnicate"])
    assert code == 2


def test_bad_environment_is_reported_as_a_usage_error(policy_dir: Path) -> None:
    """A bad env value (POLICY_FORCE_MODE=strict) stops the command with exit 2 naming it."""
    code, _, err = run(["explain", "x.Y", *common(policy_dir)], env={"POLICY_FORCE_MODE": "strict"})
    assert code == 2
    assert "POLICY_FORCE_MODE" in err


def test_python_dash_m_engine_runs_the_cli() -> None:
    """`python -m policy_engine schema` works as a separate process."""
    result = subprocess.run(
        [sys.executable, "-m", "policy_engine", "schema"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0
    assert json.loads(result.stdout)["title"] == "policy-engine policy file"


def test_explain_rejects_a_time_that_is_not_rfc3339(policy_dir: Path) -> None:
    """`--at yesterday` is a usage error that shows the expected form."""
    code, _, err = run(
        ["explain", "telemetry.FeedbackEvent", "--at", "yesterday", *common(policy_dir)]
    )
    assert code == 2
    assert "RFC 3339" in err
    assert "2026-12-01T00:00:00Z" in err


def test_every_command_takes_policies_and_registry(capsys: pytest.CaptureFixture[str]) -> None:
    """SPEC §6: --policies and --registry are accepted after every command's name."""
    code, out, _ = run(["schema", "--policies", POLICIES, "--registry", SCHEMAS])
    assert code == 0
    assert json.loads(out)["title"] == "policy-engine policy file"
    for command in ("check", "schema", "explain", "validate", "replay", "plan", "consume"):
        assert main([command, "--help"], environ={}) == 0
        help_text = capsys.readouterr().out  # argparse prints --help to sys.stdout
        assert "--policies" in help_text, command
        assert "--registry" in help_text, command


# ---------------------------------------------------------------- typos fail loudly


def test_validate_of_an_unknown_schema_exits_2_with_the_nearest_name(policy_dir: Path) -> None:
    """A misspelt schema is not SKIPPED with exit 0: exit 2, naming the schema it resembles."""
    code, out, err = run(
        ["validate", "telemetry.FeedbakEvent", "-", *common(policy_dir)], stdin=b"{}"
    )
    assert code == 2
    assert out == ""
    assert (
        "unknown schema 'telemetry.FeedbakEvent' (did you mean 'telemetry.FeedbackEvent'?)" in err
    )


def test_explain_of_an_unknown_schema_exits_2_with_the_nearest_name(policy_dir: Path) -> None:
    """`explain` of a misspelt schema does not answer a confident mode: exit 2, did you mean."""
    code, out, err = run(["explain", "marketdata.TradeEvnt", *common(policy_dir)])
    assert code == 2
    assert out == ""
    assert "unknown schema 'marketdata.TradeEvnt' (did you mean 'marketdata.TradeEvent'?)" in err


def test_an_unknown_schema_with_nothing_near_says_so(policy_dir: Path) -> None:
    """A name like no known one gets no suggestion, and says that no source names it."""
    code, _, err = run(["explain", "zz.Q", *common(policy_dir)])
    assert code == 2
    assert "unknown schema 'zz.Q' (neither the registry nor a policy names it)" in err


def test_an_unknown_track_exits_2_listing_or_suggesting_the_known_ones(policy_dir: Path) -> None:
    """--track v9 lists the schema's tracks; --track V2 suggests v2; both exit 2."""
    code, _, err = run(["explain", "telemetry.FeedbackEvent", "--track", "v9", *common(policy_dir)])
    assert code == 2
    assert "unknown track 'v9' (telemetry.FeedbackEvent has v1, v2)" in err
    code, _, err = run(
        ["validate", "telemetry.FeedbackEvent", "-", "--track", "V2", *common(policy_dir)],
        stdin=b"{}",
    )
    assert code == 2
    assert "unknown track 'V2' (did you mean 'v2'?)" in err


def test_allow_unknown_turns_the_error_into_a_warning(policy_dir: Path) -> None:
    """With --allow-unknown the command warns on stderr and answers as before (exit 0)."""
    code, out, err = run(
        ["explain", "telemetry.FeedbakEvent", "--allow-unknown", "--json", *common(policy_dir)]
    )
    assert code == 0
    assert json.loads(out)["rule"] is None
    assert err.startswith("policy-engine explain: warning: unknown schema 'telemetry.FeedbakEvent'")


def test_names_an_exact_policy_entry_writes_are_known(tmp_path: Path) -> None:
    """A schema and track that only an exact policy entry names (not the registry) pass."""
    (tmp_path / "p.yaml").write_text(
        "version: 1\nschemas:\n  team.NotYetRegistered:\n    tracks:\n      v3: {mode: warn}\n"
    )
    code, out, err = run(
        ["explain", "team.NotYetRegistered", "--track", "v3", "--json", *common(tmp_path)]
    )
    assert (code, err) == (0, "")
    assert json.loads(out)["track"] == "v3"


def test_a_glob_does_not_make_a_name_known(tmp_path: Path) -> None:
    """A glob that would match a misspelt name proves nothing about it: still exit 2."""
    (tmp_path / "p.yaml").write_text("version: 1\nschemas:\n  'telemetry.*': {mode: warn}\n")
    code, _, err = run(["explain", "telemetry.FeedbakEvent", *common(tmp_path)])
    assert code == 2
    assert "did you mean 'telemetry.FeedbackEvent'?" in err


def test_a_track_only_another_rule_writes_is_unknown(tmp_path: Path) -> None:
    """A track written by a glob that does not govern the schema (an exact entry does) and not
    in the registry is unknown for that schema."""
    (tmp_path / "p.yaml").write_text(
        "version: 1\nschemas:\n  'marketdata.*':\n    tracks:\n      v2: {mode: strict}\n"
        "  marketdata.OHLCVBatch: {mode: warn}\n"
    )
    code, _, err = run(["explain", "marketdata.OHLCVBatch", "--track", "v2", *common(tmp_path)])
    assert code == 2
    assert "unknown track 'v2' (marketdata.OHLCVBatch has v1)" in err
    assert run(["explain", "marketdata.TradeEvent", "--track", "v2", *common(tmp_path)])[0] == 0


def test_without_a_registry_listing_no_name_is_ruled_out(policy_dir: Path) -> None:
    """REGISTRY_ENABLED=false: nothing lists the registry, so no name is called a typo."""
    code, _, err = run(
        ["explain", "telemetry.FeedbakEvent", *common(policy_dir)],
        env={"REGISTRY_ENABLED": "false"},
    )
    assert (code, err) == (0, "")


# ---------------------------------------------------------------- replay --gate


def test_replay_gate_exits_1_when_a_verdict_is_not_ready(policy_dir: Path, tmp_path: Path) -> None:
    """--gate exits 1 and names the schema/track above the bar; without --gate exit 0."""
    bad = json.dumps({"schema": "telemetry.FeedbackEvent", "payload": feedback_v2(event_id="x")})
    feed = write_feed(tmp_path / "feed.jsonl", [bad] * 3)
    assert run(["replay", str(feed), *common(policy_dir)])[0] == 0
    code, out, _ = run(["replay", str(feed), "--gate", *common(policy_dir)])
    assert code == 1
    assert out.splitlines()[-1] == (
        "gate: failed: 1 schema/track(s) not ready: telemetry.FeedbackEvent v2"
    )


def test_replay_gate_passes_below_the_bar_and_skips_mode_off(tmp_path: Path) -> None:
    """--gate exits 0 when every validated schema/track is under --bar; a track in mode off is
    listed as not judged, in text and in JSON."""
    (tmp_path / "p.yaml").write_text(
        "version: 1\nschemas:\n  telemetry.FeedbackEvent:\n    tracks:\n"
        "      v1: {mode: 'off'}\n      v2: {mode: warn}\n"
    )
    good = json.dumps({"schema": "telemetry.FeedbackEvent", "payload": feedback_v2()})
    old = json.dumps({"schema": "telemetry.FeedbackEvent", "track": "v1", "payload": {}})
    feed = write_feed(tmp_path / "feed.jsonl", [good, good, old])
    code, out, _ = run(["replay", str(feed), "--gate", *common(tmp_path)])
    assert code == 0
    assert out.splitlines()[-1] == (
        "gate: passed: every schema/track judged is ready "
        "(not judged, mode off: telemetry.FeedbackEvent v1)"
    )
    code, out, _ = run(["replay", str(feed), "--gate", "--json", *common(tmp_path)])
    assert code == 0
    assert json.loads(out)["gate"] == {
        "passed": True,
        "failing": [],
        "not_judged": [{"schema": "telemetry.FeedbackEvent", "track": "v1"}],
    }


def test_replay_gate_follows_the_bar(policy_dir: Path, tmp_path: Path) -> None:
    """One invalid payload in four is 25 %: --bar 30 passes the gate, --bar 20 fails it."""
    good = json.dumps({"schema": "telemetry.FeedbackEvent", "payload": feedback_v2()})
    bad = json.dumps({"schema": "telemetry.FeedbackEvent", "payload": feedback_v2(event_id="x")})
    feed = write_feed(tmp_path / "feed.jsonl", [good, good, good, bad])
    args = ["replay", str(feed), "--gate", "--json", *common(policy_dir)]
    assert run([*args, "--bar", "30"])[0] == 0
    code, out, _ = run([*args, "--bar", "20"])
    assert code == 1
    assert json.loads(out)["gate"]["failing"] == [
        {"schema": "telemetry.FeedbackEvent", "track": "v2"}
    ]


# ---------------------------------------------------------------- usage errors


def test_an_unknown_option_shows_the_commands_usage_and_the_nearest_option() -> None:
    """`check --stirct` prints check's usage (not the top-level one) and suggests --strict."""
    code, out, err = run(["check", "--stirct"])
    assert code == 2
    assert out == ""
    assert err.startswith("usage: policy-engine check ")
    assert err.splitlines()[-1] == (
        "policy-engine check: error: unrecognized arguments: --stirct (did you mean --strict?)"
    )


def test_an_unknown_option_with_a_value_is_matched_by_its_name() -> None:
    """`explain X --trak=v2` suggests --track, with explain's usage."""
    code, _, err = run(["explain", "telemetry.FeedbackEvent", "--trak=v2"])
    assert code == 2
    assert err.startswith("usage: policy-engine explain ")
    assert "(did you mean --track?)" in err


def test_an_unknown_command_suggests_the_nearest_command() -> None:
    """`chekc` exits 2 and asks whether `check` was meant; a name like none lists them."""
    code, _, err = run(["chekc"])
    assert code == 2
    assert err.splitlines()[-1] == (
        "policy-engine: error: unknown command 'chekc' (did you mean 'check'?)"
    )
    _, _, err = run(["zzzz"])
    assert "unknown command 'zzzz' (commands: check, schema, explain," in err


def test_an_invalid_choice_suggests_the_nearest_choice() -> None:
    """`--format jsn` exits 2 with check's usage and suggests 'json'."""
    code, _, err = run(["check", "--format", "jsn"])
    assert code == 2
    assert err.startswith("usage: policy-engine check ")
    assert "invalid choice: 'jsn'" in err
    assert "did you mean 'json'?" in err


def test_help_goes_to_the_stdout_stream_given() -> None:
    """--help writes to the stdout passed to main, not to the process's."""
    code, out, err = run(["replay", "--help"])
    assert (code, err) == (0, "")
    assert out.startswith("usage: policy-engine replay ")
    assert "--gate" in out


def test_no_help_text_cites_the_spec() -> None:
    """Help texts speak for themselves: none refers to a SPEC users do not have."""
    for command in ([], ["check"], ["schema"], ["explain"], ["validate"], ["replay"], ["plan"]):
        code, out, _ = run([*command, "--help"])
        assert code == 0
        assert "SPEC" not in out, command


def test_a_shared_namespace_alone_does_not_make_a_suggestion(policy_dir: Path) -> None:
    """`telemetry.Unknown` is not "near" `telemetry.FeedbackEvent` for sharing `telemetry.`;
    a typo in the namespace still finds the schema."""
    _, _, err = run(["explain", "telemetry.Unknown", *common(policy_dir)])
    assert "unknown schema 'telemetry.Unknown' (neither the registry nor a policy names it)" in err
    _, _, err = run(["explain", "telemetri.FeedbackEvent", *common(policy_dir)])
    assert "(did you mean 'telemetry.FeedbackEvent'?)" in err
