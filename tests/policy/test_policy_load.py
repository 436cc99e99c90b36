"""The policy file loader (SPEC §2): table-driven bad and good files, then cross-file behaviour.

Bad cases live in ``cases/bad/*.yaml``; each carries its expected problems in leading comments,
``# expect: LINE:COL TEXT`` (TEXT is a substring of the message). Good cases live in
``cases/good/``; each carries ``# expect: SCHEMA TRACK ATTR=JSON`` lines checked against the
effective rule.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from policy_engine.core.resolve import rule_for
from policy_engine.errors import PolicyLoadError, Problem
from policy_engine.modes import Mode
from policy_engine.policy.load import PolicyYamlLoader, load_policy_set
from policy_engine.policy.model import policy_json_schema

CASES = Path(__file__).parent / "cases"
REPO = Path(__file__).resolve().parents[2]
BAD = sorted(p for p in (CASES / "bad").iterdir() if p.suffix in (".yaml", ".yml"))
GOOD = sorted(p for p in (CASES / "good").iterdir() if p.suffix in (".yaml", ".yml"))

_BAD_EXPECT = re.compile(r"^# expect: (\d+):(\d+) (.+)$")
_GOOD_EXPECT = re.compile(r"^# expect: (\S+) (\S+) ([\w.]+)=(.+)$")


def _bad_expectations(path: Path) -> list[tuple[int, int, str]]:
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _BAD_EXPECT.match(line)
        if match:
            found.append((int(match[1]), int(match[2]), match[3].strip()))
    return found


def _good_expectations(path: Path) -> list[tuple[str, str, str, Any]]:
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _GOOD_EXPECT.match(line)
        if match:
            found.append((match[1], match[2], match[3], json.loads(match[4])))
    return found


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _errors(exc: PolicyLoadError) -> list[Problem]:
    return [p for p in exc.problems if p.severity == "error"]


def _load_error(paths: list[Path], **kwargs: Any) -> PolicyLoadError:
    with pytest.raises(PolicyLoadError) as info:
        load_policy_set(paths, **kwargs)
    return info.value


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- table: bad files


def test_case_tables_are_populated():
    """The data-driven tables hold the bad and good cases, so an emptied directory cannot pass."""
    assert len(BAD) >= 40
    assert len(GOOD) >= 5
    assert all(_bad_expectations(p) for p in BAD)
    assert all(_good_expectations(p) for p in GOOD)


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_policy_file_reports_each_problem_at_its_place(path: Path):
    """A bad policy file fails to load, reporting just its expected problems at file:line:col."""
    expected = _bad_expectations(path)
    errors = _errors(_load_error([path]))
    for line, column, text in expected:
        assert any(
            p.file == str(path) and (p.line, p.column) == (line, column) and text in p.message
            for p in errors
        ), f"expected {line}:{column} {text!r}; got {[str(p) for p in errors]}"
    assert len(errors) == len(expected), [str(p) for p in errors]


# --------------------------------------------------------------------------- table: good files


def _attr(rule: object, dotted: str) -> Any:
    value = rule
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.stem)
def test_good_policy_file_loads_with_the_written_rules(path: Path):
    """A good policy file loads and each schema/track gets the values its comments promise."""
    policy_set = load_policy_set([path])
    assert policy_set.warnings == ()
    for schema, track, attr, written in _good_expectations(path):
        rule, rival = rule_for(policy_set, schema, track, Mode.WARN)
        actual = _attr(rule, attr)
        expected = [_epoch(t) for t in written] if attr == "ramp_times" else written
        if isinstance(actual, tuple):
            actual = list(actual)
        assert actual == expected, f"{schema} {track} {attr}"
        assert rival is None


def test_bare_off_is_the_mode_off_and_no_is_a_string():
    """``mode: off`` unquoted resolves to ``Mode.OFF`` and ``salt: no`` stays the string "no"."""
    policy_set = load_policy_set([CASES / "good" / "mode_off_unquoted.yaml"])
    rule, _ = rule_for(policy_set, "telemetry.RateAdjustment", "v1", Mode.STRICT)
    assert rule.mode is Mode.OFF
    assert rule.salt == "no"
    assert isinstance(rule.salt, str)


def test_policy_yaml_loader_keeps_yaml_1_2_booleans():
    """``PolicyYamlLoader`` reads true/false as booleans but on/off/yes/no as strings."""
    text = "a: off\nb: on\nc: yes\nd: no\ne: true\nf: False\ng: 1\n"
    assert yaml.load(text, Loader=PolicyYamlLoader) == {
        "a": "off",
        "b": "on",
        "c": "yes",
        "d": "no",
        "e": True,
        "f": False,
        "g": 1,
    }


def test_policy_yaml_loader_is_safe():
    """``PolicyYamlLoader`` refuses Python object tags (a safe loader only)."""
    with pytest.raises(yaml.YAMLError):
        yaml.load("x: !!python/object/apply:os.system ['true']\n", Loader=PolicyYamlLoader)


@pytest.mark.parametrize(
    "value",
    [
        "!!python/object/apply:os.system ['touch {marker}']",
        "!!python/object/apply:os.system {{args: ['touch {marker}']}}",
        "!!python/name:os.system",
    ],
)
def test_python_tags_in_policy_files_are_refused_not_run(tmp_path: Path, value: str):
    """A policy file with a Python object tag is refused and the tag is never executed."""
    marker = tmp_path / "executed"
    path = _write(
        tmp_path / "p.yaml",
        "version: 1\nschemas:\n  a.b:\n    salt: " + value.format(marker=marker) + "\n",
    )
    errors = _errors(_load_error([path]))
    assert [(p.file, p.line) for p in errors] == [(str(path), 4)]
    assert not marker.exists()


# --------------------------------------------------------------------------- cross-file


def test_same_exact_name_in_two_files_names_both_places(tmp_path: Path):
    """The same exact schema name in two files is a load error naming file:line of both."""
    first = _write(tmp_path / "a.yaml", "version: 1\nschemas:\n  telemetry.X:\n    mode: warn\n")
    second = _write(
        tmp_path / "b.yaml", "version: 1\n\nschemas:\n  telemetry.X:\n    mode: strict\n"
    )
    errors = _errors(_load_error([tmp_path]))
    assert len(errors) == 1
    text = str(errors[0])
    assert f"{first}:3:3" in text
    assert f"{second}:4:3" in text


def test_semantic_problems_are_reported_beside_field_errors(tmp_path: Path):
    """An unknown field does not hide an unsorted ramp or a too-strict baseline in the same file."""
    path = _write(
        tmp_path / "a.yaml",
        "version: 1\nschemas:\n  a.b:\n    colour: red\n  a.c:\n    ramp:\n"
        "      - {at: 2026-12-08T00:00:00Z, canary: 10}\n"
        "      - {at: 2026-12-01T00:00:00Z, canary: 50}\n"
        "  a.d: {mode: off, baseline: warn}\n",
    )
    errors = _errors(_load_error([path]))
    assert [(p.line, p.column) for p in errors] == [(4, 5), (8, 14), (9, 30)]
    assert "colour" in errors[0].message
    assert "increasing" in errors[1].message
    assert "stricter" in errors[2].message


def test_same_glob_in_two_files_names_both_places(tmp_path: Path):
    """The same glob in two files is a load error even when no known name matches it."""
    first = _write(tmp_path / "a.yaml", 'version: 1\nschemas:\n  "zz.*":\n    mode: warn\n')
    second = _write(tmp_path / "b.yaml", 'version: 1\nschemas:\n  "zz.*":\n    mode: strict\n')
    errors = _errors(_load_error([tmp_path]))
    assert len(errors) == 1
    text = str(errors[0])
    assert f"{first}:3:3" in text
    assert f"{second}:3:3" in text


def test_several_bad_files_are_all_reported_and_nothing_loads(tmp_path: Path):
    """Problems of every file are reported in one run; a good file beside them is not loaded."""
    _write(tmp_path / "a.yaml", "version: 2\n")
    _write(tmp_path / "b.yaml", "version: 1\nschemas:\n  x.y: {canary: 101}\n")
    _write(tmp_path / "c.yaml", "version: 1\nschemas:\n  x.z: {mode: strict}\n")
    errors = _errors(_load_error([tmp_path]))
    assert {Path(p.file).name for p in errors} == {"a.yaml", "b.yaml"}


TIED_GLOBS = {
    "one.yaml": 'version: 1\nschemas:\n  "a.*":\n    mode: strict\n',
    "two.yaml": 'version: 1\nschemas:\n\n  "*.b":\n    mode: off\n',
}


def _write_tied_globs(root: Path) -> tuple[Path, Path]:
    one = _write(root / "one.yaml", TIED_GLOBS["one.yaml"])
    two = _write(root / "two.yaml", TIED_GLOBS["two.yaml"])
    return one, two


def test_tied_globs_matching_a_known_schema_name_both_places(tmp_path: Path):
    """Two equally specific globs matching a registry-known name are an error naming both."""
    one, two = _write_tied_globs(tmp_path)
    errors = _errors(_load_error([tmp_path], known_schemas=["a.b", "zzz.unrelated"]))
    assert len(errors) == 1
    text = str(errors[0])
    assert f"{one}:3:3" in text
    assert f"{two}:4:3" in text
    assert "'a.b'" in text


def test_tied_globs_matching_a_name_written_exactly_are_an_error(tmp_path: Path):
    """Two equally specific globs matching a name written exactly in the policies are an error."""
    one, two = _write_tied_globs(tmp_path)
    _write(tmp_path / "three.yaml", "version: 1\nschemas:\n  a.b:\n    mode: warn\n")
    text = "\n".join(str(p) for p in _errors(_load_error([tmp_path])))
    assert f"{one}:3:3" in text
    assert f"{two}:4:3" in text


def test_tied_globs_without_a_known_matching_name_load(tmp_path: Path):
    """Tied globs load when no known or written name matches both of them."""
    _write_tied_globs(tmp_path)
    policy_set = load_policy_set([tmp_path], known_schemas=["a.c", "c.b", "x.y"])
    assert sorted(g.pattern for g in policy_set.globs) == ["*.b", "a.*"]


def test_unequal_globs_matching_a_known_name_load(tmp_path: Path):
    """Globs of different specificity that both match a known name are not a conflict."""
    _write(tmp_path / "p.yaml", 'version: 1\nschemas:\n  "a.*": {}\n  "a.b*": {}\n')
    policy_set = load_policy_set([tmp_path], known_schemas=["a.bc"])
    assert len(policy_set.globs) == 2


def _tree(root: Path) -> None:
    _write(root / "telemetry.yaml", "version: 1\nschemas:\n  t.x: {mode: strict}\n")
    _write(root / "sub" / "market.yml", "version: 1\nschemas:\n  m.x: {mode: off}\n")


def test_checksum_is_stable_and_follows_content(tmp_path: Path):
    """The checksum is the same for two loads of the same files and changes with their content."""
    _tree(tmp_path)
    first = load_policy_set([tmp_path]).checksum
    assert load_policy_set([tmp_path]).checksum == first
    _write(tmp_path / "sub" / "market.yml", "version: 1\nschemas:\n  m.x: {mode: warn}\n")
    assert load_policy_set([tmp_path]).checksum != first


def test_checksum_changes_with_a_comment_only_edit(tmp_path: Path):
    """The checksum covers the file bytes, so even a comment edit is a new version."""
    _tree(tmp_path)
    first = load_policy_set([tmp_path]).checksum
    path = tmp_path / "telemetry.yaml"
    path.write_text(path.read_text() + "# reviewed\n")
    assert load_policy_set([tmp_path]).checksum != first


def test_checksum_does_not_depend_on_the_directory(tmp_path: Path):
    """A copy of the policy directory elsewhere has the same checksum."""
    _tree(tmp_path / "here")
    shutil.copytree(tmp_path / "here", tmp_path / "elsewhere" / "deeper")
    assert (
        load_policy_set([tmp_path / "here"]).checksum
        == load_policy_set([tmp_path / "elsewhere" / "deeper"]).checksum
    )


def test_hidden_entries_and_other_files_are_skipped(tmp_path: Path):
    """Hidden files and directories (``..data``, ``.git``) and non-YAML files are not read."""
    _tree(tmp_path)
    garbage = "version: 99\n: : not yaml ["
    _write(tmp_path / "..data" / "p.yaml", garbage)
    _write(tmp_path / ".git" / "p.yaml", garbage)
    _write(tmp_path / ".p.yaml.swp", garbage)
    _write(tmp_path / ".hidden.yaml", garbage)
    _write(tmp_path / "README.md", garbage)
    _write(tmp_path / "p.yaml.bak", garbage)
    _write(tmp_path / "p.json", garbage)
    policy_set = load_policy_set([tmp_path])
    assert sorted(Path(f).name for f in policy_set.files) == ["market.yml", "telemetry.yaml"]


def test_kubernetes_configmap_layout_loads_each_file_once(tmp_path: Path):
    """A ConfigMap mount (files symlinked through ``..data``) defines each rule once."""
    stamp = tmp_path / "..2026_01_01_00_00_00.1"
    _write(stamp / "policy.yaml", "version: 1\nschemas:\n  t.x: {mode: strict}\n")
    (tmp_path / "..data").symlink_to(stamp.name)
    (tmp_path / "policy.yaml").symlink_to("..data/policy.yaml")
    policy_set = load_policy_set([tmp_path])
    assert list(policy_set.exact) == ["t.x"]
    assert len(policy_set.files) == 1


def test_missing_path_is_an_error_unless_missing_ok(tmp_path: Path):
    """A policy path that does not exist is a load error, or an empty set with ``missing_ok``."""
    missing = tmp_path / "nope"
    errors = _errors(_load_error([missing]))
    assert [p.file for p in errors] == [str(missing)]
    policy_set = load_policy_set([missing], missing_ok=True)
    assert policy_set.files == ()
    assert dict(policy_set.exact) == {}
    assert policy_set.globs == ()


def test_several_paths_load_together(tmp_path: Path):
    """Every path of ``POLICY_PATHS`` contributes to one policy set."""
    _write(tmp_path / "a" / "p.yaml", "version: 1\nschemas:\n  t.x: {mode: strict}\n")
    single = _write(tmp_path / "single.yaml", "version: 1\nschemas:\n  t.y: {mode: off}\n")
    policy_set = load_policy_set([tmp_path / "a", single])
    assert sorted(policy_set.exact) == ["t.x", "t.y"]


def test_billion_laughs_is_refused_quickly(tmp_path: Path):
    """An alias bomb is refused with a problem instead of expanding until memory runs out."""
    lines = [
        "version: 1",
        'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
    ]
    for i in range(1, 10):
        refs = ", ".join([f"*l{i - 1}"] * 9)
        lines.append(f"l{i}: &l{i} [{refs}]")
    path = _write(tmp_path / "bomb.yaml", "\n".join(lines) + "\n")
    started = time.monotonic()
    errors = _errors(_load_error([path]))
    assert time.monotonic() - started < 30
    assert [p.file for p in errors] == [str(path)]


def test_recursive_alias_is_refused(tmp_path: Path):
    """A self-referencing YAML alias is refused with a problem, not a crash or a hang."""
    path = _write(tmp_path / "loop.yaml", "version: 1\nschemas: &s\n  a.b: *s\n")
    errors = _errors(_load_error([path]))
    assert [p.file for p in errors] == [str(path)]


def test_file_over_8_mib_is_refused(tmp_path: Path):
    """A policy file larger than 8 MiB is refused before it is parsed."""
    path = tmp_path / "big.yaml"
    path.write_bytes(b"version: 1\n#" + b"x" * (8 * 1024 * 1024))
    errors = _errors(_load_error([path]))
    assert len(errors) == 1
    assert errors[0].file == str(path)
    assert "8 MiB" in errors[0].message


def test_file_of_exactly_8_mib_loads(tmp_path: Path):
    """A policy file of exactly 8 MiB is still read (the limit is inclusive)."""
    head = b"version: 1\n#"
    path = tmp_path / "big.yaml"
    path.write_bytes(head + b"x" * (8 * 1024 * 1024 - len(head) - 1) + b"\n")
    assert path.stat().st_size == 8 * 1024 * 1024
    assert load_policy_set([path]).files == (str(path),)


def test_non_utf8_file_is_a_problem(tmp_path: Path):
    """A file that is not UTF-8 text is reported, not decoded as something else."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes("version: 1\nschemas:\n  t.x: {salt: Zürich}\n".encode("latin-1"))
    errors = _errors(_load_error([path]))
    assert [p.file for p in errors] == [str(path)]
    assert "UTF-8" in errors[0].message


def test_baseline_check_uses_the_global_default_mode(tmp_path: Path):
    """A file baseline of warn is fine under a global warn default and an error under off."""
    path = _write(tmp_path / "p.yaml", "version: 1\ndefaults:\n  baseline: warn\n")
    assert load_policy_set([path], default_mode=Mode.WARN).files == (str(path),)
    errors = _errors(_load_error([path], default_mode=Mode.OFF))
    assert [(p.line, p.column) for p in errors] == [(3, 13)]


def test_load_error_message_lists_each_problem_with_its_place(tmp_path: Path):
    """``str(PolicyLoadError)`` shows every error as file:line:column: message."""
    path = _write(tmp_path / "p.yaml", "version: 1\nschemas:\n  a.b: {colour: red}\n")
    exc = _load_error([path])
    assert f"{path}:3:9: unknown field 'colour'" in str(exc)


# --------------------------------------------------------------------------- JSON Schema


def _yaml_as_json(path: Path) -> Any:
    """A policy file as an editor's YAML language server sees it: timestamps are strings."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, datetime | date):
            return value.isoformat().replace("+00:00", "Z")
        return value

    return plain(yaml.load(path.read_text(encoding="utf-8"), Loader=PolicyYamlLoader))


def _schema_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        policy_json_schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def test_policy_json_schema_is_a_valid_json_schema():
    """The published JSON Schema of the policy format is itself a valid draft 2020-12 schema."""
    schema = policy_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


REPO_POLICIES = sorted((REPO / "policies").glob("*.yaml"))
GOOD_FOR_SCHEMA = [*REPO_POLICIES, *GOOD]


@pytest.mark.parametrize("path", GOOD_FOR_SCHEMA, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_policy_json_schema_accepts_good_policy_files(path: Path):
    """The repo's policies and the good cases pass the published JSON Schema, as editors check."""
    errors = [e.message for e in _schema_validator().iter_errors(_yaml_as_json(path))]
    assert errors == []


def test_policy_json_schema_covers_the_repo_policies():
    """The repository ships policy files for the JSON Schema test to check."""
    assert len(REPO_POLICIES) >= 1


@pytest.mark.parametrize(
    "document",
    [
        {"version": 1, "colour": "blue"},
        {"version": 1, "schemas": {"a.b": {"colour": "blue"}}},
        {"version": 1, "schemas": {"a.b": {"tracks": {"v2": {"colour": "blue"}}}}},
        {"version": 2},
        {"schemas": {}},
        {"version": 1, "schemas": {"a.b": {"canary": 101}}},
        {"version": 1, "schemas": {"a.b": {"mode": "loud"}}},
        {"version": 1, "schemas": {"bad/name": {}}},
    ],
)
def test_policy_json_schema_rejects_bad_documents(document: dict[str, Any]):
    """The published JSON Schema rejects unknown fields, wrong versions and bad values."""
    assert not _schema_validator().is_valid(document)


def test_checksum_does_not_depend_on_the_order_of_paths(tmp_path: Path):
    """The same files given in another order load as the same policy set (same checksum)."""
    a = _write(tmp_path / "one" / "a.yaml", "version: 1\nschemas:\n  x.A: {mode: warn}\n")
    b = _write(tmp_path / "two" / "b.yaml", "version: 1\nschemas:\n  x.B: {mode: strict}\n")
    forward = load_policy_set([a.parent, b.parent])
    backward = load_policy_set([b.parent, a.parent])
    assert forward.checksum == backward.checksum
    assert forward.files == backward.files
