"""Policy test files: cases that pin what the policies decide, run by ``policy-engine test``.

A team writes down what its rollout must do ("AAPL is inside the canary from 6 January", "a
bad trade from DIS is rejected") in ``*.test.yaml`` files next to the policies, and CI runs
them like ``kyverno test`` or ``conftest verify`` run theirs::

    version: 1
    cases:
      - name: AAPL is inside the canary once the ramp reaches 100 %
        schema: marketdata.TradeEvent
        track: v2                    # optional: default as for a payload
        key: AAPL                    # optional: default the rule's key path, else a hash
        at: 2027-01-06T00:00:00Z     # optional: the evaluation time (default: now)
        payload: {symbol: AAPL}      # or payload_file: a .json/.yaml path relative to this file
        expect: {mode: strict, in_canary: true}   # any of mode, action, valid, in_canary

Each case is one ``PolicyEngine.evaluate`` by a real engine at the case's time
(``evaluate_case``); nothing about resolution is re-derived here. Files are read with the policy
loader's YAML 1.2 reader (``PolicyYamlLoader``: ``off`` is text, no base-60 numbers), extended
to remember where every key is written, so a bad file is reported as ``file:line:column``
problems (``PolicyTestFileError``) before anything runs. Unquoted timestamps stay text: a
payload is JSON, and JSON has no time type.

``junit_xml`` renders results as JUnit XML for CI systems (one ``testcase`` per case).
"""

from __future__ import annotations

import difflib
import math
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import yaml

from policy_engine.core.resolve import parse_time
from policy_engine.envelope import load_json
from policy_engine.errors import EngineError, Problem
from policy_engine.modes import Action, Mode
from policy_engine.policy.load import PolicyYamlLoader

if TYPE_CHECKING:
    from policy_engine.core.policy_set import PolicySet
    from policy_engine.engine import PolicyEngine

#: Where ``policy-engine test`` looks when given no paths.
DEFAULT_TEST_DIR: Final = "tests/policies"
#: What a test file's name ends with when it is found in a directory.
TEST_FILE_SUFFIXES: Final = (".test.yaml", ".test.yml")
#: The fields of a test file, a case, and a case's ``expect``, in the order the docs give them.
FILE_FIELDS: Final = ("version", "cases")
CASE_FIELDS: Final = ("name", "schema", "track", "key", "at", "payload", "payload_file", "expect")
EXPECT_FIELDS: Final = ("mode", "action", "valid", "in_canary")

Mark = tuple[int, int]

__all__ = [
    "DEFAULT_TEST_DIR",
    "EXPECT_FIELDS",
    "TEST_FILE_SUFFIXES",
    "CaseClock",
    "CaseResult",
    "PolicyCase",
    "PolicyTestFileError",
    "discover_test_files",
    "evaluate_case",
    "junit_xml",
    "load_test_file",
    "load_test_files",
    "unknown_names",
]


class PolicyTestFileError(EngineError):
    """A policy test file cannot be run as written; ``problems`` says where, every one of them."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{len(problems)} problem(s) in policy test files:\n{shown}{more}")


# --------------------------------------------------------------------------- reading


class _MarkedMap(dict[Any, Any]):
    """A YAML mapping that remembers where it and each of its keys are written (1-based)."""

    mark: Mark = (1, 1)
    key_marks: dict[Any, Mark]
    value_marks: dict[Any, Mark]


class _MarkedList(list[Any]):
    """A YAML sequence that remembers where it and each of its items are written (1-based)."""

    mark: Mark = (1, 1)
    item_marks: list[Mark]


_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


def _mark(node: yaml.Node) -> Mark:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _TestFileLoader(PolicyYamlLoader):
    """The policy loader's YAML 1.2 reader, with marks kept on every mapping and sequence.

    Duplicate keys are an error at the second one (YAML would silently keep the last); a key
    merged in with ``<<`` may be overridden by one written in the mapping, as YAML intends.
    """

    def construct_marked_map(self, node: yaml.MappingNode) -> Iterable[_MarkedMap]:
        """Build a mapping in two steps (as ``SafeConstructor`` does) so anchors may recur."""
        data = _MarkedMap()
        data.mark = _mark(node)
        data.key_marks = {}
        data.value_marks = {}
        yield data
        written = sum(1 for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge")
        self.flatten_mapping(node)
        merged = len(node.value) - written
        from_merge: set[Any] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a plain value", key_node.start_mark
                ) from None
            if key in data and key not in from_merge:
                first = data.key_marks[key]
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first written at line {first[0]})",
                    key_node.start_mark,
                )
            if index < merged:
                from_merge.add(key)
            else:
                from_merge.discard(key)
            data[key] = self.construct_object(value_node, deep=True)
            data.key_marks[key] = _mark(key_node)
            data.value_marks[key] = _mark(value_node)

    def construct_marked_list(self, node: yaml.SequenceNode) -> Iterable[_MarkedList]:
        """Build a sequence in two steps, remembering where each item is written."""
        data = _MarkedList()
        data.mark = _mark(node)
        data.item_marks = [_mark(item) for item in node.value]
        yield data
        data.extend(self.construct_object(item, deep=True) for item in node.value)


# A payload is JSON: an unquoted time in it is text, as it would be in the JSON payload.
_TestFileLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in PolicyYamlLoader.yaml_implicit_resolvers.items()
}
_TestFileLoader.add_constructor("tag:yaml.org,2002:map", _TestFileLoader.construct_marked_map)
_TestFileLoader.add_constructor("tag:yaml.org,2002:seq", _TestFileLoader.construct_marked_list)


def _yaml_problem(file: str, exc: yaml.YAMLError) -> Problem:
    """A YAML reader error as a problem at its position."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "unreadable"
        if exc.problem and exc.context and not exc.context.startswith("while "):
            what = f"{exc.context}, {exc.problem}"
        prefix = "" if isinstance(exc, yaml.constructor.ConstructorError) else "invalid YAML: "
        if mark is not None:
            return Problem(file, mark.line + 1, mark.column + 1, f"{prefix}{what}")
        return Problem(file, 1, 1, f"{prefix}{what}")
    return Problem(file, 1, 1, f"invalid YAML: {exc}")


def _read_yaml(data: bytes, file: str) -> Any:
    """The one YAML document in ``data``; ``PolicyTestFileError`` at its position if none."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyTestFileError([Problem(file, 1, 1, f"not UTF-8 text: {exc.reason}")]) from None
    loader = _TestFileLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise PolicyTestFileError([_yaml_problem(file, exc)]) from None
    except RecursionError:
        raise PolicyTestFileError([Problem(file, 1, 1, "the YAML nests too deeply")]) from None
    finally:
        loader.dispose()


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Checker:
    """Collects the problems of one test file, each at the position it is written."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def error(self, mark: Mark, message: str) -> None:
        self.problems.append(Problem(self.file, mark[0], mark[1], message))

    def fields(self, data: _MarkedMap, allowed: Sequence[str], where: str) -> None:
        """An error at every key of ``data`` that is not in ``allowed``."""
        for key in data:
            if key not in allowed:
                self.error(
                    data.key_marks[key],
                    f"{where}: unknown field {key!r}{_did_you_mean(str(key), allowed)}; "
                    f"allowed: {', '.join(allowed)}",
                )

    def value_mark(self, data: _MarkedMap, key: str) -> Mark:
        """Where the value of ``key`` is written (else its key, else the mapping)."""
        return data.value_marks.get(key) or data.key_marks.get(key, data.mark)


def _to_json(value: Any, where: str, mark: Mark, checker: _Checker) -> Any:
    """``value`` as plain JSON data; an error for anything JSON cannot hold."""
    if isinstance(value, _MarkedMap):
        result: dict[str, Any] = {}
        for key, item in value.items():
            key_mark = value.key_marks.get(key, value.mark)
            if not isinstance(key, str):
                checker.error(key_mark, f"{where}: key {key!r} is not text; JSON keys are text")
                continue
            item_mark = value.value_marks.get(key, key_mark)
            result[key] = _to_json(item, f"{where}.{key}", item_mark, checker)
        return result
    if isinstance(value, _MarkedList):
        return [
            _to_json(item, f"{where}[{i}]", value.item_marks[i], checker)
            for i, item in enumerate(value)
        ]
    if isinstance(value, float) and not math.isfinite(value):
        checker.error(mark, f"{where}: {value!r} is not a JSON number")
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    checker.error(mark, f"{where}: a {type(value).__name__} is not a JSON value")
    return None


@dataclass(frozen=True, slots=True)
class PolicyCase:
    """One case of a policy test file: what to evaluate, when, and what must come out.

    ``line``/``column`` are where the case starts; ``marks`` where each of its fields is
    written (for problems found later, such as an unknown schema name).
    """

    name: str
    file: str
    line: int
    column: int
    schema: str
    payload: Any
    expect: Mapping[str, Any]
    track: str | None = None
    key: Any = None
    at: float | None = None
    marks: Mapping[str, Mark] = field(default_factory=dict)

    @property
    def where(self) -> str:
        """``file:line`` of the case."""
        return f"{self.file}:{self.line}"


def _text(case: _MarkedMap, name: str, where: str, checker: _Checker, required: bool) -> Any:
    value = case.get(name)
    if value is None:
        if required:
            checker.error(case.mark, f"{where}: '{name}' is required")
        return None
    if not isinstance(value, str) or not value.strip():
        checker.error(checker.value_mark(case, name), f"{where}: {name}: must be non-empty text")
        return None
    return value


def _expectations(case: _MarkedMap, where: str, checker: _Checker) -> dict[str, Any] | None:
    expect = case.get("expect")
    if expect is None:
        checker.error(
            case.mark, f"{where}: 'expect' is required (any of {', '.join(EXPECT_FIELDS)})"
        )
        return None
    if not isinstance(expect, _MarkedMap) or not expect:
        checker.error(
            checker.value_mark(case, "expect"),
            f"{where}: expect: must map one or more of {', '.join(EXPECT_FIELDS)} to a value",
        )
        return None
    checker.fields(expect, EXPECT_FIELDS, f"{where}: expect")
    choices = {
        "mode": (tuple(m.value for m in Mode), "one of off, warn, strict"),
        "action": (tuple(a.value for a in Action), "one of accepted, logged, rejected, skipped"),
    }
    result: dict[str, Any] = {}
    for name in expect:  # in the order written, which the reports keep
        if name not in EXPECT_FIELDS:
            continue
        value = expect[name]
        mark = checker.value_mark(expect, name)
        if name in choices:
            allowed, words = choices[name]
            if not isinstance(value, str) or value not in allowed:
                hint = _did_you_mean(str(value), allowed) if isinstance(value, str) else ""
                checker.error(mark, f"{where}: expect.{name}: {value!r} is not {words}{hint}")
                continue
        elif name == "valid" and not (value is None or isinstance(value, bool)):
            checker.error(
                mark,
                f"{where}: expect.valid: {value!r} is not true, false or null (not validated)",
            )
            continue
        elif name == "in_canary" and not isinstance(value, bool):
            checker.error(mark, f"{where}: expect.in_canary: {value!r} is not true or false")
            continue
        result[name] = value
    return result


def _payload(case: _MarkedMap, where: str, base: Path, checker: _Checker) -> tuple[bool, Any]:
    """``(found, payload)``: the inline ``payload`` or the one in ``payload_file``."""
    has_inline, has_file = "payload" in case, "payload_file" in case
    if has_inline == has_file:
        what = "both 'payload' and 'payload_file'" if has_inline else "neither of them"
        checker.error(case.mark, f"{where}: write either 'payload' or 'payload_file', not {what}")
        return False, None
    if has_inline:
        mark = checker.value_mark(case, "payload")
        return True, _to_json(case["payload"], f"{where}: payload", mark, checker)
    name = case["payload_file"]
    mark = checker.value_mark(case, "payload_file")
    if not isinstance(name, str) or not name.strip():
        checker.error(mark, f"{where}: payload_file: must be a path relative to the test file")
        return False, None
    path = base / name
    try:
        data = path.read_bytes()
    except OSError as exc:
        checker.error(mark, f"{where}: payload_file: cannot read {path}: {exc.strerror or exc}")
        return False, None
    if path.suffix.lower() in (".yaml", ".yml"):
        inner = _Checker(str(path))
        try:
            value = _to_json(_read_yaml(data, str(path)), "payload", (1, 1), inner)
        except PolicyTestFileError as exc:
            checker.problems.extend(exc.problems)
            return False, None
        checker.problems.extend(inner.problems)
        return not inner.problems, value
    try:
        return True, load_json(data)
    except RecursionError:
        checker.error(mark, f"{where}: payload_file: {path}: the JSON nests too deeply to read")
    except ValueError as exc:
        checker.error(mark, f"{where}: payload_file: {path} is not JSON: {exc}")
    return False, None


def _at(case: _MarkedMap, where: str, checker: _Checker) -> float | None:
    value = case.get("at")
    if value is None:
        return None
    mark = checker.value_mark(case, "at")
    if isinstance(value, datetime):  # an explicit !!timestamp tag
        if value.utcoffset() is None:
            checker.error(mark, f"{where}: at: the time needs an offset, e.g. 2027-01-06T00:00:00Z")
            return None
        return value.timestamp()
    if not isinstance(value, str):
        checker.error(mark, f"{where}: at: {value!r} is not an RFC 3339 time")
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        checker.error(mark, f"{where}: at: {exc}")
        return None


def _case(item: Any, index: int, mark: Mark, base: Path, checker: _Checker) -> PolicyCase | None:
    where = f"cases[{index}]"
    if not isinstance(item, _MarkedMap):
        checker.error(mark, f"{where}: a case is a mapping with name, schema, payload, expect")
        return None
    before = len(checker.problems)
    checker.fields(item, CASE_FIELDS, where)
    name = _text(item, "name", where, checker, required=True)
    where = f"case {name!r}" if name else where
    schema = _text(item, "schema", where, checker, required=True)
    track = _text(item, "track", where, checker, required=False)
    key = item.get("key")
    if key is not None and not isinstance(key, str | int | float):
        checker.error(checker.value_mark(item, "key"), f"{where}: key: must be text (or a number)")
    at = _at(item, where, checker)
    found, payload = _payload(item, where, base, checker)
    expect = _expectations(item, where, checker)
    if len(checker.problems) > before or not found or expect is None:
        return None
    assert name is not None
    assert schema is not None
    marks = {key: checker.value_mark(item, key) for key in item}
    return PolicyCase(
        name=name,
        file=checker.file,
        line=mark[0],
        column=mark[1],
        schema=schema,
        payload=payload,
        expect=expect,
        track=track,
        key=key,
        at=at,
        marks=marks,
    )


def load_test_file(path: str | Path, display: str | None = None) -> list[PolicyCase]:
    """The cases of one test file; ``PolicyTestFileError`` with every problem if it is bad.

    ``display`` is how problems name the file (default: ``path`` as given).
    """
    file = display if display is not None else str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PolicyTestFileError(
            [Problem(file, 0, 0, f"cannot read: {exc.strerror or exc}")]
        ) from None
    document = _read_yaml(data, file)
    checker = _Checker(file)
    if document is None:
        checker.error((1, 1), "the file is empty; a test file has 'version: 1' and 'cases'")
        raise PolicyTestFileError(checker.problems)
    if not isinstance(document, _MarkedMap):
        checker.error((1, 1), "a test file is a mapping with 'version: 1' and 'cases'")
        raise PolicyTestFileError(checker.problems)
    checker.fields(document, FILE_FIELDS, "test file")
    version = document.get("version")
    if "version" not in document:
        checker.error(document.mark, "'version: 1' is required")
    elif type(version) is not int or version != 1:
        checker.error(
            checker.value_mark(document, "version"),
            f"version: {version!r} is not 1, the only version",
        )
    cases = document.get("cases")
    if "cases" not in document:
        checker.error(document.mark, "'cases' is required: a list of cases")
    elif not isinstance(cases, _MarkedList):
        checker.error(checker.value_mark(document, "cases"), "cases: must be a list of cases")
    found: list[PolicyCase] = []
    if isinstance(cases, _MarkedList):
        base = Path(path).parent
        names: dict[str, int] = {}
        for index, item in enumerate(cases):
            case = _case(item, index, cases.item_marks[index], base, checker)
            if case is None:
                continue
            if case.name in names:
                checker.error(
                    (case.line, case.column),
                    f"case {case.name!r}: the name is used twice (first at line "
                    f"{names[case.name]}); reports tell cases apart by name",
                )
                continue
            names[case.name] = case.line
            found.append(case)
    if checker.problems:
        raise PolicyTestFileError(sorted(checker.problems, key=lambda p: (p.line, p.column)))
    return found


def discover_test_files(paths: Sequence[str]) -> tuple[list[tuple[Path, str]], list[Problem]]:
    """``(path, display name)`` of every test file under ``paths``, and the problems finding them.

    A file given by name is read whatever it is called; a directory contributes its
    ``*.test.yaml``/``*.test.yml`` files at any depth, in sorted order, skipping names that
    start with ``.``. A path that does not exist, or paths holding no test file, are problems.
    """
    found: list[tuple[Path, str]] = []
    problems: list[Problem] = []
    seen: set[Path] = set()

    def add(path: Path, display: str) -> None:
        real = path.resolve()
        if real not in seen:
            seen.add(real)
            found.append((path, display))

    for raw in paths:
        path = Path(raw)
        if path.is_file():
            add(path, raw)
        elif path.is_dir():
            hits = sorted(
                p
                for p in path.rglob("*")
                if p.name.endswith(TEST_FILE_SUFFIXES)
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            for hit in hits:
                add(hit, str(hit))
        elif raw == DEFAULT_TEST_DIR:
            problems.append(
                Problem(
                    raw,
                    0,
                    0,
                    "no such directory: policy test files (*.test.yaml) go here, or name them "
                    "as arguments ('policy-engine init' writes an example project)",
                )
            )
        else:
            problems.append(Problem(raw, 0, 0, "no such file or directory"))
    if not found and not problems:
        where = ", ".join(paths)
        problems.append(Problem(where, 0, 0, "no policy test files (*.test.yaml) found here"))
    return found, problems


def load_test_files(files: Iterable[tuple[Path, str]]) -> list[PolicyCase]:
    """Every case of ``files``, in order; ``PolicyTestFileError`` with the problems of all."""
    cases: list[PolicyCase] = []
    problems: list[Problem] = []
    for path, display in files:
        try:
            cases.extend(load_test_file(path, display))
        except PolicyTestFileError as exc:
            problems.extend(exc.problems)
    if problems:
        raise PolicyTestFileError(problems)
    return cases


def unknown_names(
    cases: Iterable[PolicyCase],
    policy_set: PolicySet,
    registry: Mapping[str, tuple[str, ...]] | None,
) -> list[Problem]:
    """A problem for each case naming a schema (or track) nobody knows: a typo would otherwise
    test the global default and pass or fail for the wrong reason.

    A schema is known when the registry lists it or an exact (non-glob) policy entry names it;
    a track when the registry lists it for that schema or the exact entry writes it. With no
    registry listing (a registry that cannot be listed) only the policies are asked, and a
    name they do not know is not reported.
    """
    problems: list[Problem] = []
    for case in cases:
        entry = policy_set.exact.get(case.schema)
        listed = registry.get(case.schema) if registry is not None else None
        if listed is None and entry is None:
            if registry is None:
                continue
            names = sorted({*registry, *policy_set.exact})
            line, column = case.marks.get("schema", (case.line, case.column))
            problems.append(
                Problem(
                    case.file,
                    line,
                    column,
                    f"case {case.name!r}: unknown schema {case.schema!r}"
                    f"{_did_you_mean(case.schema, names)}",
                )
            )
            continue
        if case.track is None:
            continue
        tracks = {*(listed or ()), *((entry.rule.tracks or {}) if entry is not None else ())}
        if listed is None and not tracks:
            continue  # named by a policy that writes no tracks, unknown to the registry
        if case.track not in tracks:
            line, column = case.marks.get("track", (case.line, case.column))
            problems.append(
                Problem(
                    case.file,
                    line,
                    column,
                    f"case {case.name!r}: unknown track {case.track!r} of {case.schema} "
                    f"(it has {', '.join(sorted(tracks))})"
                    f"{_did_you_mean(case.track, sorted(tracks))}",
                )
            )
    return problems


# --------------------------------------------------------------------------- running


class CaseClock:
    """The engine's clock while cases run: the running case's ``at``, else the real time."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        #: The time of the case being evaluated, or ``None`` for the real time.
        self.at: float | None = None

    def __call__(self) -> float:
        return self.at if self.at is not None else self._now()


@dataclass(frozen=True, slots=True)
class CaseResult:
    """What one case expected and what the engine decided.

    ``got`` has every field a case can expect (``mode``, ``action``, ``valid``, ``in_canary``);
    ``ok`` is whether the expected ones match. ``reason`` is the decision's own explanation.
    """

    case: PolicyCase
    got: Mapping[str, Any]
    reason: str
    seconds: float

    @property
    def mismatches(self) -> list[str]:
        """The expected fields whose value differs from the decision's."""
        return [name for name, value in self.case.expect.items() if self.got.get(name) != value]

    @property
    def ok(self) -> bool:
        """Whether the decision matched every expectation."""
        return not self.mismatches

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of ``policy-engine test --json``."""
        return {
            "name": self.case.name,
            "file": self.case.file,
            "line": self.case.line,
            "ok": self.ok,
            "expected": dict(self.case.expect),
            "got": dict(self.got),
            "reason": self.reason,
        }


def evaluate_case(engine: PolicyEngine, clock: CaseClock, case: PolicyCase) -> CaseResult:
    """Evaluate ``case`` once with ``engine``, whose clock must be ``clock``, at the case's time.

    Build the engine without guardrails (``guardrails=False``): a test pins what the policies
    say, not what a window of earlier cases tripped.
    """
    clock.at = case.at
    started = time.perf_counter()
    try:
        decision = engine.evaluate(case.schema, case.payload, key=case.key, track=case.track)
    finally:
        clock.at = None
    seconds = time.perf_counter() - started
    got = {
        "mode": decision.mode.value,
        "action": decision.action.value,
        "valid": decision.valid,
        "in_canary": decision.in_canary,
    }
    return CaseResult(case, got, f"{decision.schema} {decision.track}: {decision.reason}", seconds)


# --------------------------------------------------------------------------- JUnit XML


def _classname(file: str) -> str:
    name = file
    for suffix in (*TEST_FILE_SUFFIXES, ".yaml", ".yml"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name.replace("\\", "/").strip("./").replace("/", ".") or "policies"


def junit_xml(results: Sequence[CaseResult], problems: Sequence[Problem] = ()) -> bytes:
    """JUnit XML of a run: a ``testsuite`` per test file, a ``testcase`` per case.

    A failed case has a ``failure`` saying which expectations differ; a bad test file
    (``problems``) shows as one ``testcase`` with an ``error`` per problem, so a CI page says
    why nothing ran instead of finding no report.
    """
    suites: dict[str, list[ET.Element]] = {}
    counts: dict[str, list[float]] = {}  # file -> [tests, failures, errors, seconds]
    for result in results:
        case = result.case
        element = ET.Element(
            "testcase",
            {
                "name": case.name,
                "classname": _classname(case.file),
                "file": case.file,
                "line": str(case.line),
                "time": f"{result.seconds:.6f}",
            },
        )
        tally = counts.setdefault(case.file, [0, 0, 0, 0.0])
        tally[0] += 1
        tally[3] += result.seconds
        if not result.ok:
            tally[1] += 1
            failure = ET.SubElement(
                element,
                "failure",
                {"message": describe_mismatches(result), "type": "PolicyTestFailure"},
            )
            failure.text = (
                f"{case.where}: {case.name}\n{describe_mismatches(result)}\n{result.reason}"
            )
        suites.setdefault(case.file, []).append(element)
    for problem in problems:
        tally = counts.setdefault(problem.file, [0, 0, 0, 0.0])
        if not tally[2]:
            tally[0] += 1
            element = ET.Element(
                "testcase",
                {
                    "name": "(test file)",
                    "classname": _classname(problem.file),
                    "file": problem.file,
                },
            )
            suites.setdefault(problem.file, []).append(element)
        tally[2] += 1
        error = ET.SubElement(
            suites[problem.file][-1], "error", {"message": str(problem), "type": "BadTestFile"}
        )
        error.text = str(problem)
    root = ET.Element(
        "testsuites",
        {
            "name": "policy-engine test",
            "tests": str(int(sum(c[0] for c in counts.values()))),
            "failures": str(int(sum(c[1] for c in counts.values()))),
            "errors": str(int(sum(1 for c in counts.values() if c[2]))),
            "time": f"{sum(c[3] for c in counts.values()):.6f}",
        },
    )
    for file, elements in suites.items():
        tests, failures, errors, seconds = counts[file]
        suite = ET.SubElement(
            root,
            "testsuite",
            {
                "name": file,
                "tests": str(int(tests)),
                "failures": str(int(failures)),
                "errors": str(1 if errors else 0),
                "skipped": "0",
                "time": f"{seconds:.6f}",
            },
        )
        suite.extend(elements)
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document + b"\n"


def describe_mismatches(result: CaseResult) -> str:
    """``action: expected rejected, got logged; ...`` for each expectation that differs."""
    return "; ".join(
        f"{name}: expected {_show(result.case.expect[name])}, got {_show(result.got.get(name))}"
        for name in result.mismatches
    )


def _show(value: Any) -> str:
    """A value as the test file would write it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
