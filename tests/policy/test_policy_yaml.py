"""Reading policy YAML: YAML 1.2 scalars, the quick and the marked read, positions of every problem.

The loader reads each file the quick way first (the C parser's events straight into data) and
composes it with marks only when it has something to report; these tests pin that both roads
give the same result, and that every problem, whatever its kind, names ``file:line:column``.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from policy_engine.errors import PolicyLoadError, Problem
from policy_engine.policy import load
from policy_engine.policy.load import PolicyYamlLoader, load_policy_set, load_policy_texts
from policy_engine.policy.model import Guardrail, PolicyFile, RampStep, Rule, SchemaRule

CASES = Path(__file__).parent / "cases"
REPO = Path(__file__).resolve().parents[2]
GOOD = sorted(p for p in (CASES / "good").iterdir() if p.suffix in (".yaml", ".yml"))
BAD = sorted(p for p in (CASES / "bad").iterdir() if p.suffix in (".yaml", ".yml"))
REPO_POLICIES = sorted((REPO / "policies").glob("*.yaml"))


def _errors(files: list[tuple[str, bytes]]) -> list[Problem]:
    with pytest.raises(PolicyLoadError) as info:
        load_policy_texts([(name, name, data) for name, data in files])
    return [p for p in info.value.problems if p.severity == "error"]


def _marked_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every file take the marked read, as if the quick read doubted each one."""
    monkeypatch.setattr(load, "_quick_parsed", lambda *args: None)


def _entries(policy_set: Any) -> list[tuple[Any, ...]]:
    return [
        (e.pattern, e.rule, e.defaults, e.file, e.line, e.column, dict(e.track_marks))
        for e in policy_set.entries
    ]


# --------------------------------------------------------------------------- YAML 1.2 scalars

SCALARS = [
    ("1:05", "1:05"),  # YAML 1.1 read base-60: 65
    ("1:30:00", "1:30:00"),
    ("017", 17),  # YAML 1.1: octal 15
    ("0o17", 15),
    ("0x1A", 26),
    ("1_000", "1_000"),  # YAML 1.1: 1000
    ("+12", 12),
    ("-0", 0),
    ("1e3", 1000.0),  # YAML 1.1: the string "1e3"
    ("3.0e-1", 0.3),
    (".5", 0.5),
    ("-.inf", -math.inf),
    (".Inf", math.inf),
    ("0b101", "0b101"),  # YAML 1.1: 5
    ("on", "on"),
    ("off", "off"),
    ("yes", "yes"),
    ("True", True),
    ("FALSE", False),
    ("~", None),
    ("Null", None),
    ("=", "="),  # YAML 1.1's "value" key, which the safe loader cannot even construct
    ("2026-12-01", date(2026, 12, 1)),
    ("2026-12-01T08:30:00Z", datetime(2026, 12, 1, 8, 30, tzinfo=UTC)),
    ("2026-13-45T00:00:00Z", "2026-13-45T00:00:00Z"),  # no such date: stays text
    ("2026-02-30", "2026-02-30"),
    ("2026-01-01T00:00:00+99:00", "2026-01-01T00:00:00+99:00"),
]


@pytest.mark.parametrize(("text", "value"), SCALARS, ids=[t for t, _ in SCALARS])
def test_plain_scalars_are_read_as_yaml_1_2(text: str, value: object):
    """An unquoted scalar becomes the YAML 1.2 core schema value (timestamps kept), never 1.1's."""
    read = yaml.load(f"v: {text}\n", Loader=PolicyYamlLoader)["v"]
    assert read == value
    assert type(read) is type(value)


def test_nan_is_read_as_a_float():
    """``.nan`` is the float NaN, as in YAML 1.2."""
    assert math.isnan(yaml.load("v: .nan\n", Loader=PolicyYamlLoader)["v"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("!!int abc", "'abc' is not a whole number, but it is tagged !!int"),
        ("!!int 1_000", "'1_000' is not a whole number, but it is tagged !!int"),
        ("!!float abc", "'abc' is not a number, but it is tagged !!float"),
        ("!!bool yes", "'yes' is not true or false, but it is tagged !!bool"),
        ("1" * 4301, "a whole number of 4301 digits is too long to read (at most 4300)"),
    ],
    ids=["int", "int-underscore", "float", "bool", "int-too-long"],
)
def test_a_scalar_its_tag_cannot_take_is_a_yaml_error_at_the_scalar(text: str, message: str):
    """A bad tagged or too-long scalar raises a marked YAML error, never a bare ValueError."""
    with pytest.raises(yaml.MarkedYAMLError) as info:
        yaml.load(f"a: 1\nv: {text}\n", Loader=PolicyYamlLoader)
    assert info.value.problem == message
    mark = info.value.problem_mark
    assert mark is not None
    assert (mark.line, mark.column) == (1, 3)


def test_quick_and_marked_reads_build_the_same_data_for_every_scalar():
    """The quick read resolves every scalar form of the table exactly as the composed read does."""
    text = "".join(f"k{i}: {scalar}\n" for i, (scalar, _) in enumerate(SCALARS))
    text += "tagged: [!!str 12, !!float 1, !!int 0x1f, ! 12, !!null x, '1:05', \"017\"]\n"
    quick, _ = load._quick_read(text, "p.yaml")
    marked = load._Tree("p.yaml").parse(text)
    assert quick == marked
    assert quick["tagged"] == ["12", 1.0, 31, 12, None, "1:05", "017"]  # "!" resolves as plain


# --------------------------------------------------------------------------- the two roads


@pytest.mark.parametrize(
    "paths",
    [[p] for p in GOOD] + [[REPO / "policies"]],
    ids=[p.stem for p in GOOD] + ["repo-policies"],
)
def test_quick_and_marked_reads_load_the_same_policy_set(
    paths: list[Path], monkeypatch: pytest.MonkeyPatch
):
    """A good file gives the same checksum, rules and key positions by either road."""
    quick = load_policy_set(paths)
    _marked_only(monkeypatch)
    marked = load_policy_set(paths)
    assert quick.checksum == marked.checksum
    assert _entries(quick) == _entries(marked)


@pytest.mark.parametrize(
    "path",
    [p for p in [*GOOD, *REPO_POLICIES] if "<<" not in p.read_text(encoding="utf-8")],
    ids=lambda p: p.stem,
)
def test_a_good_file_is_loaded_without_composing_marks(path: Path, monkeypatch: pytest.MonkeyPatch):
    """A file without problems (or merge keys) never takes the marked read: that keeps big sets
    fast."""

    def refuse(self: object, text: str) -> object:
        raise AssertionError("the marked read ran for a good file")

    monkeypatch.setattr(load._Tree, "parse", refuse)
    assert load_policy_set([path]).files == (str(path),)


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_a_bad_file_is_never_accepted_by_the_quick_read(path: Path):
    """No bad case gets past the quick read: each one ends in the marked read's report."""
    parsed = None
    text = path.read_bytes()
    try:
        parsed = load._quick_parsed(str(path), path.name, text, text.decode(), load.Mode.WARN)
    except Exception:  # a doubt the quick read raises is as good as a refusal
        parsed = None
    assert parsed is None


@pytest.mark.parametrize(
    "text",
    [
        "version: 1\nschemas:\n  a.b: &r {mode: strict}\n  a.c: *r\n",  # an alias as a schema rule
        "version: 1\nschemas:\n  a.b:\n    tracks: &t {v1: {mode: off}}\n  a.c:\n    tracks: *t\n",
        "version: 1\nschemas:\n  a.b: {<<: {mode: strict}, canary: 5}\n",  # a merge key
        "version: 1\nschemas: !!map\n  a.b: {mode: strict}\n",
        "version: 1\nschemas:\n  1: {mode: strict}\n",  # a key that is not text
    ],
    ids=["alias-rule", "alias-tracks", "merge", "tagged-map", "int-key"],
)
def test_a_file_the_quick_read_doubts_still_loads_the_same(
    text: str, monkeypatch: pytest.MonkeyPatch
):
    """What the quick read leaves to the marked read loads exactly as the marked read alone."""
    files = [("p.yaml", "p.yaml", text.encode())]
    quick = load_policy_texts(files)
    _marked_only(monkeypatch)
    marked = load_policy_texts(files)
    assert quick.checksum == marked.checksum
    assert _entries(quick) == _entries(marked)


# --------------------------------------------------------------------------- positions

BOMB = "version: 1\nl0: &l0 [a, a, a, a, a, a, a, a, a]\n" + "".join(
    f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10)
)

POSITIONS = [
    ("nul", b'version: 1\nschemas:\n  a.b: {salt: "x\x00y"}\n', 3, 17, "a NUL byte"),
    ("control", b"version: 1\n\nsalt: \x07\n", 3, 7, "U+0007"),
    ("not-utf8", "version: 1\nschemas:\n  a.b: {salt: Zürich}\n".encode("latin-1"), 3, 16, "UTF-8"),
    ("utf8-before-nul", "version: 1\n# é\nsalt: é\x00\n".encode(), 3, 8, "a NUL byte"),
    ("bomb", BOMB.encode(), 8, 5, "more than 1000000 YAML nodes"),
    ("recursive", b"version: 1\nschemas: &s\n  a.b: *s\n", 2, 10, "nests deeper than 64 levels"),
    ("two-documents", b"version: 1\n---\nversion: 1\n", 2, 1, "expected a single document"),
]


@pytest.mark.parametrize(
    ("data", "line", "column", "text"),
    [p[1:] for p in POSITIONS],
    ids=[p[0] for p in POSITIONS],
)
def test_every_file_problem_names_a_line_and_column(data: bytes, line: int, column: int, text: str):
    """Byte-level and expansion problems are placed where they are, not just named by file."""
    (error,) = _errors([("p.yaml", data)])
    assert (error.file, error.line, error.column) == ("p.yaml", line, column), str(error)
    assert text in error.message
    assert f"p.yaml:{line}:{column}: " in str(error)


def test_nesting_past_the_parsers_limit_is_placed_on_its_line():
    """Flow nesting deeper than the YAML parser takes is an error on its line (the pure-Python
    parser, used without libyaml, runs out of recursion first and says so at 1:1)."""
    data = b"version: 1\nsalt: " + b"[" * 2000 + b"]" * 2000 + b"\n"
    (error,) = _errors([("p.yaml", data)])
    assert error.line == (2 if load._C_PARSER else 1)
    assert "nest" in error.message


def test_a_file_over_8_mib_is_placed_at_its_start():
    """A file over the size limit is refused at line 1, column 1."""
    data = b"version: 1\n#" + b"x" * load.MAX_POLICY_FILE_BYTES
    (error,) = _errors([("big.yaml", data)])
    assert (error.line, error.column) == (1, 1)
    assert "8 MiB" in error.message


def test_an_empty_and_a_missing_file_are_placed_at_line_1(tmp_path: Path):
    """An empty file and a missing policy path are reported at 1:1 like every other problem."""
    (tmp_path / "empty.yaml").write_bytes(b"")
    with pytest.raises(PolicyLoadError) as info:
        load_policy_set([tmp_path / "empty.yaml", tmp_path / "nope"])
    assert sorted((Path(p.file).name, p.line, p.column) for p in info.value.problems) == [
        ("empty.yaml", 1, 1),
        ("nope", 1, 1),
    ]


# --------------------------------------------------------------------------- help from the models


@pytest.mark.parametrize(
    ("text", "model"),
    [
        ("colour: red\n", PolicyFile),
        ("defaults: {colour: red}\n", Rule),
        ("schemas:\n  a.b: {colour: red}\n", SchemaRule),
        ("schemas:\n  a.b: {tracks: {v1: {colour: red}}}\n", Rule),
        ("schemas:\n  a.b: {guardrail: {max_reject_rate: 0.1, colour: red}}\n", Guardrail),
        ("schemas:\n  a.b: {ramp: [{at: 2026-12-01, canary: 5, colour: red}]}\n", RampStep),
        ("schemas:\n  a.b: {tracks: {v1: {guardrail: {colour: red}}}}\n", Guardrail),
    ],
    ids=["file", "defaults", "schema", "track", "guardrail", "ramp-step", "track-guardrail"],
)
def test_unknown_field_help_lists_the_fields_of_the_model_there(text: str, model: type[Any]):
    """The "allowed here:" list is the model's own field list: it never drifts from the format."""
    errors = _errors([("p.yaml", f"version: 1\n{text}".encode())])
    unknown = [e for e in errors if "unknown field 'colour'" in e.message]
    assert len(unknown) == 1
    assert unknown[0].message.endswith(f"allowed here: {', '.join(model.model_fields)}")
