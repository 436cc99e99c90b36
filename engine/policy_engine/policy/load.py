"""Policy files -> one immutable, checksummed ``PolicySet`` (SPEC §2).

YAML is read with a subclass of PyYAML's ``SafeLoader`` (the C one when available) whose only
change is that booleans are YAML 1.2 style: just ``true``/``false``. A bare ``off`` therefore stays
the string ``"off"`` (``mode: off`` works unquoted) and ``salt: no`` is not silently ``False``.

The loader composes node trees rather than plain objects, so that every problem found later, by
pydantic or by the cross-file checks, is reported at the ``file:line:column`` where it is written.
All problems of a run are collected; a set with any error is never returned, so a half-valid set
can never be applied.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from pydantic import ValidationError

from policy_engine.core.policy_set import PolicyEntry, PolicySet, glob_specificity, is_glob
from policy_engine.errors import PolicyLoadError, Problem
from policy_engine.modes import Mode
from policy_engine.policy.model import (
    SCHEMA_NAME_RE,
    SCHEMA_PATTERN_RE,
    PolicyFile,
    Rule,
    SchemaRule,
)

#: A policy file larger than this is refused before parsing (a policy is a few KB).
MAX_POLICY_FILE_BYTES = 8 * 1024 * 1024
#: Most YAML nodes one file may expand to, aliases included (stops "billion laughs").
MAX_NODES_PER_FILE = 1_000_000

_BOOL_TAG = "tag:yaml.org,2002:bool"
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class PolicyYamlLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """``SafeLoader`` with YAML 1.2 booleans: ``on``/``off``/``yes``/``no`` stay strings."""


PolicyYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
PolicyYamlLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)

Path_ = tuple[str | int, ...]
Mark = tuple[int, int]

__all__ = ["ParseCache", "PolicyYamlLoader", "load_policy_set", "load_policy_texts"]


# --------------------------------------------------------------------------- YAML with marks


class _Tree:
    """A YAML document as plain data plus the position of every key and value."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.key_marks: dict[Path_, Mark] = {}
        self.value_marks: dict[Path_, Mark] = {}
        self.problems: list[Problem] = []
        self._nodes = 0
        self._merged: dict[int, int] = {}  # id(mapping node) -> merged pairs at its start
        self._loader: Any = None

    def mark(self, path: Path_, *, key: bool = False) -> Mark:
        """The closest known position of ``path`` (falling back to its ancestors)."""
        marks = self.key_marks if key else self.value_marks
        probe = path
        while probe:
            if probe in marks:
                return marks[probe]
            if probe in self.value_marks:
                return self.value_marks[probe]
            probe = probe[:-1]
        return self.value_marks.get((), (1, 1))

    def error(self, mark: Mark, message: str) -> None:
        self.problems.append(Problem(self.file, mark[0], mark[1], message))

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self._nodes += 1
        if self._nodes > MAX_NODES_PER_FILE:
            raise _TooBigError
        self.value_marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            merged = self._flatten(node)
            result: dict[str, Any] = {}
            explicit: set[str] = set()
            for index, (key_node, value_node) in enumerate(node.value):
                key_mark = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if not isinstance(key_node, yaml.ScalarNode):
                    self.error(key_mark, "a mapping key must be a plain name, not a list or map")
                    continue
                key = self._loader.construct_object(key_node)
                if not isinstance(key, str):
                    key = str(key_node.value)
                if index < merged or key not in explicit:
                    # A merged (<<) key is overridden by a later merge or a key written here.
                    result.pop(key, None)
                if index >= merged:
                    explicit.add(key)
                if key in result:
                    first = self.key_marks[(*path, key)]
                    self.error(
                        key_mark,
                        f"duplicate key {key!r} (first written at line {first[0]}); "
                        "YAML would silently keep only the last one",
                    )
                    continue
                self.key_marks[(*path, key)] = key_mark
                result[key] = self.build(value_node, (*path, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._loader.construct_object(node)

    def _flatten(self, node: yaml.MappingNode) -> int:
        """Apply YAML merge keys (``<<``); the merged pairs come first: return how many."""
        if id(node) not in self._merged:
            written = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
            self._loader.flatten_mapping(node)
            self._merged[id(node)] = len(node.value) - written
        return self._merged[id(node)]

    def parse(self, text: str) -> Any:
        loader = PolicyYamlLoader(text)
        self._loader = loader
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            return self.build(node, ())
        finally:
            loader.dispose()


class _TooBigError(Exception):
    pass


# --------------------------------------------------------------------------- pydantic errors


_FIELD_HELP = {
    "file": "version, defaults, schemas",
    "rule": "mode, baseline, canary, ramp, key, salt, guardrail, on_registry_error",
    "schema": "mode, baseline, canary, ramp, key, salt, guardrail, on_registry_error, tracks",
    "guardrail": "max_reject_rate, window, min_samples, cooldown",
    "ramp": "at, canary",
}


# pydantic's wording for type errors names Python types and our classes; say it in YAML terms.
_FRIENDLY = {
    "dict_type": "must be a mapping (indented 'key: value' lines or {key: value})",
    "model_type": "must be a mapping (indented 'key: value' lines or {key: value})",
    "model_attributes_type": "must be a mapping (indented 'key: value' lines or {key: value})",
    "list_type": "must be a list ('- item' lines or [a, b])",
    "string_type": "must be a string",
    "float_type": "must be a number",
    "int_type": "must be a whole number",
    "bool_type": "must be true or false",
}


def _allowed_fields(parent: Path_) -> str:
    if not parent:
        return _FIELD_HELP["file"]
    if parent[-1] == "guardrail":
        return _FIELD_HELP["guardrail"]
    if len(parent) >= 2 and parent[-2] == "ramp":
        return _FIELD_HELP["ramp"]
    if len(parent) == 2 and parent[0] == "schemas":
        return _FIELD_HELP["schema"]
    return _FIELD_HELP["rule"]


def _describe(path: Path_) -> str:
    parts: list[str] = []
    for part in path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif parts:
            parts.append(f".{part}" if "." not in part else f"[{part!r}]")
        else:
            parts.append(part)
    return "".join(parts) or "the file"


def _pydantic_problems(tree: _Tree, exc: ValidationError) -> None:
    seen: set[tuple[Path_, str]] = set()
    for err in exc.errors(include_url=False):
        loc: Path_ = tuple(p for p in err["loc"] if p != "[key]")
        is_key = "[key]" in err["loc"]
        kind = err["type"]
        if (loc, kind) in seen:
            continue
        seen.add((loc, kind))
        message = _FRIENDLY.get(kind) or str(err["msg"]).removeprefix("Value error, ")
        if kind == "extra_forbidden":
            mark = tree.mark(loc, key=True)
            text = (
                f"unknown field {loc[-1]!r} in {_describe(loc[:-1])}; "
                f"allowed here: {_allowed_fields(loc[:-1])}"
            )
        elif kind == "missing":
            mark = tree.mark(loc[:-1])
            text = f"{_describe(loc[:-1])} is missing the required field {loc[-1]!r}"
        elif is_key and len(loc) == 2:
            mark = tree.mark(loc, key=True)
            text = (
                f"{loc[-1]!r} is not a schema name or glob (letters, digits, '_', '.', '-'; "
                "globs also '*', '?', '[...]')"
            )
        elif is_key:
            mark = tree.mark(loc, key=True)
            text = f"{loc[-1]!r} is not a track name (letters, digits, '_', '.', '-')"
        elif loc == ("version",):
            mark = tree.mark(loc)
            text = "version must be 1 (the only policy format version there is)"
        else:
            mark = tree.mark(loc)
            text = f"{_describe(loc)}: {message}"
        tree.error(mark, text)


# --------------------------------------------------------------------------- discovery


def discover_files(
    paths: Iterable[str | Path], *, missing_ok: bool = False
) -> list[tuple[Path, str]]:
    """Every ``*.yaml``/``*.yml`` under ``paths`` (or the path itself if it is a file).

    Each file comes with its path relative to its policy path: the checksum covers that, so it
    does not depend on where the files sit. Hidden entries are skipped: editors' swap files, and
    the ``..data``/``..<timestamp>`` directories of a Kubernetes ConfigMap, whose files are also
    reachable through the top-level symlinks (reading both would define every rule twice).
    """
    found: list[tuple[Path, str]] = []
    for raw in paths:
        root = Path(raw)
        if root.is_file():
            found.append((root, root.name))
            continue
        if not root.is_dir():
            if missing_ok:
                continue
            raise PolicyLoadError(
                [Problem(str(root), 0, 0, "policy path does not exist or is not a directory")]
            )
        inner: list[Path] = []
        for candidate in root.rglob("*"):
            rel = candidate.relative_to(root)
            if any(part.startswith(".") for part in rel.parts):
                continue
            if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
                inner.append(candidate)
        found.extend(sorted((p, p.relative_to(root).as_posix()) for p in inner))
    return found


# --------------------------------------------------------------------------- the loader


@dataclass
class _Parsed:
    file: str
    relative: str
    text: bytes
    model: PolicyFile
    tree: _Tree
    entries: list[PolicyEntry] = field(default_factory=list)


class ParseCache:
    """Files parsed by earlier loads, so a reload parses only the files that changed.

    A hot reload of a 10 000-rule set after a one-file edit then costs one file's parse plus the
    cross-file checks. Keyed by path, compared by content; only files that loaded cleanly are
    kept. Not thread-safe: one reload at a time uses it (the engine holds a lock).
    """

    def __init__(self) -> None:
        self._items: dict[tuple[str, str, Mode], _Parsed] = {}

    def get(self, key: tuple[str, str, Mode], data: bytes) -> _Parsed | None:
        item = self._items.get(key)
        return item if item is not None and item.text == data else None

    def put(self, key: tuple[str, str, Mode], item: _Parsed) -> None:
        self._items[key] = item

    def keep_only(self, keys: set[tuple[str, str, Mode]]) -> None:
        """Forget files that are no longer part of the set."""
        for key in [k for k in self._items if k not in keys]:
            del self._items[key]


def _partial_model(doc: dict[str, Any]) -> PolicyFile:
    """The parts of a file that do validate, so their semantic checks can still run.

    A file with one bad field is not loaded, but its other rules are checked too: one run of
    ``check`` reports every problem, not one per fix.
    """
    defaults = None
    with contextlib.suppress(ValidationError):
        defaults = Rule.model_validate(doc.get("defaults")) if doc.get("defaults") else None
    schemas: dict[str, SchemaRule] = {}
    raw = doc.get("schemas")
    for pattern, body in raw.items() if isinstance(raw, dict) else ():
        if not isinstance(pattern, str) or not SCHEMA_PATTERN_RE.match(pattern):
            continue  # pydantic has reported the name already
        try:
            schemas[pattern] = SchemaRule.model_validate(body)
        except ValidationError:
            continue
    return PolicyFile.model_construct(version=1, defaults=defaults, schemas=schemas)


def _semantic_checks(parsed: _Parsed, default_mode: Mode, problems: list[Problem]) -> None:
    _check_names(parsed, problems)
    _check_ramps(parsed, problems)
    _check_modes(parsed, default_mode, problems)


def _parse_file(
    path: Path,
    relative: str,
    problems: list[Problem],
    default_mode: Mode,
    cache: ParseCache | None = None,
) -> _Parsed | None:
    display = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        problems.append(Problem(display, 0, 0, f"cannot read the file: {exc.strerror or exc}"))
        return None
    key = (display, relative, default_mode)
    if cache is not None:
        cached = cache.get(key, data)
        if cached is not None:
            return cached
    item = _parse_bytes(display, relative, data, problems, default_mode)
    if item is not None and cache is not None:
        cache.put(key, item)
    return item


def _parse_bytes(
    display: str, relative: str, data: bytes, problems: list[Problem], default_mode: Mode
) -> _Parsed | None:
    if len(data) > MAX_POLICY_FILE_BYTES:
        problems.append(
            Problem(display, 0, 0, f"file is {len(data)} bytes; policy files are limited to 8 MiB")
        )
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(Problem(display, 0, 0, f"not UTF-8 text (byte {exc.start})"))
        return None
    tree = _Tree(display)
    try:
        doc = tree.parse(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        what = exc.problem or exc.context or "invalid YAML"
        problems.append(Problem(display, line, col, f"invalid YAML: {what}"))
        return None
    except yaml.YAMLError as exc:
        problems.append(Problem(display, 0, 0, f"invalid YAML: {exc}"))
        return None
    except _TooBigError:
        problems.append(
            Problem(display, 0, 0, "the YAML expands to too many nodes (aliases?); refused")
        )
        return None
    except RecursionError:
        problems.append(Problem(display, 0, 0, "the YAML nests too deeply; refused"))
        return None
    if doc is None:
        problems.append(Problem(display, 1, 1, "the file is empty; it needs at least 'version: 1'"))
        return None
    if not isinstance(doc, dict):
        line, col = tree.mark(())  # where the document starts, after any leading comments
        problems.append(
            Problem(display, line, col, "a policy file is a mapping with 'version' and 'schemas'")
        )
        return None
    try:
        model = PolicyFile.model_validate(doc)
    except ValidationError as exc:
        _pydantic_problems(tree, exc)
        model = _partial_model(doc)
    parsed = _Parsed(display, relative, data, model, tree)
    _semantic_checks(parsed, default_mode, tree.problems)
    if tree.problems:  # duplicate keys, pydantic's findings, the semantic checks
        problems.extend(sorted(set(tree.problems), key=lambda p: (p.line, p.column, p.message)))
        return None
    parsed.entries = list(_entries(parsed))
    return parsed


def _check_names(parsed: _Parsed, problems: list[Problem]) -> None:
    for pattern in parsed.model.schemas:
        if is_glob(pattern):
            opened = pattern.find("[")
            if opened != -1 and pattern.find("]", opened + 2) == -1:
                line, col = parsed.tree.mark(("schemas", pattern), key=True)
                problems.append(
                    Problem(
                        parsed.file,
                        line,
                        col,
                        f"{pattern!r} has a '[' with no closing ']'; a glob class is written "
                        "like [abc] or [!x]",
                    )
                )
        elif not SCHEMA_NAME_RE.match(pattern):
            line, col = parsed.tree.mark(("schemas", pattern), key=True)
            problems.append(
                Problem(
                    parsed.file,
                    line,
                    col,
                    f"{pattern!r} is not a schema name (letters, digits, '_', '.', '-')",
                )
            )


def _check_ramps(parsed: _Parsed, problems: list[Problem]) -> None:
    """Ramp steps in strictly increasing time order, reported at the first step out of order."""
    rules: list[tuple[Path_, Rule]] = []
    if parsed.model.defaults is not None:
        rules.append((("defaults",), parsed.model.defaults))
    for pattern, rule in parsed.model.schemas.items():
        rules.append((("schemas", pattern), rule))
        rules.extend(
            (("schemas", pattern, "tracks", track), track_rule)
            for track, track_rule in (rule.tracks or {}).items()
        )
    for path, level in rules:
        steps = level.ramp or []
        for i in range(1, len(steps)):
            if steps[i].at <= steps[i - 1].at:
                line, col = parsed.tree.mark((*path, "ramp", i, "at"))
                problems.append(
                    Problem(
                        parsed.file,
                        line,
                        col,
                        f"{_describe((*path, 'ramp', i))}: ramp steps must be in strictly "
                        f"increasing time order, but {steps[i].at.isoformat()} is not after "
                        f"the step before it ({steps[i - 1].at.isoformat()})",
                    )
                )
                break


def _check_modes(parsed: _Parsed, default_mode: Mode, problems: list[Problem]) -> None:
    """Baseline stricter than mode, checked on the effective (inherited) values of every level."""
    levels: list[tuple[Path_, list[Rule]]] = []
    defaults = parsed.model.defaults
    chain: list[Rule] = [defaults] if defaults is not None else []
    if defaults is not None:
        levels.append((("defaults",), chain))
    for pattern, rule in parsed.model.schemas.items():
        levels.append((("schemas", pattern), [*chain, rule]))
        for track, track_rule in (rule.tracks or {}).items():
            levels.append((("schemas", pattern, "tracks", track), [*chain, rule, track_rule]))
    for path, rules in levels:
        mode, baseline = default_mode, None
        for level in rules:
            mode = level.mode if level.mode is not None else mode
            baseline = level.baseline if level.baseline is not None else baseline
        if baseline is not None and baseline.rank > mode.rank:
            written = "baseline" if rules[-1].baseline is not None else "mode"
            if rules[-1].baseline is None and rules[-1].mode is None:
                continue  # nothing written at this level; reported where it is written
            line, col = parsed.tree.mark((*path, written))
            problems.append(
                Problem(
                    parsed.file,
                    line,
                    col,
                    f"{_describe(path)}: baseline {baseline.value!r} is stricter than mode "
                    f"{mode.value!r}; keys outside the canary get the baseline, so it must not "
                    "be stricter than the mode",
                )
            )


def _entries(parsed: _Parsed) -> Iterator[PolicyEntry]:
    for pattern, rule in parsed.model.schemas.items():
        line, col = parsed.tree.mark(("schemas", pattern), key=True)
        glob = is_glob(pattern)
        track_marks = {
            track: parsed.tree.mark(("schemas", pattern, "tracks", track), key=True)
            for track in (rule.tracks or {})
        }
        yield PolicyEntry(
            pattern=pattern,
            rule=rule,
            defaults=parsed.model.defaults,
            file=parsed.file,
            line=line,
            column=col,
            specificity=glob_specificity(pattern) if glob else len(pattern),
            regex=re.compile(fnmatch.translate(pattern)) if glob else None,
            track_marks=MappingProxyType(track_marks),
        )


def _glob_conflicts(
    globs: Sequence[PolicyEntry],
    names: Iterable[str],
    problems: list[Problem],
    exact: Mapping[str, PolicyEntry],
) -> None:
    reported: set[tuple[str, str]] = set()
    for name in sorted(set(names)):
        first = second = None
        for glob in globs:  # most specific first: stop once past the winner's specificity
            if first is not None and glob.specificity < first.specificity:
                break
            if glob.regex is not None and glob.regex.match(name):
                if first is None:
                    first = glob
                else:
                    second = glob
                    break
        if first is None or second is None:
            continue
        pair = (first.where, second.where)
        if pair in reported:
            continue
        reported.add(pair)
        problems.append(
            Problem(
                second.file,
                second.line,
                second.column,
                f"globs {first.pattern!r} ({first.where}) and {second.pattern!r} are equally "
                f"specific and both match {name!r}; make one more specific"
                + (
                    f" (the exact rule at {exact[name].where} decides {name!r} today, but the "
                    "tie would decide it once that rule is gone)"
                    if name in exact
                    else f", or add an exact rule for {name!r}"
                ),
            )
        )


def load_policy_set(
    paths: Iterable[str | Path],
    *,
    default_mode: Mode = Mode.WARN,
    known_schemas: Iterable[str] = (),
    missing_ok: bool = False,
    cache: ParseCache | None = None,
) -> PolicySet:
    """Load every policy file under ``paths`` as one ``PolicySet``.

    ``known_schemas`` (names the registry knows) take part in the glob-conflict check;
    ``default_mode`` (``REGISTRY_ENFORCEMENT``) is what a rule without ``mode`` inherits.
    Raises ``PolicyLoadError`` with every problem found; warnings ride on the returned set.
    With a ``cache``, files whose bytes did not change since the last load are not parsed again.
    """
    paths = list(paths)
    # Sorted across all paths too, so the checksum does not depend on the order they are given.
    files = sorted(discover_files(paths, missing_ok=missing_ok), key=lambda f: (f[1], str(f[0])))
    problems: list[Problem] = []
    parsed: list[_Parsed] = []
    for path, relative in files:
        item = _parse_file(path, relative, problems, default_mode, cache)
        if item is not None:
            parsed.append(item)
    if cache is not None:
        cache.keep_only({(str(path), relative, default_mode) for path, relative in files})
    return _assemble(parsed, problems, known_schemas)


def load_policy_texts(
    files: Iterable[tuple[str, str, bytes]],
    *,
    default_mode: Mode = Mode.WARN,
    known_schemas: Iterable[str] = (),
) -> PolicySet:
    """Load a policy set from contents in hand: ``(display name, relative path, bytes)`` each.

    What ``plan`` uses for the files of a git revision, which exist only as ``git show`` output;
    problems are reported under the display names.
    """
    problems: list[Problem] = []
    parsed: list[_Parsed] = []
    for display, relative, data in sorted(files, key=lambda f: (f[1], f[0])):
        item = _parse_bytes(display, relative, data, problems, default_mode)
        if item is not None:
            parsed.append(item)
    return _assemble(parsed, problems, known_schemas)


def _assemble(
    parsed: list[_Parsed], problems: list[Problem], known_schemas: Iterable[str]
) -> PolicySet:
    """Parsed files -> one checked, checksummed PolicySet (or PolicyLoadError)."""

    exact: dict[str, PolicyEntry] = {}
    globs: list[PolicyEntry] = []
    glob_by_pattern: dict[str, PolicyEntry] = {}
    for item in parsed:
        for entry in item.entries:
            previous = exact.get(entry.pattern) if not entry.is_glob else None
            if entry.is_glob:
                previous = glob_by_pattern.get(entry.pattern)
                if previous is None:
                    globs.append(entry)
                    glob_by_pattern[entry.pattern] = entry
                    continue
            if previous is not None:
                problems.append(
                    Problem(
                        entry.file,
                        entry.line,
                        entry.column,
                        f"schema {entry.pattern!r} is already defined at {previous.where}; "
                        "a name or glob may have one rule only",
                    )
                )
                continue
            exact[entry.pattern] = entry
    globs.sort(key=lambda g: (-g.specificity, g.pattern, g.file, g.line))
    _glob_conflicts(globs, [*exact, *known_schemas], problems, exact)

    problems.sort(key=lambda p: (p.file, p.line, p.column))
    if any(p.severity == "error" for p in problems):
        raise PolicyLoadError(problems)

    digest = hashlib.sha256()
    for item in parsed:
        digest.update(item.relative.encode() + b"\0" + item.text + b"\0")
    return PolicySet(
        checksum=digest.hexdigest()[:16],
        files=tuple(item.file for item in parsed),
        exact=MappingProxyType(exact),
        globs=tuple(globs),
        warnings=tuple(problems),
    )
