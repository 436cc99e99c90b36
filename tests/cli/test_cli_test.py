"""``policy-engine test``: policy test files run by a real engine, reported as text, JSON, JUnit."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from policy_engine.cli import main

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = str(REPO / "schemas")
POLICIES = str(REPO / "policies")
EXAMPLE_TESTS = REPO / "tests" / "policies"

#: Strict for a 40 % canary of g.S v1 keyed by the payload's id; the registry has g.S v1 and v2.
POLICY = """\
version: 1
schemas:
  g.S:
    tracks:
      v1: {mode: strict, canary: 40, key: id}
      v2:
        mode: strict
        ramp:
          - {at: 2030-01-01T00:00:00Z, canary: 100}
"""
#: Keys inside and outside g.S v1's 40 % canary (salt "g.S:v1": buckets 1858 and 5050).
INSIDE, OUTSIDE = "k3", "k1"


def run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = main(args, stdin=io.BytesIO(), stdout=out, stderr=err, environ=env or {})
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project: policies/ with POLICY, schemas/ with g.S v1 and v2 (n must be an integer)."""
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.yaml").write_text(POLICY)
    for track in ("v1", "v2"):
        (tmp_path / "schemas" / "g.S").mkdir(parents=True, exist_ok=True)
        (tmp_path / "schemas" / "g.S" / f"{track}.json").write_text(
            '{"type": "object", "properties": {"n": {"type": "integer"}, '
            '"ts": {"type": "string", "format": "date-time"}}}'
        )
    (tmp_path / "tests" / "policies").mkdir(parents=True)
    return tmp_path


def common(project: Path) -> list[str]:
    return ["--policies", str(project / "policies"), "--registry", str(project / "schemas")]


def write_cases(project: Path, body: str, name: str = "g.test.yaml") -> Path:
    """A test file under the project's tests/policies holding ``body`` after ``version: 1``."""
    path = project / "tests" / "policies" / name
    path.write_text("version: 1\n" + body)
    return path


ONE_CASE = f"""\
cases:
  - name: inside the canary a bad payload is rejected
    schema: g.S
    track: v1
    payload: {{id: {INSIDE}, n: x}}
    expect: {{in_canary: true, mode: strict, valid: false, action: rejected}}
"""


# ---------------------------------------------------------------- the example project


def test_the_example_projects_policy_tests_pass_from_the_repository_root(monkeypatch):
    """`policy-engine test` run at the repository root finds tests/policies and every case
    of the example project passes (exit 0)."""
    monkeypatch.chdir(REPO)
    code, out, _ = run(["test", "--json"])
    result = json.loads(out)
    assert code == 0, out
    assert result["failed"] == 0
    assert result["passed"] == len(result["cases"]) >= 15
    files = {case["file"] for case in result["cases"]}
    assert files == {"tests/policies/marketdata.test.yaml", "tests/policies/telemetry.test.yaml"}


def test_the_example_pins_aapl_entering_the_canary_on_6_january():
    """The example tests include the rollout fact the issue names, and it holds."""
    file = str(EXAMPLE_TESTS / "marketdata.test.yaml")
    code, out, _ = run(["test", file, "--json", "--policies", POLICIES, "--registry", SCHEMAS])
    cases = {case["name"]: case for case in json.loads(out)["cases"]}
    fact = cases["AAPL is inside the canary from 6 January, when it covers every symbol"]
    assert code == 0
    assert fact["ok"] is True
    assert fact["got"]["in_canary"] is True
    assert fact["got"]["mode"] == "strict"


# ---------------------------------------------------------------- results


def test_a_passing_file_exits_0_and_prints_each_case_with_its_place(project):
    """Every case passes: exit 0, one PASS line per case naming file:line, and a summary."""
    path = write_cases(project, ONE_CASE)
    code, out, _ = run(["test", str(path), *common(project)])
    assert code == 0
    assert f"PASS  {path}:3  inside the canary a bad payload is rejected" in out
    assert "1 passed, 0 failed in 1 file" in out


def test_a_failing_case_exits_1_and_says_where_what_was_expected_and_what_came(project):
    """A wrong expectation fails the run with exit 1: the case's file:line, each differing
    field as expected vs got, and the decision's reason."""
    body = f"""\
cases:
  - name: passes
    schema: g.S
    track: v1
    payload: {{id: {INSIDE}, n: 1}}
    expect: {{action: accepted}}
  - name: outside the canary is expected to be rejected (wrong)
    schema: g.S
    track: v1
    key: {OUTSIDE}
    payload: {{n: x}}
    expect: {{mode: strict, action: rejected, valid: false}}
"""
    path = write_cases(project, body)
    code, out, _ = run(["test", str(path), *common(project)])
    assert code == 1
    assert f"FAIL  {path}:8  outside the canary is expected to be rejected (wrong)" in out
    assert "mode: expected strict, got warn" in out
    assert "action: expected rejected, got logged" in out
    assert "valid: expected" not in out  # that expectation held
    assert "why: g.S v1: rule g.S" in out
    assert "1 passed, 1 failed" in out


def test_verdicts_are_coloured_on_request_and_plain_when_piped(project):
    """`--color always` colours PASS/FAIL and the failures; piped output has no escapes."""
    path = write_cases(project, ONE_CASE)
    _, plain, _ = run(["test", str(path), *common(project)])
    _, coloured, _ = run(["test", str(path), "--color", "always", *common(project)])
    assert "\x1b[" not in plain
    assert "\x1b[" in coloured
    assert "PASS" in coloured


def test_json_output_has_the_documented_shape(project):
    """`--json` prints {passed, failed, cases: [{name, file, line, ok, expected, got}]}, with
    `got` holding every field a case can expect."""
    path = write_cases(project, ONE_CASE)
    code, out, _ = run(["test", str(path), "--json", *common(project)])
    result = json.loads(out)
    assert code == 0
    assert (result["passed"], result["failed"]) == (1, 0)
    (case,) = result["cases"]
    assert {"name", "file", "line", "ok", "expected", "got"} <= case.keys()
    assert case["file"] == str(path)
    assert case["line"] == 3
    assert case["expected"] == {
        "in_canary": True, "mode": "strict", "valid": False, "action": "rejected"
    }  # fmt: skip
    assert case["got"] == case["expected"]


def test_junit_xml_has_one_testcase_per_case_and_a_failure_for_each_failed_case(project):
    """`--junit FILE` writes JUnit XML: testsuites > testsuite per file > testcase per case
    (name, classname, file, line), a <failure> with expected vs got inside a failed one."""
    write_cases(project, ONE_CASE, "a.test.yaml")
    write_cases(
        project,
        f"cases:\n  - name: wrong\n    schema: g.S\n    track: v1\n    key: {OUTSIDE}\n"
        "    payload: {n: x}\n    expect: {action: rejected}\n",
        "b.test.yaml",
    )
    report = project / "out" / "junit.xml"
    code, _, _ = run(
        ["test", str(project / "tests" / "policies"), "--junit", str(report), *common(project)]
    )
    root = ET.parse(report).getroot()
    assert code == 1
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("2", "1", "0")
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [
        str(project / "tests" / "policies" / "a.test.yaml"),
        str(project / "tests" / "policies" / "b.test.yaml"),
    ]
    cases = root.findall("testsuite/testcase")
    assert [c.get("name") for c in cases] == [
        "inside the canary a bad payload is rejected",
        "wrong",
    ]
    assert all(c.get("classname") and c.get("file") and c.get("line") == "3" for c in cases)
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.get("message") == "action: expected rejected, got logged"
    assert suites[1].get("failures") == "1"


def test_junit_xml_of_a_bad_test_file_carries_the_problem_as_an_error(project):
    """With a bad test file nothing runs (exit 2), and the JUnit report says why in an <error>
    rather than being missing."""
    path = write_cases(project, "cases:\n  - name: x\n")
    report = project / "junit.xml"
    code, _, _ = run(["test", str(path), "--junit", str(report), *common(project)])
    root = ET.parse(report).getroot()
    assert code == 2
    assert root.get("errors") == "1"
    error = root.find("testsuite/testcase/error")
    assert error is not None
    assert f"{path}:3:5" in (error.get("message") or "")


# ---------------------------------------------------------------- evaluation


def test_each_case_is_evaluated_at_its_own_time(project):
    """`at` is the evaluation time: the same key is outside g.S v2's ramp before its step and
    inside from it; both cases pass in one run."""
    body = """\
cases:
  - name: before the step
    schema: g.S
    track: v2
    key: any
    at: 2029-12-31T23:59:59Z
    payload: {n: x}
    expect: {in_canary: false, mode: warn, action: logged}
  - name: from the step on
    schema: g.S
    track: v2
    key: any
    at: 2030-01-01T00:00:00+00:00
    payload: {n: x}
    expect: {in_canary: true, mode: strict, action: rejected}
"""
    code, out, _ = run(["test", str(write_cases(project, body)), *common(project)])
    assert code == 0, out


def test_a_payload_file_is_read_relative_to_the_test_file_as_json_or_yaml(project):
    """`payload_file` is resolved against the test file's directory; .json and .yaml both work."""
    folder = project / "tests" / "policies" / "deeper"
    (folder / "payloads").mkdir(parents=True)
    (folder / "payloads" / "bad.json").write_text(json.dumps({"id": INSIDE, "n": "x"}))
    (folder / "payloads" / "bad.yaml").write_text(f"id: {INSIDE}\nn: x\n")
    body = """\
cases:
  - name: json
    schema: g.S
    track: v1
    payload_file: payloads/bad.json
    expect: {action: rejected}
  - name: yaml
    schema: g.S
    track: v1
    payload_file: payloads/bad.yaml
    expect: {action: rejected}
"""
    (folder / "f.test.yaml").write_text("version: 1\n" + body)
    code, out, _ = run(["test", str(folder / "f.test.yaml"), *common(project)])
    assert code == 0, out


def test_payloads_read_as_json_would_be_unquoted_times_stay_text_and_off_is_a_mode(project):
    """An unquoted time in a payload is a string (it passes `format: date-time`), and `mode: off`
    written unquoted expects the mode off (YAML 1.2, as in policy files)."""
    (project / "policies" / "q.yaml").write_text("version: 1\nschemas:\n  g.Off:\n    mode: off\n")
    (project / "schemas" / "g.Off").mkdir()
    (project / "schemas" / "g.Off" / "v1.json").write_text("{}")
    body = f"""\
cases:
  - name: a time is text
    schema: g.S
    track: v1
    payload: {{id: {INSIDE}, ts: 2026-11-20T00:20:21.035Z}}
    expect: {{valid: true, action: accepted}}
  - name: off
    schema: g.Off
    payload: {{}}
    expect: {{mode: off, valid: null, action: skipped}}
"""
    code, out, _ = run(["test", str(write_cases(project, body)), *common(project)])
    assert code == 0, out


def test_merge_keys_make_payload_variants_and_a_written_key_overrides_a_merged_one(project):
    """A payload may merge an anchored one (`<<: *base`) and override a field of it."""
    body = f"""\
cases:
  - name: base
    schema: g.S
    track: v1
    payload: &base {{id: {INSIDE}, n: 1}}
    expect: {{action: accepted}}
  - name: variant
    schema: g.S
    track: v1
    payload: {{<<: *base, n: x}}
    expect: {{action: rejected}}
"""
    code, out, _ = run(["test", str(write_cases(project, body)), *common(project)])
    assert code == 0, out


def test_guardrails_do_not_carry_over_between_cases(project):
    """Cases are independent: a guardrail that would trip after one rejection never turns
    the next case's strict into warn."""
    (project / "policies" / "p.yaml").write_text(
        "version: 1\nschemas:\n  g.S:\n    mode: strict\n"
        "    guardrail: {max_reject_rate: 0.01, min_samples: 1, window: 1h, cooldown: 1h}\n"
    )
    case = "  - name: rejected {0}\n    schema: g.S\n    track: v1\n    payload: {{n: x}}\n" \
        "    expect: {{mode: strict, action: rejected}}\n"  # fmt: skip
    body = "cases:\n" + "".join(case.format(i) for i in range(3))
    code, out, _ = run(["test", str(write_cases(project, body)), *common(project)])
    assert code == 0, out


def test_a_directory_is_searched_for_test_files_at_any_depth_skipping_hidden_ones(project):
    """A directory contributes its *.test.yaml/*.test.yml files at any depth, in sorted order;
    other YAML files and hidden directories are not read."""
    root = project / "tests" / "policies"
    write_cases(project, ONE_CASE, "b.test.yml")
    (root / "sub").mkdir()
    (root / "sub" / "a.test.yaml").write_text("version: 1\n" + ONE_CASE)
    (root / "payload.yaml").write_text("not: a test file\n")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.test.yaml").write_text("broken: [")
    code, out, _ = run(["test", str(root), "--json", *common(project)])
    files = [case["file"] for case in json.loads(out)["cases"]]
    assert code == 0
    assert files == [str(root / "b.test.yml"), str(root / "sub" / "a.test.yaml")]


def test_the_default_path_is_tests_policies_of_the_current_directory(project, monkeypatch):
    """With no PATH, tests/policies under the current directory is read, and the policies
    and registry come from the defaults (policies/, schemas/) like every command."""
    write_cases(project, ONE_CASE)
    monkeypatch.chdir(project)
    code, out, _ = run(["test"])
    assert code == 0, out
    assert "PASS  tests/policies/g.test.yaml:3" in out


# ---------------------------------------------------------------- bad test files


BAD_FILES = [
    pytest.param("version: 2\ncases: []\n", "1:10", "version: 2 is not 1", id="version"),
    pytest.param("cases: []\n", "1:1", "'version: 1' is required", id="no-version"),
    pytest.param("version: 1\n", "1:1", "'cases' is required", id="no-cases"),
    pytest.param(
        "version: 1\ncase: []\n", "2:1", "unknown field 'case' (did you mean 'cases'?)", id="field"
    ),
    pytest.param(
        "version: 1\ncases:\n  - name: a\n    schema: g.S\n    payload: {}\n"
        "    expect: {mode: strcit}\n",
        "6:20",
        "case 'a': expect.mode: 'strcit' is not one of off, warn, strict (did you mean 'strict'?)",
        id="mode-value",
    ),
    pytest.param(
        "version: 1\ncases:\n  - name: a\n    schema: g.S\n    payload: {}\n"
        "    expect: {actoin: rejected}\n",
        "6:14",
        "unknown field 'actoin' (did you mean 'action'?); allowed: mode, action, valid, in_canary",
        id="expect-field",
    ),
    pytest.param(
        "version: 1\ncases:\n  - name: a\n    schema: g.S\n    expect: {valid: true}\n",
        "3:5",
        "case 'a': write either 'payload' or 'payload_file', not neither of them",
        id="no-payload",
    ),
    pytest.param(
        "version: 1\ncases:\n  - name: a\n    schema: g.S\n    payload: {}\n"
        "    payload_file: p.json\n    expect: {valid: true}\n",
        "3:5",
        "not both 'payload' and 'payload_file'",
        id="two-payloads",
    ),
    pytest.param(
        "version: 1\ncases:\n  - name: a\n    schema: g.S\n    payload: {n: .nan}\n"
        "    expect: {valid: true}\n",
        "5:18",
        "case 'a': payload.n: nan is not a JSON number",
        id="nan",
    ),
    pytest.param(
        "version: 1\ncases:\n  - name: a\n    schema: g.S\n    at: 2030-01-01T00:00:00\n"
        "    payload: {}\n    expect: {valid: true}\n",
        "5:9",
        "case 'a': at: '2030-01-01T00:00:00' has no offset",
        id="at-offset",
    ),
    pytest.param(
        "version: 1\ncases:\n  - name: a\n    schema: g.S\n    payload: {}\n"
        "    payload_file: nope.json\n    expect: {valid: true}\n"
        "  - name: a\n    schema: g.S\n    payload: {}\n    expect: {valid: true}\n",
        "3:5",
        "not both",
        id="first-case-bad",
    ),
    pytest.param(
        "version: 1\ncases:\n  - name: a\n    schema: g.S\n    payload: {}\n"
        "    expect: {valid: true}\n"
        "  - name: a\n    schema: g.S\n    payload: {}\n    expect: {valid: true}\n",
        "7:5",
        "case 'a': the name is used twice (first at line 3)",
        id="duplicate-name",
    ),
    pytest.param(
        "version: 1\ncases:\n  - name: a\n    name: b\n",
        "4:5",
        "duplicate key 'name'",
        id="dup-key",
    ),
    pytest.param("version: 1\ncases: [\n", "3:1", "invalid YAML", id="yaml-syntax"),
    pytest.param("", "1:1", "the file is empty", id="empty"),
]


@pytest.mark.parametrize(("text", "where", "message"), BAD_FILES)
def test_a_bad_test_file_exits_2_with_the_problem_at_file_line_column(
    project, text, where, message
):
    """Each way a test file can be wrong is reported as file:line:col with words to act on,
    and no case runs (exit 2)."""
    path = project / "tests" / "policies" / "bad.test.yaml"
    path.write_text(text)
    code, out, _ = run(["test", str(path), *common(project)])
    assert code == 2
    assert f"{path}:{where}: " in out
    assert message in out
    assert "no case was run" in out


def test_every_problem_of_every_file_is_reported_in_one_run(project):
    """Two bad files with two problems each: all four are printed, in file order."""
    for name in ("a", "b"):
        write_cases(
            project, "cases:\n  - name: x\n    schema: 3\n    extra: 1\n", f"{name}.test.yaml"
        )
    code, out, _ = run(["test", str(project / "tests" / "policies"), *common(project)])
    lines = [line for line in out.splitlines() if ".test.yaml:" in line]
    assert code == 2
    assert len(lines) == 2 * 4  # schema not text, unknown field, no payload, no expect
    assert lines[0].startswith(str(project / "tests" / "policies" / "a.test.yaml"))
    assert lines[-1].startswith(str(project / "tests" / "policies" / "b.test.yaml"))


def test_an_unknown_schema_or_track_is_a_bad_test_file_with_a_suggestion(project):
    """A case naming a schema or track neither the registry nor an exact policy entry knows
    stops the run (exit 2) with did-you-mean, rather than testing the global default."""
    body = """\
cases:
  - name: typo
    schema: g.Ss
    payload: {}
    expect: {mode: warn}
  - name: track
    schema: g.S
    track: v3
    payload: {}
    expect: {mode: warn}
"""
    path = write_cases(project, body)
    code, out, _ = run(["test", str(path), *common(project)])
    assert code == 2
    assert f"{path}:4:13: case 'typo': unknown schema 'g.Ss' (did you mean 'g.S'?)" in out
    assert f"{path}:9:12: case 'track': unknown track 'v3' of g.S (it has v1, v2)" in out


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        pytest.param(["nope"], "nope: no such file or directory", id="missing"),
        pytest.param(["tests"], "no policy test files (*.test.yaml) found here", id="empty-dir"),
    ],
)
def test_nothing_to_run_exits_2(project, monkeypatch, paths, message):
    """A missing path, or a directory with no test file, is a usage error (exit 2), so a
    mistyped path in CI cannot pass by running nothing."""
    monkeypatch.chdir(project)
    code, out, _ = run(["test", *paths])
    assert code == 2
    assert message in out


def test_policies_that_do_not_load_stop_the_run_with_exit_2(project):
    """A policy set with an error is reported (as by every command) and no case runs."""
    (project / "policies" / "p.yaml").write_text("version: 1\nschemas:\n  g.S: {mode: loud}\n")
    path = write_cases(project, ONE_CASE)
    code, out, err = run(["test", str(path), *common(project)])
    assert code == 2
    assert "policy set does not load" in err
    assert out == ""
