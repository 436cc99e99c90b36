"""Policy files -> one immutable, checksummed ``PolicySet`` (docs/policy-reference.md).

Reading a file takes one of two roads, and both give the same policy set:

- **the quick read** (every file, first): the C parser's events are built straight into plain
  data (``_quick_read``), pydantic validates it and the cross-field checks run; only the
  positions of schema and track keys are kept, which is all a loaded set needs. A file that is
  fine is done here, about four times faster than composing YAML nodes.
- **the marked read** (only a file the quick read has a doubt about: any error, a duplicate or
  non-text key, a merge key, an alias near the schema keys, too many nodes): the file is composed
  into nodes and every key and value keeps its ``line:column`` (``_Tree``), so every problem,
  found by the YAML reader, by pydantic or by the cross-file checks, names where it is written.

YAML is read as YAML 1.2 core schema (``PolicyYamlLoader``): booleans are only ``true``/``false``
(a bare ``off`` stays the string ``"off"``, so ``mode: off`` works unquoted), numbers are decimal,
``0o`` octal or ``0x`` hex with no base-60 (``1:30`` is the string ``"1:30"``, never 90) and no
``_`` separators. Two extras stay from YAML 1.1 because policy files use them: unquoted
timestamps (ramp ``at`` values) and merge keys (``<<``). No scalar can make the reader raise
anything but a problem with a position: an impossible date stays a string (which the ``at``
field then refuses, saying why), a bad ``!!int``/``!!float``/``!!bool`` or an integer too long to
convert is a problem at the scalar.

All problems of a run are collected; a set with any error is never returned, so a half-valid set
can never be applied. Every problem names ``file:line:column``, 1:1 when it concerns a file or
path as a whole (a file too big, not UTF-8, a symlink pointing outside its policy path).
"""

from __future__ import annotations

import contextlib
import fnmatch
import gc
import hashlib
import os
import re
import stat
import sys
import threading
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)

from policy_engine.core.policy_set import PolicyEntry, PolicySet, glob_specificity, is_glob
from policy_engine.errors import PolicyLoadError, Problem, Severity
from policy_engine.modes import Mode
from policy_engine.policy.model import (
    SCHEMA_NAME_RE,
    SCHEMA_PATTERN_RE,
    Guardrail,
    PolicyFile,
    RampStep,
    Rule,
    SchemaRule,
)

#: A policy file larger than this is refused before parsing (a policy is a few KB).
MAX_POLICY_FILE_BYTES = 8 * 1024 * 1024
#: Most YAML nodes one file may expand to, aliases included (stops "billion laughs").
MAX_NODES_PER_FILE = 1_000_000
#: Deepest nesting read; the format itself is at most eight levels deep.
MAX_DEPTH = 64
#: What a policy path contributes when it is a directory.
POLICY_SUFFIXES = (".yaml", ".yml")

Path_ = tuple[str | int, ...]
Mark = tuple[int, int]

__all__ = ["ParseCache", "PolicyYamlLoader", "load_policy_set", "load_policy_texts"]


# --------------------------------------------------------------------------- YAML 1.2 scalars

_STR_TAG = "tag:yaml.org,2002:str"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_NULL_TAG = "tag:yaml.org,2002:null"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"

# The YAML 1.2 core schema's patterns (https://yaml.org/spec/1.2.2/#1032-tag-resolution).
_INT_RE = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT_RE = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL_RE = re.compile(r"^(?:~|null|Null|NULL|)$")
_MERGE_RE = re.compile(r"^(?:<<)$")
# YAML 1.1's timestamp, as PyYAML resolves it (ramp times are written unquoted).
_TIMESTAMP_RE = re.compile(
    r"""^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
    |[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?
     (?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?
     (?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$""",
    re.X,
)
_TIMESTAMP_PARTS = yaml.constructor.SafeConstructor.timestamp_regexp


class _TooLongError(ValueError):
    """A well-formed integer with more digits than Python converts (4 300 by default)."""


def _int_value(text: str) -> int:
    """A YAML 1.2 integer; ``ValueError`` if ``text`` is none, ``_TooLongError`` if too long."""
    if not _INT_RE.match(text):
        raise ValueError(f"{text!r} is not a whole number")
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    digits = len(text.lstrip("+-"))
    limit = sys.get_int_max_str_digits()
    if limit and digits > limit:
        raise _TooLongError(
            f"a whole number of {digits} digits is too long to read (at most {limit})"
        )
    return int(text, 10)


def _float_value(text: str) -> float:
    """A YAML 1.2 float (``.inf``, ``.nan`` included); ``ValueError`` if ``text`` is none."""
    if not _FLOAT_RE.match(text):
        raise ValueError(f"{text!r} is not a number")
    if text.lstrip("+-").lower() == ".inf":
        return float("-inf") if text.startswith("-") else float("inf")
    if text.lower() == ".nan":
        return float("nan")
    return float(text)


def _bool_value(text: str) -> bool:
    if not _BOOL_RE.match(text):
        raise ValueError(f"{text!r} is not true or false")
    return text.lower() == "true"


def _null_value(text: str) -> None:
    return None


def _timestamp_value(text: str) -> date | datetime | str:
    """A date or time as YAML 1.1 writes it, or ``text`` itself when it names none.

    ``2026-13-45``, February 30, hour 25 or offset ``+99:00`` stay strings: a field that wants a
    time then says what is wrong with it, at its position, instead of the reader failing.
    """
    match = _TIMESTAMP_PARTS.match(text)
    if match is None:
        return text
    part = match.groupdict()
    try:
        day = date(int(part["year"]), int(part["month"]), int(part["day"]))
        if not part["hour"]:
            return day
        zone = None
        if part["tz_sign"]:
            offset = timedelta(hours=int(part["tz_hour"]), minutes=int(part["tz_minute"] or 0))
            zone = timezone(-offset if part["tz_sign"] == "-" else offset)
        elif part["tz"]:
            zone = UTC
        micro = int((part["fraction"] or "")[:6].ljust(6, "0"))
        return datetime(
            day.year,
            day.month,
            day.day,
            int(part["hour"]),
            int(part["minute"]),
            int(part["second"]),
            micro,
            tzinfo=zone,
        )
    except (ValueError, OverflowError):
        return text


#: How each implicitly resolved tag turns text into a value (the quick read uses these directly).
_TEXT_VALUES: dict[str, Callable[[str], object]] = {
    _INT_TAG: _int_value,
    _FLOAT_TAG: _float_value,
    _BOOL_TAG: _bool_value,
    _NULL_TAG: _null_value,
    _TIMESTAMP_TAG: _timestamp_value,
}


class _BadScalarError(yaml.constructor.ConstructorError):
    """A scalar whose tag its text cannot satisfy (``!!int abc``); carries the scalar's mark."""

    def __init__(self, message: str, mark: yaml.Mark) -> None:
        super().__init__(None, None, message, mark)


_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: Whether the C parser is in use: its reader errors give byte offsets, the Python one's
#: character offsets.
_C_PARSER = _BaseLoader is not yaml.SafeLoader


class PolicyYamlLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """``SafeLoader`` (the C one when available) reading YAML 1.2 core schema scalars.

    Booleans are ``true``/``false`` only, numbers have no base-60, ``_`` or leading-zero octal
    forms; timestamps and merge keys are kept. Scalar constructors never raise ``ValueError``:
    a value its tag cannot take is a ``ConstructorError`` at the scalar's mark.

    >>> yaml.load("a: off\\nb: 1:30\\nc: 017\\nd: 0x1f", Loader=PolicyYamlLoader)
    {'a': 'off', 'b': '1:30', 'c': 17, 'd': 31}
    """

    def _typed(self, node: yaml.Node, convert: Callable[[str], object], what: str) -> object:
        try:
            return convert(self.construct_scalar(node))
        except _TooLongError as exc:
            raise _BadScalarError(str(exc), node.start_mark) from None
        except ValueError as exc:
            raise _BadScalarError(f"{exc}, but it is tagged {what}", node.start_mark) from None

    def construct_yaml_int(self, node: yaml.Node) -> object:
        """A YAML 1.2 integer."""
        return self._typed(node, _int_value, "!!int")

    def construct_yaml_float(self, node: yaml.Node) -> object:
        """A YAML 1.2 float (an integer's text is a float too: ``!!float 1``)."""
        return self._typed(node, _float_value, "!!float")

    def construct_yaml_bool(self, node: yaml.Node) -> object:
        """``true`` or ``false`` in any of YAML 1.2's three spellings."""
        return self._typed(node, _bool_value, "!!bool")

    def construct_yaml_timestamp(self, node: yaml.Node) -> object:
        """A date or time, or the text itself when it names none (see ``_timestamp_value``)."""
        return _timestamp_value(self.construct_scalar(node))


def _use_yaml_1_2_scalars(loader: type[PolicyYamlLoader]) -> None:
    """Give ``loader`` the YAML 1.2 resolvers above and its scalar constructors."""
    loader.yaml_implicit_resolvers = {}
    for tag, pattern, first in (
        (_NULL_TAG, _NULL_RE, [*"~nN", ""]),
        (_BOOL_TAG, _BOOL_RE, list("tTfF")),
        (_INT_TAG, _INT_RE, list("-+0123456789")),  # before float: "12" is an int
        (_FLOAT_TAG, _FLOAT_RE, list("-+.0123456789")),
        (_MERGE_TAG, _MERGE_RE, ["<"]),
        (_TIMESTAMP_TAG, _TIMESTAMP_RE, list("0123456789")),
    ):
        loader.add_implicit_resolver(tag, pattern, first)
    for tag, method in (
        (_INT_TAG, loader.construct_yaml_int),
        (_FLOAT_TAG, loader.construct_yaml_float),
        (_BOOL_TAG, loader.construct_yaml_bool),
        (_TIMESTAMP_TAG, loader.construct_yaml_timestamp),
    ):
        loader.add_constructor(tag, method)


_use_yaml_1_2_scalars(PolicyYamlLoader)


# --------------------------------------------------------------------------- the marked read


class _TooBigError(Exception):
    """The document expands past ``MAX_NODES_PER_FILE`` while building ``path``."""

    def __init__(self, path: Path_) -> None:
        super().__init__(path)
        self.path = path


class _TooDeepError(Exception):
    """The document nests deeper than ``MAX_DEPTH`` at ``mark``."""

    def __init__(self, mark: Mark) -> None:
        super().__init__(mark)
        self.mark = mark


#: Stands in for a scalar that could not be read (already reported), so the rest of the file
#: is still checked.
_UNREADABLE = object()


class _Tree:
    """A YAML document as plain data plus the position of every key and value."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.key_marks: dict[Path_, Mark] = {}
        self.value_marks: dict[Path_, Mark] = {}
        self.problems: list[Problem] = []
        #: Paths whose value could not be read; pydantic's findings there are not repeated.
        self.unreadable: set[Path_] = set()
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

    def _scalar(self, node: yaml.Node, path: Path_) -> Any:
        """The value of a scalar node; one that cannot be read is reported and stands in."""
        try:
            return self._loader.construct_object(node)
        except yaml.MarkedYAMLError as exc:
            self.unreadable.add(path)
            mark = exc.problem_mark or node.start_mark
            where = _describe(path[:-1] if path[-1:] == ("[key]",) else path)
            self.error((mark.line + 1, mark.column + 1), f"{where}: {_yaml_message(exc)}")
            return _UNREADABLE

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self._nodes += 1
        if self._nodes > MAX_NODES_PER_FILE:
            raise _TooBigError(path)
        mark = (node.start_mark.line + 1, node.start_mark.column + 1)
        self.value_marks[path] = mark
        if len(path) > MAX_DEPTH:
            raise _TooDeepError(mark)
        if isinstance(node, yaml.MappingNode):
            merged = self._flatten(node)
            result: dict[str, Any] = {}
            explicit: set[str] = set()
            for index, (key_node, value_node) in enumerate(node.value):
                key_mark = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if not isinstance(key_node, yaml.ScalarNode):
                    self.error(key_mark, "a mapping key must be a plain name, not a list or map")
                    continue
                key = self._scalar(key_node, (*path, "[key]"))
                if key is _UNREADABLE:
                    continue
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
        return self._scalar(node, path)

    def _flatten(self, node: yaml.MappingNode) -> int:
        """Apply YAML merge keys (``<<``); the merged pairs come first: return how many."""
        if id(node) not in self._merged:
            written = sum(1 for k, _ in node.value if k.tag != _MERGE_TAG)
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


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    """What a YAML error says, in one line."""
    if isinstance(exc, _BadScalarError):
        return str(exc.problem)
    what = exc.problem or exc.context or "unreadable"
    if exc.problem and exc.context and not exc.context.startswith("while "):
        what = f"{exc.context}, {exc.problem}"  # "expected a single document..., but found..."
    return f"invalid YAML: {what}"


# --------------------------------------------------------------------------- the quick read


class _DoubtError(Exception):
    """The quick read cannot vouch for this file: the marked read decides."""


_NO_KEY: Any = object()


def _quick_read(text: str, display: str) -> tuple[Any, _Tree]:
    """``text`` as plain data, straight from the parser's events, and the marks a set needs.

    Raises ``_DoubtError`` (or whatever the parser raises) for anything that is not plainly fine: a
    YAML error, a duplicate or non-text key, a merge key, a collection with an unusual tag, an
    alias where the schema or track keys are (their positions would be the anchor's), more than
    ``MAX_NODES_PER_FILE`` nodes counting aliases, an anchor used before it is complete.
    Otherwise the data equals what the marked read builds, and the returned tree knows the
    position of every schema key and track key.
    """
    loader = PolicyYamlLoader(text)
    try:
        return _build_from_events(loader, _Tree(display))
    finally:
        loader.dispose()


def _build_from_events(loader: Any, tree: _Tree) -> tuple[Any, _Tree]:
    get_event = loader.get_event
    resolvers: dict[str, list[tuple[str, re.Pattern[str]]]] = loader.yaml_implicit_resolvers
    key_marks = tree.key_marks
    anchors: dict[str, tuple[Any, int]] = {}
    resolved_texts: dict[str, Any] = {}
    # One frame per open collection: [container, pending key, path, keep key marks?,
    # anchor, nodes before it].
    stack: list[list[Any]] = []
    nodes = 0
    get_event()  # the stream's start
    if get_event().__class__ is not DocumentStartEvent:
        raise _DoubtError  # no document: the marked read says the file is empty
    while True:
        event = get_event()
        kind = event.__class__
        if kind is ScalarEvent:
            nodes += 1
            value = event.value
            tag = event.tag
            if tag is None or tag == "!":
                if event.implicit[0]:
                    # Keys and values repeat (mode, canary, strict, the same dates): resolve each
                    # text once per file. Every resolved value is immutable, so sharing is safe.
                    known = resolved_texts.get(value, _NO_KEY)
                    if known is _NO_KEY:
                        known = value
                        for resolved, pattern in resolvers.get(value[:1], ()):
                            if pattern.match(value):
                                convert = _TEXT_VALUES.get(resolved)
                                if convert is None:
                                    raise _DoubtError  # a merge key
                                known = convert(value)
                                break
                        resolved_texts[value] = known
                    value = known
            elif tag != _STR_TAG:
                node = yaml.ScalarNode(tag, value, event.start_mark, event.end_mark, event.style)
                value = loader.construct_object(node)
            if event.anchor is not None:
                if event.anchor in anchors:
                    raise _DoubtError
                anchors[event.anchor] = (value, 1)
        elif kind is MappingStartEvent or kind is SequenceStartEvent:
            mapping = kind is MappingStartEvent
            if event.tag not in (None, "!", _MAP_TAG if mapping else _SEQ_TAG):
                raise _DoubtError
            if not stack:
                path: Path_ = ()
            else:
                top = stack[-1]
                if top[0].__class__ is list:
                    path = (*top[2], len(top[0]))
                elif top[1] is _NO_KEY:
                    raise _DoubtError  # a collection as a key
                else:
                    path = (*top[2], top[1])
                if len(path) > MAX_DEPTH:
                    raise _DoubtError
            keep = mapping and (
                path == ("schemas",)
                or (len(path) == 3 and path[0] == "schemas" and path[2] == "tracks")
            )
            stack.append([{} if mapping else [], _NO_KEY, path, keep, event.anchor, nodes])
            nodes += 1
            continue
        elif kind is MappingEndEvent or kind is SequenceEndEvent:
            container, _, _, _, anchor, before = stack.pop()
            value = container
            if anchor is not None:
                if anchor in anchors:
                    raise _DoubtError
                anchors[anchor] = (value, nodes - before)
        elif kind is AliasEvent:
            if event.anchor not in anchors or not stack:
                raise _DoubtError  # undefined, or an anchor still open (a recursive alias)
            top = stack[-1]
            if top[0].__class__ is dict and top[1] is not _NO_KEY:
                at = (*top[2], top[1])
                if at[0] == "schemas" and len(at) <= 3:
                    raise _DoubtError  # the marked read gives keys in here the anchor's positions
            value, size = anchors[event.anchor]
            nodes += size
        else:
            raise _DoubtError
        if nodes > MAX_NODES_PER_FILE:
            raise _DoubtError
        if not stack:
            break
        top = stack[-1]
        container = top[0]
        if container.__class__ is list:
            container.append(value)
        elif top[1] is _NO_KEY:
            if value.__class__ is not str or value in container:
                raise _DoubtError  # not a text key, or a duplicate: the marked read reports it
            top[1] = value
            if top[3]:
                mark = event.start_mark
                key_marks[(*top[2], value)] = (mark.line + 1, mark.column + 1)
        else:
            container[top[1]] = value
            top[1] = _NO_KEY
    if get_event().__class__ is not DocumentEndEvent or not isinstance(get_event(), StreamEndEvent):
        raise _DoubtError  # a second document
    return value, tree


# --------------------------------------------------------------------------- pydantic errors


def _unwrap(annotation: Any) -> Any:
    """``X`` from ``X | None`` and ``Annotated[X, ...]``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation


def _model_at(path: Path_) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at ``path`` of a policy file, if any.

    Follows the models' own field types (``schemas`` -> ``dict[str, SchemaRule]``, ``tracks``
    -> ``dict[str, Rule]``, ``ramp`` -> ``list[RampStep]``...), so help texts never drift from
    the format.
    """
    current: Any = PolicyFile
    for part in path:
        if isinstance(current, type) and issubclass(current, BaseModel):
            found = current.model_fields.get(str(part))
            if found is None:
                return None
            current = _unwrap(found.annotation)
        elif typing.get_origin(current) is dict:
            current = _unwrap(typing.get_args(current)[1])
        elif typing.get_origin(current) is list and isinstance(part, int):
            current = _unwrap(typing.get_args(current)[0])
        else:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


#: "allowed here:" for each model of the format, in the order its fields are declared.
_FIELD_HELP: dict[type[BaseModel], str] = {
    model: ", ".join(model.model_fields)
    for model in (PolicyFile, Rule, SchemaRule, Guardrail, RampStep)
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
#: Text that YAML 1.1 would have read as a number, and YAML 1.2 (what is read here) does not.
_NUMBER_LIKE = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])*(?:\.[0-9_]*)?$")


def _allowed_fields(parent: Path_) -> str:
    model = _model_at(parent)
    return _FIELD_HELP.get(model, "") if model is not None else ""


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


def _type_message(kind: str, message: str, given: object) -> str:
    """The friendly wording of a type error, with a word on text that looks like a number."""
    if kind in ("float_type", "int_type") and isinstance(given, str):
        hint = (
            "; YAML 1.2 reads it as text (no base-60 '1:30', no '_' separators)"
            if _NUMBER_LIKE.match(given) and not _INT_RE.match(given)
            else ""
        )
        return f"{message}, not the text {given!r}{hint}"
    return message


def _pydantic_problems(tree: _Tree, exc: ValidationError) -> None:
    seen: set[tuple[Path_, str]] = set()
    for err in exc.errors(include_url=False):
        loc: Path_ = tuple(p for p in err["loc"] if p != "[key]")
        is_key = "[key]" in err["loc"]
        kind = err["type"]
        if (loc, kind) in seen or any(loc[:n] in tree.unreadable for n in range(len(loc) + 1)):
            continue  # reported already, or where the YAML reader already said what is wrong
        seen.add((loc, kind))
        message = _FRIENDLY.get(kind) or str(err["msg"]).removeprefix("Value error, ")
        if kind == "extra_forbidden":
            mark = tree.mark(loc, key=True)
            allowed = _allowed_fields(loc[:-1])
            text = f"unknown field {loc[-1]!r} in {_describe(loc[:-1])}" + (
                f"; allowed here: {allowed}" if allowed else ""
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
            text = f"{_describe(loc)}: {_type_message(kind, message, err.get('input'))}"
        tree.error(mark, text)


# --------------------------------------------------------------------------- discovery


def discover_files(
    paths: Iterable[str | Path],
    *,
    missing_ok: bool = False,
    problems: list[Problem] | None = None,
) -> list[tuple[Path, str]]:
    """Every ``*.yaml``/``*.yml`` under ``paths`` (or the path itself if it is a file).

    Each file comes with its path relative to its policy path: the checksum covers that, so it
    does not depend on where the files sit. Hidden entries are skipped: editors' swap files, and
    the ``..data``/``..<timestamp>`` directories of a Kubernetes ConfigMap, whose files are also
    reachable through the top-level symlinks (reading both would define every rule twice).

    Symlinks, to files and to directories alike, are followed when their target lies inside the
    same policy path, and refused (an error) when it lies outside: the watcher only sees changes
    inside the policy paths, so a file linked in from elsewhere would load once and then never
    reload. A file reached twice (directly and through a link) is read once, under the first of
    its paths in sorted order; a link back up its own directory tree is not followed again; a
    dangling link, a link loop or a ``*.yaml`` that is not a regular file is skipped with a
    warning. A path named in ``paths`` itself is read wherever it points.

    Problems go to ``problems`` when given; without it, the first error raises
    ``PolicyLoadError``.
    """
    collected: list[Problem] = [] if problems is None else problems
    found: list[tuple[Path, str]] = []
    for raw in paths:
        root = Path(raw)
        if root.is_file():
            found.append((root, root.name))
        elif root.is_dir():
            found.extend(_walk(root, collected))
        elif not missing_ok:
            what = "is not a file or directory" if root.exists() else "does not exist"
            collected.append(Problem(str(root), 1, 1, f"policy path {what}"))
        if problems is None and any(p.severity == "error" for p in collected):
            raise PolicyLoadError(collected)
    return found


def _walk(root: Path, problems: list[Problem]) -> list[tuple[Path, str]]:
    """The policy files under directory ``root`` by the symlink rule of ``discover_files``."""
    real_root = root.resolve()
    candidates: list[tuple[str, Path, Path]] = []  # (relative, path, real path)

    def warn(path: Path, message: str, severity: Severity = "warning") -> None:
        problems.append(Problem(str(path), 1, 1, message, severity))

    def visit(directory: Path, real_dir: Path, ancestors: frozenset[Path]) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            warn(directory, f"cannot list the directory: {exc.strerror or exc}", "error")
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            wanted = path.suffix in POLICY_SUFFIXES
            if entry.is_symlink():
                try:
                    real = path.resolve(strict=True)
                except FileNotFoundError:
                    target = os.readlink(path)
                    warn(path, f"symlink to {target}, which does not exist; skipped")
                    continue
                except (OSError, RuntimeError):  # a loop of links
                    warn(path, "symlink that loops back on itself; skipped")
                    continue
                if not real.is_relative_to(real_root):
                    if wanted or real.is_dir():
                        warn(
                            path,
                            f"symlink to {real}, outside the policy path {root}: the watcher "
                            "would never see it change; move it into the policy path, or add its "
                            "directory to POLICY_PATHS",
                            "error",
                        )
                    continue
            else:
                real = real_dir / entry.name
            if entry.is_dir():
                if real not in ancestors:  # a link back up the tree is being read already
                    visit(path, real, ancestors | {real})
            elif wanted:
                if entry.is_file():
                    candidates.append((path.relative_to(root).as_posix(), path, real))
                else:
                    warn(path, "not a regular file; skipped")

    visit(root, real_root, frozenset({real_root}))
    found: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for relative, path, real in sorted(candidates):
        if real not in seen:
            seen.add(real)
            found.append((path, relative))
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


class _GcPause:
    """Holds off the cyclic garbage collector while policy sets are built (``with _gc_paused:``).

    A big set is hundreds of thousands of dicts, lists and strings, all alive until the load
    ends, and each burst of allocations makes the collector walk every one of them again: for
    10 000 rules that costs more than the parse itself. Nothing built here forms a reference
    cycle, so reference counting still frees whatever is dropped. Loads may overlap (a reload
    thread, a ``check`` in a test): the collector resumes when the last one ends, and only if
    it was running when the first began.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._resume = False

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._resume = gc.isenabled()
                gc.disable()
            self._depth += 1

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._resume:
                gc.enable()


_gc_paused = _GcPause()


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


def _read(path: Path, display: str, problems: list[Problem]) -> bytes | None:
    """The bytes of a regular file of at most ``MAX_POLICY_FILE_BYTES``, else a problem.

    Opened without blocking and checked to be a regular file before anything is read, so a FIFO
    swapped in under a policy name cannot hang a reload; a huge file is refused by its size.
    """
    try:
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags)
    except OSError as exc:
        problems.append(Problem(display, 1, 1, f"cannot read the file: {exc.strerror or exc}"))
        return None
    with os.fdopen(fd, "rb") as handle:
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                problems.append(
                    Problem(display, 1, 1, "not a regular file (a FIFO, socket or device); skipped")
                )
                return None
            data = handle.read(MAX_POLICY_FILE_BYTES + 1)
        except OSError as exc:
            problems.append(Problem(display, 1, 1, f"cannot read the file: {exc.strerror or exc}"))
            return None
    if len(data) > MAX_POLICY_FILE_BYTES:
        size = max(info.st_size, len(data))
        problems.append(
            Problem(display, 1, 1, f"file is {size} bytes; policy files are limited to 8 MiB")
        )
        return None
    return data


def _parse_file(
    path: Path,
    relative: str,
    problems: list[Problem],
    default_mode: Mode,
    cache: ParseCache | None = None,
) -> _Parsed | None:
    display = str(path)
    data = _read(path, display, problems)
    if data is None:
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


def _position(data: bytes, offset: int) -> Mark:
    """``(line, column)`` of byte ``offset`` in ``data``, columns counted in characters."""
    offset = max(0, min(offset, len(data)))
    start = data.rfind(b"\n", 0, offset) + 1
    column = len(data[start:offset].decode("utf-8", errors="replace")) + 1
    return data.count(b"\n", 0, offset) + 1, column


def _parse_bytes(
    display: str, relative: str, data: bytes, problems: list[Problem], default_mode: Mode
) -> _Parsed | None:
    if len(data) > MAX_POLICY_FILE_BYTES:
        problems.append(
            Problem(display, 1, 1, f"file is {len(data)} bytes; policy files are limited to 8 MiB")
        )
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _position(data, exc.start)
        problems.append(Problem(display, line, col, f"not UTF-8 text (byte {exc.start})"))
        return None
    with contextlib.suppress(Exception):  # any doubt: the marked read below decides
        quick = _quick_parsed(display, relative, data, text, default_mode)
        if quick is not None:
            return quick
    return _marked_parse(display, relative, data, text, problems, default_mode)


def _quick_parsed(
    display: str, relative: str, data: bytes, text: str, default_mode: Mode
) -> _Parsed | None:
    """The file read the quick way, or ``None`` if it has anything to report."""
    doc, tree = _quick_read(text, display)
    if not isinstance(doc, dict):
        return None
    try:
        model = PolicyFile.model_validate(doc)
    except ValidationError:
        return None
    parsed = _Parsed(display, relative, data, model, tree)
    found: list[Problem] = []
    _semantic_checks(parsed, default_mode, found)
    if found:
        return None
    parsed.entries = list(_entries(parsed))
    return parsed


def _marked_parse(
    display: str,
    relative: str,
    data: bytes,
    text: str,
    problems: list[Problem],
    default_mode: Mode,
) -> _Parsed | None:
    """The file read with the position of every key and value, to report what is wrong."""
    tree = _Tree(display)
    try:
        doc = tree.parse(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problems.append(Problem(display, line, col, _yaml_message(exc)))
        return None
    except yaml.reader.ReaderError as exc:
        # The C reader counts bytes of the UTF-8 text, the Python one characters.
        offset = exc.position if _C_PARSER else len(text[: exc.position].encode())
        line, col = _position(data, offset)
        what = "a NUL byte" if exc.character == 0 else f"the character U+{exc.character:04X}"
        problems.append(Problem(display, line, col, f"invalid YAML: {what} ({exc.reason})"))
        return None
    except yaml.YAMLError as exc:
        problems.append(Problem(display, 1, 1, f"invalid YAML: {exc}"))
        return None
    except _TooBigError as exc:
        line, col = tree.mark(exc.path[:1])
        problems.append(
            Problem(
                display,
                line,
                col,
                f"this value expands to more than {MAX_NODES_PER_FILE} YAML nodes through "
                "aliases (a 'billion laughs' file?); refused",
            )
        )
        return None
    except _TooDeepError as exc:
        problems.append(
            Problem(display, *exc.mark, f"the YAML nests deeper than {MAX_DEPTH} levels; refused")
        )
        return None
    except RecursionError:
        problems.append(Problem(display, 1, 1, "the YAML nests too deeply; refused"))
        return None
    except Exception as exc:  # a reader bug must still be a problem, never a crash
        problems.append(Problem(display, 1, 1, f"cannot read the YAML: {exc!r}"))
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
    if tree.problems:  # duplicate keys, unreadable scalars, pydantic's findings, the checks
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
    problems: list[Problem] = []
    found = discover_files(paths, missing_ok=missing_ok, problems=problems)
    # Sorted across all paths too, so the checksum does not depend on the order they are given.
    files = sorted(found, key=lambda f: (f[1], str(f[0])))
    parsed: list[_Parsed] = []
    with _gc_paused:
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
    with _gc_paused:
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
