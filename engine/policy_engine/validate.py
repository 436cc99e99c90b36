"""Compiled validators and violations as data (SPEC §4).

Two backends, one answer (``tests/conformance`` runs the official JSON Schema Test Suite through
both; ``docs/validation.md`` lists every remaining difference and why):

- ``rust`` (default): jsonschema-rs, about 100x faster than a fresh validator per payload;
- ``python``: the ``jsonschema`` package, with this module's ECMA-262 regular expressions and
  format checks (Python's ``re`` and jsonschema's checkers disagree with the specification in
  places: ``\\d`` matching Bengali digits, ``$`` accepting a trailing newline, lax hostnames).
  ``jsonschema`` and ``referencing`` are imported only when this backend is used: importing them
  costs about a second.

Both check formats (``date-time``, ``email``, ``uuid``, ...), also under 2019-09 and 2020-12
where the specification makes them annotations: a policy that says strict means it. Neither
fetches anything: a ``$ref`` resolves only within the schema and the ``references`` its registry
supplied, and a schema whose ``$ref`` points elsewhere fails to compile with
``InvalidSchemaError``. So does a schema whose ``$ref``s loop without reaching into the payload
(``{"$ref": "#"}``): validating with it could never end.

A schema without ``$schema`` is read as draft 2020-12; a referenced document without ``$schema``
is read in the dialect of the schema that references it. ``http``/``https`` and a trailing ``#``
make no difference in a meta-schema URI. Both backends enforce ``dependencies`` (draft 7's
spelling of ``dependentRequired``/``dependentSchemas``) under 2019-09 and 2020-12 as well.

Violations name the failing keyword and the JSON Pointer of the failing value the same way on
both backends; a ``false`` subschema is reported under the keyword that holds it
(``{"properties": {"x": false}}`` gives keyword ``properties`` at ``/x``), a ``false`` root schema
under keyword ``false``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import jsonschema_rs

from policy_engine.decision import MAX_VIOLATIONS, Violation
from policy_engine.errors import InvalidSchemaError
from policy_engine.settings import BACKENDS, Backend
from policy_engine.sources import SchemaDocument

#: A payload nesting deeper than this is not validated against a schema that can recurse.
MAX_DEPTH = 128
#: Violation messages are cut to this many characters (a message may quote a huge value).
MAX_MESSAGE_CHARS = 300
#: The dialect of a schema without ``$schema``.
DEFAULT_DIALECT = 2020

# Meta-schema URIs without scheme and trailing "#" -> dialect (draft 4, 6, 7, 2019-09, 2020-12).
_DIALECTS: Mapping[str, int] = {
    "json-schema.org/draft-04/schema": 4,
    "json-schema.org/draft-06/schema": 6,
    "json-schema.org/draft-07/schema": 7,
    "json-schema.org/draft/2019-09/schema": 2019,
    "json-schema.org/draft/2020-12/schema": 2020,
}
_DIALECT_URIS: Mapping[int, str] = {
    4: "http://json-schema.org/draft-04/schema#",
    6: "http://json-schema.org/draft-06/schema#",
    7: "http://json-schema.org/draft-07/schema#",
    2019: "https://json-schema.org/draft/2019-09/schema",
    2020: "https://json-schema.org/draft/2020-12/schema",
}
_RUST_DRAFTS: Mapping[int, int] = {
    4: jsonschema_rs.Draft4,
    6: jsonschema_rs.Draft6,
    7: jsonschema_rs.Draft7,
    2019: jsonschema_rs.Draft201909,
    2020: jsonschema_rs.Draft202012,
}


def _words(text: str) -> frozenset[str]:
    """The space-separated words of ``text``: keyword tables written as prose."""
    return frozenset(text.split())


_VALIDATION_VOCABULARY = _words(
    "type const enum multipleOf maximum exclusiveMaximum minimum exclusiveMinimum maxLength "
    "minLength pattern maxItems minItems uniqueItems maxContains minContains maxProperties "
    "minProperties required dependentRequired"
)
_META_DATA_VOCABULARY = _words("title description default deprecated readOnly writeOnly examples")
_CONTENT_VOCABULARY = frozenset({"contentEncoding", "contentMediaType", "contentSchema"})
#: Keywords of each vocabulary a custom meta-schema can list in ``$vocabulary``.
_VOCABULARIES: Mapping[str, frozenset[str]] = {
    "https://json-schema.org/draft/2020-12/vocab/core": _words(
        "$id $schema $ref $anchor $dynamicRef $dynamicAnchor $vocabulary $comment $defs"
    ),
    "https://json-schema.org/draft/2020-12/vocab/applicator": _words(
        "prefixItems items contains additionalProperties properties patternProperties "
        "dependentSchemas propertyNames if then else allOf anyOf oneOf not"
    ),
    "https://json-schema.org/draft/2020-12/vocab/unevaluated": frozenset(
        {"unevaluatedItems", "unevaluatedProperties"}
    ),
    "https://json-schema.org/draft/2020-12/vocab/validation": _VALIDATION_VOCABULARY,
    "https://json-schema.org/draft/2020-12/vocab/format-annotation": frozenset({"format"}),
    "https://json-schema.org/draft/2020-12/vocab/format-assertion": frozenset({"format"}),
    "https://json-schema.org/draft/2020-12/vocab/content": _CONTENT_VOCABULARY,
    "https://json-schema.org/draft/2020-12/vocab/meta-data": _META_DATA_VOCABULARY,
    "https://json-schema.org/draft/2019-09/vocab/core": _words(
        "$id $schema $anchor $ref $recursiveRef $recursiveAnchor $vocabulary $comment $defs"
    ),
    "https://json-schema.org/draft/2019-09/vocab/applicator": _words(
        "additionalItems unevaluatedItems items contains additionalProperties "
        "unevaluatedProperties properties patternProperties dependentSchemas propertyNames if "
        "then else allOf anyOf oneOf not"
    ),
    "https://json-schema.org/draft/2019-09/vocab/validation": _VALIDATION_VOCABULARY,
    "https://json-schema.org/draft/2019-09/vocab/format": frozenset({"format"}),
    "https://json-schema.org/draft/2019-09/vocab/content": _CONTENT_VOCABULARY,
    "https://json-schema.org/draft/2019-09/vocab/meta-data": _META_DATA_VOCABULARY,
}


def json_pointer(parts: Iterable[str | int]) -> str:
    """RFC 6901 JSON Pointer of a path: ``["bars", 3, "close"]`` -> ``/bars/3/close``."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _short(message: str) -> str:
    message = message.split("\n\nFailed validating", 1)[0]
    if len(message) > MAX_MESSAGE_CHARS:
        return message[: MAX_MESSAGE_CHARS - 1] + "…"
    return message


def exceeds_depth(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether containers in ``value`` nest deeper than ``limit`` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


# --------------------------------------------------------------------------- dialects


@dataclass(frozen=True, slots=True)
class Dialect:
    """Which JSON Schema a document is written in.

    ``version`` is 4, 6, 7, 2019 (2019-09) or 2020 (2020-12); ``vocabularies`` the vocabulary
    URIs a custom meta-schema's ``$vocabulary`` lists (``None``: every vocabulary of the version).
    """

    version: int
    vocabularies: frozenset[str] | None = None


def known_dialect(uri: str) -> int | None:
    """The version a standard meta-schema URI names, ``None`` for any other URI.

    ``http``/``https`` and a trailing ``#`` do not matter:
    ``https://json-schema.org/draft-07/schema#`` is draft 7, as its author meant.
    """
    for scheme in ("https://", "http://"):
        if uri.startswith(scheme):
            return _DIALECTS.get(uri[len(scheme) :].removesuffix("#"))
    return None


def dialect_of(doc: SchemaDocument) -> Dialect:
    """The dialect of ``doc``'s schema; ``InvalidSchemaError`` for a meta-schema nobody knows.

    A custom meta-schema must be one of the document's ``references`` (nothing is fetched) and
    be written in a standard dialect; its ``$vocabulary`` picks the keywords that apply.
    """
    document = doc.document
    if not isinstance(document, dict) or "$schema" not in document:
        return Dialect(DEFAULT_DIALECT)
    uri = document["$schema"]
    if not isinstance(uri, str):
        raise _invalid(doc, f"$schema must be a URI string, not {uri!r}")
    version = known_dialect(uri)
    if version is not None:
        return Dialect(version)
    meta = doc.references.get(uri, doc.references.get(uri.removesuffix("#")))
    meta_uri = meta.get("$schema") if isinstance(meta, dict) else None
    version = known_dialect(meta_uri) if isinstance(meta_uri, str) else None
    if version is None:
        raise _invalid(
            doc,
            f"unknown meta-schema {uri!r} ($schema): not a JSON Schema draft and not among the "
            "registry references; nothing is fetched",
        )
    listed = meta.get("$vocabulary") if isinstance(meta, dict) and version >= 2019 else None
    if not isinstance(listed, dict):
        return Dialect(version)
    unknown = sorted(v for v, required in listed.items() if required and v not in _VOCABULARIES)
    if unknown:
        raise _invalid(doc, f"meta-schema {uri!r} requires unknown vocabularies {unknown}")
    return Dialect(version, frozenset(v for v in listed if v in _VOCABULARIES))


def _invalid(doc: SchemaDocument, reason: str) -> InvalidSchemaError:
    return InvalidSchemaError(
        f"{doc.schema} {doc.track}: not a usable JSON Schema: {_short(reason)}",
        schema=doc.schema,
        track=doc.track,
    )


# --------------------------------------------------------------------------- $ref graphs


def _refs(node: Any, pointer: str = "") -> Iterator[tuple[str, str]]:
    """Every (location, reference) of ``$ref``/``$dynamicRef``/``$recursiveRef`` in a schema."""
    stack: list[tuple[Any, str]] = [(node, pointer)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in ("$ref", "$dynamicRef", "$recursiveRef") and isinstance(value, str):
                    yield where, ("!dynamic" if key != "$ref" else value)
                else:
                    stack.append((value, f"{where}/{json_pointer([key])[1:]}"))
        elif isinstance(item, list):
            stack.extend((value, f"{where}/{i}") for i, value in enumerate(item))


def can_recurse(document: Any) -> bool:
    """Whether validation depth may follow the payload's depth rather than the schema's.

    A schema whose ``$ref`` graph has no cycle validates no deeper than it is written, so even a
    deeply nested payload is safe. A cycle (``{"$ref": "#"}``), a dynamic reference or a reference
    outside the document can recurse; those schemas get the ``MAX_DEPTH`` guard, because a native
    validator overflows its stack on a payload nested 100 000 deep.
    """
    edges: dict[str, set[str]] = {}
    for location, ref in _refs(document):
        if ref == "!dynamic" or not (ref == "#" or ref.startswith("#/")):
            return True  # dynamic, external or anchor ("#name") refs: assume the worst
        edges.setdefault(location, set()).add(ref[1:])
    targets = {t for ts in edges.values() for t in ts}
    # target T reaches every target referenced from inside T's subtree
    graph = {
        t: {dst for loc, ds in edges.items() if loc == t or loc.startswith(t + "/") for dst in ds}
        for t in targets
    }
    return _find_cycle(graph, sorted(targets)) is not None


def _find_cycle(graph: Mapping[str, Iterable[str]], starts: Iterable[str]) -> list[str] | None:
    """A cycle in ``graph`` reachable from ``starts`` (its nodes, first one repeated), or None."""
    done: set[str] = set()
    for start in starts:
        if start in done:
            continue
        path: list[str] = []
        on_path: set[str] = set()
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(graph.get(start, ())))]
        path.append(start)
        on_path.add(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
            elif child in on_path:
                return [*path[path.index(child) :], child]
            elif child not in done:
                stack.append((child, iter(graph.get(child, ()))))
                path.append(child)
                on_path.add(child)
    return None


# Keywords whose subschemas apply to the same value as the schema holding them.
_IN_PLACE_ONE = ("not", "if", "then", "else")
_IN_PLACE_LIST = ("allOf", "anyOf", "oneOf")
_IN_PLACE_MAP = ("dependentSchemas", "dependencies")


def _resolve_pointer(document: Any, pointer: str) -> Any:
    node = document
    for raw in pointer.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _in_place_refs(node: Any, version: int) -> Iterator[str]:
    """The local ``$ref`` targets applied to the same value as ``node`` (not to a part of it)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if not isinstance(item, dict):
            continue
        ref = item.get("$ref")
        if isinstance(ref, str) and (ref == "#" or ref.startswith("#/")):
            yield ref[1:]
        if version <= 7 and "$ref" in item:
            continue  # before 2019-09 a $ref's siblings are ignored
        stack.extend(item.get(keyword) for keyword in _IN_PLACE_ONE)
        for keyword in _IN_PLACE_LIST:
            if isinstance(item.get(keyword), list):
                stack.extend(item[keyword])
        for keyword in _IN_PLACE_MAP:
            if isinstance(item.get(keyword), dict):
                stack.extend(item[keyword].values())


def _has_nested_ids(document: Any) -> bool:
    stack = [document]
    root = True
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key in ("$id", "id"):
                value = item.get(key)
                if not root and isinstance(value, str) and not value.startswith("#"):
                    return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        root = False
    return False


def _without_definitions(node: Any) -> Any:
    """``node`` without its ``$defs``/``definitions``: they apply only where a ``$ref`` says."""
    if isinstance(node, dict):
        return {k: v for k, v in node.items() if k not in ("$defs", "definitions")}
    return node


def endless_ref_cycle(document: Any, version: int = DEFAULT_DIALECT) -> list[str] | None:
    """A loop of local ``$ref``s that never moves into the payload, or ``None``.

    ``{"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}``
    sends a validator round in circles on the same value, whatever the payload: the
    specification leaves such schemas undefined, jsonschema-rs accepted every payload and
    jsonschema overflowed its stack. Both backends refuse them instead. Only references by JSON
    Pointer in a document without nested ``$id`` are followed.
    """
    if not isinstance(document, dict) or _has_nested_ids(document):
        return None
    # Only schemas validation can reach: an unused cycle among definitions is harmless.
    graph: dict[str, list[str]] = {}
    pending = [""]
    while pending:
        pointer = pending.pop()
        if pointer in graph:
            continue
        target = document if pointer == "" else _resolve_pointer(document, pointer)
        graph[pointer] = list(_in_place_refs(target, version))
        pending.extend(
            ref[1:]
            for _, ref in _refs(_without_definitions(target))
            if ref == "#" or ref.startswith("#/")
        )
    cycle = _find_cycle(graph, sorted(graph))
    return None if cycle is None else ["#" + node for node in cycle]


# --------------------------------------------------------------------------- ECMA-262 regexes

#: A code point set as sorted, disjoint, inclusive ``(low, high)`` ranges.
_Ranges = tuple[tuple[int, int], ...]

_MAX_CODE_POINT = 0x10FFFF
_DIGITS: _Ranges = ((0x30, 0x39),)
_WORD: _Ranges = ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))
# ECMA-262 WhiteSpace and LineTerminator: the Zs category plus TAB, VT, FF, ZWNBSP, LF, CR, LS, PS.
_SPACE: _Ranges = (
    (0x09, 0x0D),
    (0x20, 0x20),
    (0xA0, 0xA0),
    (0x1680, 0x1680),
    (0x2000, 0x200A),
    (0x2028, 0x2029),
    (0x202F, 0x202F),
    (0x205F, 0x205F),
    (0x3000, 0x3000),
    (0xFEFF, 0xFEFF),
)
_LINE_TERMINATORS = "[\\n\\r\\u2028\\u2029]"
_WORD_CLASS = "[0-9A-Z_a-z]"
_WORD_BOUNDARY = f"(?:(?<={_WORD_CLASS})(?!{_WORD_CLASS})|(?<!{_WORD_CLASS})(?={_WORD_CLASS}))"
_NOT_WORD_BOUNDARY = f"(?:(?<={_WORD_CLASS})(?={_WORD_CLASS})|(?<!{_WORD_CLASS})(?!{_WORD_CLASS}))"
_CONTROL_ESCAPES = {"f": 0x0C, "n": 0x0A, "r": 0x0D, "t": 0x09, "v": 0x0B}
_CLASS_ESCAPES: dict[str, tuple[_Ranges, bool]] = {
    "d": (_DIGITS, False),
    "D": (_DIGITS, True),
    "w": (_WORD, False),
    "W": (_WORD, True),
    "s": (_SPACE, False),
    "S": (_SPACE, True),
}
_MAX_REPEAT = 2**32 - 2  # Python's limit (sre MAXREPEAT - 1); jsonschema-rs refuses more too

# General_Category values and their aliases (ECMA-262 table "Value aliases and canonical values
# for General_Category"), as sets of two-letter Unicode categories.
_GC_GROUPS: dict[str, tuple[str, ...]] = {
    "L": ("Lu", "Ll", "Lt", "Lm", "Lo"),
    "LC": ("Lu", "Ll", "Lt"),
    "M": ("Mn", "Mc", "Me"),
    "N": ("Nd", "Nl", "No"),
    "P": ("Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po"),
    "S": ("Sm", "Sc", "Sk", "So"),
    "Z": ("Zs", "Zl", "Zp"),
    "C": ("Cc", "Cf", "Cs", "Co", "Cn"),
}
_GC_ALIASES: dict[str, str] = {
    "Letter": "L",
    "Cased_Letter": "LC",
    "Uppercase_Letter": "Lu",
    "Lowercase_Letter": "Ll",
    "Titlecase_Letter": "Lt",
    "Modifier_Letter": "Lm",
    "Other_Letter": "Lo",
    "Mark": "M",
    "Combining_Mark": "M",
    "Nonspacing_Mark": "Mn",
    "Spacing_Mark": "Mc",
    "Enclosing_Mark": "Me",
    "Number": "N",
    "Decimal_Number": "Nd",
    "digit": "Nd",
    "Letter_Number": "Nl",
    "Other_Number": "No",
    "Punctuation": "P",
    "punct": "P",
    "Connector_Punctuation": "Pc",
    "Dash_Punctuation": "Pd",
    "Open_Punctuation": "Ps",
    "Close_Punctuation": "Pe",
    "Initial_Punctuation": "Pi",
    "Final_Punctuation": "Pf",
    "Other_Punctuation": "Po",
    "Symbol": "S",
    "Math_Symbol": "Sm",
    "Currency_Symbol": "Sc",
    "Modifier_Symbol": "Sk",
    "Other_Symbol": "So",
    "Separator": "Z",
    "Space_Separator": "Zs",
    "Line_Separator": "Zl",
    "Paragraph_Separator": "Zp",
    "Other": "C",
    "Control": "Cc",
    "cntrl": "Cc",
    "Format": "Cf",
    "Surrogate": "Cs",
    "Private_Use": "Co",
    "Unassigned": "Cn",
}
_GC_SINGLE = frozenset(c for group in _GC_GROUPS.values() for c in group)
# Binary properties ECMA-262 defines (table "Binary Unicode property aliases") that Python's
# unicodedata cannot compute: a pattern using one is valid, but the python backend cannot run it.
_BINARY_PROPERTIES_UNSUPPORTED = _words(
    "ASCII_Hex_Digit AHex Alphabetic Alpha Bidi_Control Bidi_C Bidi_Mirrored Bidi_M "
    "Case_Ignorable CI Cased Changes_When_Casefolded CWCF Changes_When_Casemapped CWCM "
    "Changes_When_Lowercased CWL Changes_When_NFKC_Casefolded CWKCF Changes_When_Titlecased "
    "CWT Changes_When_Uppercased CWU Dash Default_Ignorable_Code_Point DI Deprecated Dep "
    "Diacritic Dia Emoji Emoji_Component EComp Emoji_Modifier EMod Emoji_Modifier_Base EBase "
    "Emoji_Presentation EPres Extended_Pictographic ExtPict Extender Ext Grapheme_Base Gr_Base "
    "Grapheme_Extend Gr_Ext Hex_Digit Hex IDS_Binary_Operator IDSB IDS_Trinary_Operator IDST "
    "ID_Continue IDC ID_Start IDS Ideographic Ideo Join_Control Join_C "
    "Logical_Order_Exception LOE Lowercase Lower Math Noncharacter_Code_Point NChar "
    "Pattern_Syntax Pat_Syn Pattern_White_Space Pat_WS Quotation_Mark QMark Radical "
    "Regional_Indicator RI Sentence_Terminal STerm Soft_Dotted SD Terminal_Punctuation Term "
    "Unified_Ideograph UIdeo Uppercase Upper Variation_Selector VS XID_Continue XIDC "
    "XID_Start XIDS"
)
_WHITE_SPACE_PROPERTY: _Ranges = (
    (0x09, 0x0D),
    (0x20, 0x20),
    (0x85, 0x85),
    (0xA0, 0xA0),
    (0x1680, 0x1680),
    (0x2000, 0x200A),
    (0x2028, 0x2029),
    (0x202F, 0x202F),
    (0x205F, 0x205F),
    (0x3000, 0x3000),
)


class EcmaRegexError(ValueError):
    """A ``pattern`` that is not an ECMA-262 regular expression (JSON Schema's regex dialect)."""


class UnsupportedRegexError(ValueError):
    """A valid ECMA-262 regular expression the python backend cannot run.

    Python's ``re`` has no Unicode script data and no variable-width lookbehind; the python
    backend refuses such a schema rather than match differently from ECMA-262.
    """


def _normalize(ranges: Iterable[tuple[int, int]]) -> _Ranges:
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            if high > merged[-1][1]:
                merged[-1] = (merged[-1][0], high)
        else:
            merged.append((low, high))
    return tuple(merged)


def _complement(ranges: _Ranges) -> _Ranges:
    out: list[tuple[int, int]] = []
    start = 0
    for low, high in ranges:
        if low > start:
            out.append((start, low - 1))
        start = high + 1
    if start <= _MAX_CODE_POINT:
        out.append((start, _MAX_CODE_POINT))
    return tuple(out)


def _code_point_source(code_point: int) -> str:
    return f"\\U{code_point:08x}" if code_point > 0xFFFF else f"\\u{code_point:04x}"


def _class_source(ranges: _Ranges) -> str:
    """A Python character class matching exactly ``ranges``."""
    if not ranges:
        return "(?!)"
    parts = [
        _code_point_source(low)
        if low == high
        else f"{_code_point_source(low)}-{_code_point_source(high)}"
        for low, high in ranges
    ]
    return "[" + "".join(parts) + "]"


@functools.cache
def _general_categories() -> Mapping[str, _Ranges]:
    """Every two-letter Unicode category as ranges (one pass over all code points, ~0.3 s)."""
    import unicodedata

    found: dict[str, list[tuple[int, int]]] = {}
    current, start = unicodedata.category("\x00"), 0
    for code_point in range(1, _MAX_CODE_POINT + 2):
        category = unicodedata.category(chr(code_point)) if code_point <= _MAX_CODE_POINT else ""
        if category != current:
            found.setdefault(current, []).append((start, code_point - 1))
            current, start = category, code_point
    return {name: tuple(ranges) for name, ranges in found.items()}


def _property_ranges(text: str) -> _Ranges:
    """The code points of ``\\p{text}``; ``EcmaRegexError`` for a name ECMA-262 does not know."""
    name, sep, value = text.partition("=")
    if sep:
        if name in ("General_Category", "gc"):
            return _general_category(value, text)
        if name in ("Script", "sc", "Script_Extensions", "scx"):
            if not re.fullmatch(r"[A-Za-z_]+", value):
                raise EcmaRegexError(f"\\p{{{text}}} names no script")
            raise UnsupportedRegexError(
                f"\\p{{{text}}}: the python backend has no Unicode script data"
            )
        raise EcmaRegexError(f"\\p{{{text}}} is not a Unicode property ECMA-262 knows")
    if name == "Any":
        return ((0, _MAX_CODE_POINT),)
    if name == "ASCII":
        return ((0, 0x7F),)
    if name == "Assigned":
        return _complement(_general_categories().get("Cn", ()))
    if name in ("White_Space", "space"):
        return _WHITE_SPACE_PROPERTY
    if name in _BINARY_PROPERTIES_UNSUPPORTED:
        raise UnsupportedRegexError(
            f"\\p{{{text}}}: the python backend cannot compute this Unicode property"
        )
    return _general_category(name, text)


def _general_category(value: str, text: str) -> _Ranges:
    short = _GC_ALIASES.get(value, value)
    members = _GC_GROUPS.get(short) or ((short,) if short in _GC_SINGLE else None)
    if members is None:
        raise EcmaRegexError(f"\\p{{{text}}} is not a Unicode property ECMA-262 knows")
    table = _general_categories()
    return _normalize(r for member in members for r in table.get(member, ()))


def _count_groups(source: str) -> tuple[int, frozenset[str]]:
    """How many capturing groups ``source`` has, and their names (for backreference checks)."""
    count, names, i, in_class = 0, set(), 0, False
    while i < len(source):
        char = source[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            if not source.startswith("?", i + 1):
                count += 1
            elif source.startswith("?<", i + 1) and source[i + 3 : i + 4] not in ("=", "!"):
                count += 1
                names.add(source[i + 3 : source.find(">", i + 3)])
        i += 1
    return count, frozenset(names)


class _EcmaTranslator:
    """Parses one ECMA-262 pattern (Unicode mode) and writes the Python ``re`` equivalent.

    ECMA-262 and Python differ in what ``\\d``, ``\\w``, ``\\s``, ``\\b``, ``.`` and ``$`` match,
    in escapes (``\\cX``, ``\\u{...}``, ``\\p{...}``) and in syntax Python accepts but ECMA-262
    refuses (``(?P<n>...)``, ``(?i)``, ``\\Z``): every construct is written out explicitly.
    Identity escapes of non-alphanumeric characters (``\\"``, ``\\-``) are accepted as
    jsonschema-rs accepts them.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.pos = 0
        self.group_count, self.group_names = _count_groups(source)
        self.names_seen: set[str] = set()
        self.opened = 0  # capturing groups opened so far
        self.open_groups: list[int] = []
        self.dot_all = False
        self.multiline = False

    def error(self, message: str) -> EcmaRegexError:
        return EcmaRegexError(f"{message} at position {self.pos} of {self.source!r}")

    def peek(self, offset: int = 0) -> str:
        index = self.pos + offset
        return self.source[index] if index < len(self.source) else ""

    def translate(self) -> str:
        out = self.disjunction()
        if self.pos < len(self.source):
            raise self.error("unmatched ')'")
        return out

    def disjunction(self) -> str:
        alternatives = [self.alternative()]
        while self.peek() == "|":
            self.pos += 1
            alternatives.append(self.alternative())
        return "|".join(alternatives)

    def alternative(self) -> str:
        terms: list[str] = []
        while self.pos < len(self.source) and self.peek() not in "|)":
            terms.append(self.term())
        return "".join(terms)

    def term(self) -> str:
        char = self.peek()
        quantifiable = True
        if char == "^":
            self.pos += 1
            atom = f"(?:\\A|(?<={_LINE_TERMINATORS}))" if self.multiline else "\\A"
            quantifiable = False
        elif char == "$":
            self.pos += 1
            atom = f"(?=\\Z|{_LINE_TERMINATORS})" if self.multiline else "\\Z"
            quantifiable = False
        elif char == "\\" and self.peek(1) in ("b", "B"):
            atom = _WORD_BOUNDARY if self.peek(1) == "b" else _NOT_WORD_BOUNDARY
            self.pos += 2
            quantifiable = False
        elif char == "(":
            atom, quantifiable = self.group()
        elif char == ".":
            self.pos += 1
            atom = "(?s:.)" if self.dot_all else f"(?:(?!{_LINE_TERMINATORS})(?s:.))"
        elif char == "[":
            atom = self.character_class()
        elif char == "\\":
            atom = self.atom_escape()
        elif char in "*+?{":
            raise self.error("nothing to repeat")
        elif char in "}]":
            raise self.error(f"lone {char!r}")
        else:
            self.pos += 1
            atom = re.escape(char)
        quantifier = self.quantifier()
        if quantifier and not quantifiable:
            raise self.error("an assertion cannot be repeated")
        return f"(?:{atom}){quantifier}" if quantifier else atom

    def quantifier(self) -> str:
        char = self.peek()
        if char in ("*", "+", "?") and char:
            self.pos += 1
            text = char
        elif char == "{":
            match = re.compile(r"\{([0-9]+)(,([0-9]*))?\}").match(self.source, self.pos)
            if match is None:
                raise self.error("incomplete quantifier")
            low = int(match.group(1))
            high = int(match.group(3)) if match.group(3) else None
            if max(low, high or 0) > _MAX_REPEAT:
                raise self.error("repetition count too large")
            if high is not None and high < low:
                raise self.error("numbers out of order in {} quantifier")
            self.pos = match.end()
            text = f"{{{low}{',' if match.group(2) else ''}{'' if high is None else high}}}"
        else:
            return ""
        if self.peek() == "?":
            self.pos += 1
            text += "?"
        return text

    def group(self) -> tuple[str, bool]:
        source, start = self.source, self.pos
        self.pos += 1
        if source.startswith("?", self.pos):
            for opener, python in (("?=", "(?="), ("?!", "(?!"), ("?<=", "(?<="), ("?<!", "(?<!")):
                if source.startswith(opener, self.pos):
                    self.pos += len(opener)
                    return python + self.close_group() + ")", False
            if source.startswith("?:", self.pos):
                self.pos += 2
                return "(?:" + self.close_group() + ")", True
            if source.startswith("?<", self.pos):
                end = source.find(">", self.pos)
                name = source[self.pos + 2 : end] if end > 0 else ""
                if not re.fullmatch(r"[$_\w][$\w\u200c\u200d]*", name) or name[0].isdigit():
                    raise self.error("invalid capture group name")
                if name in self.names_seen:
                    raise self.error(f"duplicate capture group name {name!r}")
                self.names_seen.add(name)
                self.pos = end + 1
                return self.capture(), True
            match = re.compile(r"\?([ims]*)(?:-([ims]*))?:").match(source, self.pos)
            if match is None:
                self.pos = start
                raise self.error("invalid group")
            on, off = match.group(1), match.group(2) or ""
            flags = on + off
            if (
                len(set(flags)) != len(flags)
                or (not flags)
                or (match.group(2) is not None and not flags)
            ):
                raise self.error("invalid modifiers")
            self.pos = match.end()
            saved = (self.dot_all, self.multiline)
            self.dot_all = ("s" in on) or (self.dot_all and "s" not in off)
            self.multiline = ("m" in on) or (self.multiline and "m" not in off)
            case = ("i" if "i" in on else "") + ("-i" if "i" in off else "")
            body = self.close_group()
            self.dot_all, self.multiline = saved
            return (f"(?{case}:{body})" if case else f"(?:{body})"), True
        return self.capture(), True

    def capture(self) -> str:
        self.opened += 1
        self.open_groups.append(self.opened)
        body = self.close_group()
        self.open_groups.pop()
        return f"({body})"

    def close_group(self) -> str:
        body = self.disjunction()
        if self.peek() != ")":
            raise self.error("missing ')'")
        self.pos += 1
        return body

    def backreference(self, number: int) -> str:
        # ECMA-262: a group that has not matched (yet) matches the empty string.
        if number > self.opened or number in self.open_groups:
            return "(?:)"
        return f"(?({number})(?:\\{number})|)"

    def atom_escape(self) -> str:
        self.pos += 1
        char = self.peek()
        if char in _CLASS_ESCAPES or char in ("p", "P"):
            return _class_source(self.class_escape_ranges())
        if char.isdigit() and char != "0":
            match = re.compile(r"[0-9]+").match(self.source, self.pos)
            assert match is not None
            number = int(match.group())
            if number > self.group_count:
                raise self.error(f"backreference \\{number} to a group that does not exist")
            self.pos = match.end()
            return self.backreference(number)
        if char == "k":
            match = re.compile(r"k<([^>]*)>").match(self.source, self.pos)
            if match is None or match.group(1) not in self.group_names:
                raise self.error("\\k must name a capture group")
            self.pos = match.end()
            return self.backreference(self.group_number(match.group(1)))
        return _code_point_source(self.character_escape(in_class=False))

    def group_number(self, name: str) -> int:
        number, i, in_class = 0, 0, False
        source = self.source
        while i < len(source):
            char = source[i]
            if char == "\\":
                i += 2
                continue
            if in_class:
                in_class = char != "]"
            elif char == "[":
                in_class = True
            elif char == "(" and (
                not source.startswith("?", i + 1)
                or (source.startswith("?<", i + 1) and source[i + 3 : i + 4] not in ("=", "!"))
            ):
                number += 1
                if source.startswith(f"?<{name}>", i + 1):
                    return number
            i += 1
        raise self.error(f"no group named {name!r}")  # pragma: no cover - checked by the caller

    def class_escape_ranges(self) -> _Ranges:
        """Ranges of ``\\d \\D \\s \\S \\w \\W \\p{..} \\P{..}`` (``pos`` at the letter)."""
        char = self.peek()
        self.pos += 1
        if char in _CLASS_ESCAPES:
            ranges, negated = _CLASS_ESCAPES[char]
            return _complement(ranges) if negated else ranges
        end = self.source.find("}", self.pos)
        if self.peek() != "{" or end < 0:
            raise self.error(f"\\{char} must be followed by {{property}}")
        text = self.source[self.pos + 1 : end]
        self.pos = end + 1
        ranges = _property_ranges(text)
        return _complement(ranges) if char == "P" else ranges

    def character_escape(self, *, in_class: bool) -> int:
        """The code point of an escape (``pos`` after the backslash)."""
        char = self.peek()
        if not char:
            raise self.error("\\ at end of pattern")
        self.pos += 1
        if char in _CONTROL_ESCAPES:
            return _CONTROL_ESCAPES[char]
        if char == "c":
            letter = self.peek()
            if not (letter.isascii() and letter.isalpha()):
                raise self.error("\\c must be followed by a letter")
            self.pos += 1
            return ord(letter) % 32
        if char == "0":
            if self.peek().isdigit():
                raise self.error("octal escapes are not ECMA-262 (Unicode mode)")
            return 0
        if char == "x":
            digits = self.source[self.pos : self.pos + 2]
            if not re.fullmatch(r"[0-9A-Fa-f]{2}", digits):
                raise self.error("\\x needs two hex digits")
            self.pos += 2
            return int(digits, 16)
        if char == "u":
            return self.unicode_escape()
        if char == "-" and in_class:
            return ord("-")
        if char.isascii() and (char.isalnum() or char == "_"):
            raise self.error(f"\\{char} is not an ECMA-262 escape")
        return ord(char)

    def unicode_escape(self) -> int:
        source = self.source
        if self.peek() == "{":
            end = source.find("}", self.pos)
            digits = source[self.pos + 1 : end] if end > 0 else ""
            if not re.fullmatch(r"[0-9A-Fa-f]+", digits) or int(digits, 16) > _MAX_CODE_POINT:
                raise self.error("invalid \\u{...} escape")
            self.pos = end + 1
            return int(digits, 16)
        digits = source[self.pos : self.pos + 4]
        if not re.fullmatch(r"[0-9A-Fa-f]{4}", digits):
            raise self.error("\\u needs four hex digits")
        self.pos += 4
        value = int(digits, 16)
        trail = re.compile(r"\\u([dD][c-fC-F][0-9A-Fa-f]{2})").match(source, self.pos)
        if 0xD800 <= value <= 0xDBFF and trail is not None:
            self.pos = trail.end()
            return 0x10000 + ((value - 0xD800) << 10) + (int(trail.group(1), 16) - 0xDC00)
        return value

    def class_atom(self) -> int | _Ranges:
        char = self.peek()
        if char == "\\":
            self.pos += 1
            escape = self.peek()
            if escape in _CLASS_ESCAPES or escape in ("p", "P"):
                return self.class_escape_ranges()
            if escape == "b":
                self.pos += 1
                return 0x08
            if escape.isdigit() and escape != "0":
                raise self.error("backreferences are not allowed in a class")
            if escape in ("B", "k"):
                raise self.error(f"\\{escape} is not allowed in a class")
            return self.character_escape(in_class=True)
        self.pos += 1
        return ord(char)

    def character_class(self) -> str:
        self.pos += 1
        negated = self.peek() == "^"
        if negated:
            self.pos += 1
        ranges: list[tuple[int, int]] = []
        while True:
            if self.pos >= len(self.source):
                raise self.error("missing ']'")
            if self.peek() == "]":
                self.pos += 1
                break
            low = self.class_atom()
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                self.pos += 1
                high = self.class_atom()
                if not isinstance(low, int) or not isinstance(high, int):
                    raise self.error("a class escape cannot bound a range")
                if low > high:
                    raise self.error("range out of order in character class")
                ranges.append((low, high))
            elif isinstance(low, int):
                ranges.append((low, low))
            else:
                ranges.extend(low)
        result = _normalize(ranges)
        return _class_source(_complement(result) if negated else result)


@functools.lru_cache(maxsize=4096)
def translate_ecma_regex(pattern: str) -> str:
    """The Python ``re`` source that matches as the ECMA-262 regex ``pattern`` does.

    >>> translate_ecma_regex(r"^\\d$")
    '\\\\A[\\\\u0030-\\\\u0039]\\\\Z'

    ``EcmaRegexError`` when ``pattern`` is not ECMA-262 (Unicode mode), ``UnsupportedRegexError``
    when it is but Python cannot run it.
    """
    return _EcmaTranslator(pattern).translate()


@functools.lru_cache(maxsize=4096)
def compile_ecma_regex(pattern: str) -> re.Pattern[str]:
    """``pattern`` (ECMA-262) compiled for Python, cached: search with it as JSON Schema does."""
    source = translate_ecma_regex(pattern)
    try:
        return re.compile(source)
    except re.error as exc:
        # Valid ECMA-262 that sre cannot compile: a lookbehind of variable width.
        raise UnsupportedRegexError(
            f"{pattern!r}: the python backend cannot run it ({exc})"
        ) from exc
    except (OverflowError, RecursionError) as exc:
        raise UnsupportedRegexError(f"{pattern!r}: too large for the python backend") from exc


def is_ecma_regex(pattern: str) -> bool:
    """Whether ``pattern`` is an ECMA-262 regular expression (the ``regex`` format)."""
    try:
        translate_ecma_regex(pattern)
    except UnsupportedRegexError:
        return True
    except (EcmaRegexError, RecursionError):
        return False
    return True


# --------------------------------------------------------------------------- formats (python)

# The python backend's format checks, written from the RFCs each format names, with ASCII digits
# only and no trailing newline (``re.fullmatch``; Python's ``$`` would accept one).
_DATE = r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
_TIME = r"([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]+)?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
_DATE_RE = re.compile(_DATE)
_TIME_RE = re.compile(_TIME)
_DATE_TIME_RE = re.compile(_DATE + "[Tt]" + _TIME)
_DUR_TIME = r"T(?:[0-9]+H(?:[0-9]+M(?:[0-9]+S)?)?|[0-9]+M(?:[0-9]+S)?|[0-9]+S)"
_DUR_DATE = r"(?:[0-9]+D|[0-9]+M(?:[0-9]+D)?|[0-9]+Y(?:[0-9]+M(?:[0-9]+D)?)?)"
_DURATION_RE = re.compile(f"P(?:{_DUR_DATE}(?:{_DUR_TIME})?|{_DUR_TIME}|[0-9]+W)")
_UUID_RE = re.compile(
    r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
)
_JSON_POINTER = r"(?:/(?:[^/~]|~[01])*)*"
_JSON_POINTER_RE = re.compile(_JSON_POINTER)
_RELATIVE_JSON_POINTER_RE = re.compile(f"(?:0|[1-9][0-9]*)(?:#|{_JSON_POINTER})")
_HOST_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM_RE = re.compile(f"{_ATEXT}+(?:\\.{_ATEXT}+)*")
_IDN_DOT_ATOM_RE = re.compile(
    r"(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]|[^\x00-\x7f])+(?:\.(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]|[^\x00-\x7f])+)*"
)
_QUOTED_RE = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"')
_IDN_QUOTED_RE = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|[^\x00-\x7f]|\\[\x20-\x7e])*"')
_GENERAL_LITERAL_RE = re.compile(r"[A-Za-z0-9-]*[A-Za-z0-9]:[\x21-\x5a\x5e-\x7e]+")
_IDN_DOTS = re.compile("[.\u3002\uff0e\uff61]")

# RFC 3986 (URIs) and RFC 3987 (IRIs): the ABNF as regular expressions.
_UCSCHAR = (
    "\u00a0-\ud7ff\uf900-\ufdcf\ufdf0-\uffef\U00010000-\U0001fffd\U00020000-\U0002fffd"
    "\U00030000-\U0003fffd\U00040000-\U0004fffd\U00050000-\U0005fffd\U00060000-\U0006fffd"
    "\U00070000-\U0007fffd\U00080000-\U0008fffd\U00090000-\U0009fffd\U000a0000-\U000afffd"
    "\U000b0000-\U000bfffd\U000c0000-\U000cfffd\U000d0000-\U000dfffd\U000e1000-\U000efffd"
)
_IPRIVATE = "\ue000-\uf8ff\U000f0000-\U000ffffd\U00100000-\U0010fffd"


def _uri_regexes(iri: bool) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(absolute, reference) patterns of RFC 3986 URIs, or RFC 3987 IRIs when ``iri``."""
    unreserved = "A-Za-z0-9._~\\-" + (_UCSCHAR if iri else "")
    pct = "%[0-9A-Fa-f]{2}"
    sub_delims = "!$&'()*+,;="
    pchar = f"(?:[{unreserved}{sub_delims}:@]|{pct})"
    segment = f"{pchar}*"
    segment_nz = f"{pchar}+"
    segment_nz_nc = f"(?:[{unreserved}{sub_delims}@]|{pct})+"
    userinfo = f"(?:[{unreserved}{sub_delims}:]|{pct})*"
    ip_literal = r"\[(?P<ip>[^\]/?#@\[]*)\]"
    reg_name = f"(?:[{unreserved}{sub_delims}]|{pct})*"
    authority = f"(?:{userinfo}@)?(?:{ip_literal}|{reg_name})(?::[0-9]*)?"
    path_abempty = f"(?:/{segment})*"
    path_absolute = f"/(?:{segment_nz}(?:/{segment})*)?"
    path_rootless = f"{segment_nz}(?:/{segment})*"
    path_noscheme = f"{segment_nz_nc}(?:/{segment})*"
    query_chars = f"(?:{pchar}|[/?{_IPRIVATE if iri else ''}])*"
    fragment = f"(?:{pchar}|[/?])*"
    tail = f"(?:\\?{query_chars})?(?:#{fragment})?"
    scheme = "[A-Za-z][A-Za-z0-9+.-]*"
    hier = f"(?://{authority}{path_abempty}|{path_absolute}|{path_rootless}|)"
    # A reference is a URI or a relative reference; the authority is written once (one group).
    reference = (
        f"(?:(?:{scheme}:)?//{authority}{path_abempty}"
        f"|{scheme}:(?:{path_absolute}|{path_rootless}|)|{path_absolute}|{path_noscheme}|)"
    )
    return re.compile(f"{scheme}:{hier}{tail}"), re.compile(f"{reference}{tail}")


_URI_RE, _URI_REFERENCE_RE = _uri_regexes(iri=False)
_IRI_RE, _IRI_REFERENCE_RE = _uri_regexes(iri=True)

# RFC 6570 (URI templates), level 4.
_UT_LITERAL = (
    "(?:[\\x21\\x23\\x24\\x26-\\x3b\\x3d\\x3f-\\x5b\\x5d\\x5f\\x61-\\x7a\\x7e"
    f"{_UCSCHAR}{_IPRIVATE}]|%[0-9A-Fa-f]{{2}})"
)
_UT_VARCHAR = "(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2})"
_UT_VARSPEC = f"{_UT_VARCHAR}(?:\\.?{_UT_VARCHAR})*(?::[1-9][0-9]{{0,3}}|\\*)?"
_UT_EXPRESSION = f"\\{{[+#./;?&=,!@|]?{_UT_VARSPEC}(?:,{_UT_VARSPEC})*\\}}"
_URI_TEMPLATE_RE = re.compile(f"(?:{_UT_LITERAL}|{_UT_EXPRESSION})*")


def _is_leap_year(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _valid_date(year: int, month: int, day: int) -> bool:
    if not 1 <= month <= 12 or day < 1:
        return False
    days = (31, 29 if _is_leap_year(year) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
    return day <= days[month - 1]


def _valid_time(groups: Sequence[str | None]) -> bool:
    """RFC 3339 ``full-time`` fields: a leap second only at 23:59:60 UTC."""
    hour, minute, second = int(groups[0] or 0), int(groups[1] or 0), int(groups[2] or 0)
    if hour > 23 or minute > 59 or second > 60:
        return False
    offset = 0
    if groups[4] is not None:
        off_hour, off_minute = int(groups[5] or 0), int(groups[6] or 0)
        if off_hour > 23 or off_minute > 59:
            return False
        offset = (off_hour * 60 + off_minute) * (1 if groups[4] == "+" else -1)
    if second == 60:
        return (hour * 60 + minute - offset) % (24 * 60) == 23 * 60 + 59
    return True


def _check_date(value: str) -> bool:
    match = _DATE_RE.fullmatch(value)
    return match is not None and _valid_date(*(int(g) for g in match.groups()))


def _check_time(value: str) -> bool:
    match = _TIME_RE.fullmatch(value)
    return match is not None and _valid_time(match.groups())


def _check_date_time(value: str) -> bool:
    match = _DATE_TIME_RE.fullmatch(value)
    if match is None:
        return False
    groups = match.groups()
    return _valid_date(int(groups[0]), int(groups[1]), int(groups[2])) and _valid_time(groups[3:])


def _check_duration(value: str) -> bool:
    return _DURATION_RE.fullmatch(value) is not None


def _check_uuid(value: str) -> bool:
    return _UUID_RE.fullmatch(value) is not None


def _check_json_pointer(value: str) -> bool:
    return _JSON_POINTER_RE.fullmatch(value) is not None


def _check_relative_json_pointer(value: str) -> bool:
    return _RELATIVE_JSON_POINTER_RE.fullmatch(value) is not None


def _check_ipv4(value: str) -> bool:
    import ipaddress

    if not re.fullmatch(r"[0-9.]+", value):
        return False
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def _check_ipv6(value: str) -> bool:
    import ipaddress

    if not re.fullmatch(r"[0-9A-Fa-f:.]+", value):
        return False  # no zone id ("%eth0"), no whitespace, ASCII only
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


def _check_ip_literal(text: str) -> bool:
    """The inside of a URI's ``[...]`` host: an IPv6 address or an IPvFuture."""
    if re.fullmatch(r"[vV][0-9A-Fa-f]+\.[A-Za-z0-9._~!$&'()*+,;=:-]+", text):
        return True
    return _check_ipv6(text)


def _uri_check(pattern: re.Pattern[str]) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        match = pattern.fullmatch(value)
        if match is None:
            return False
        ip = match.group("ip")
        return ip is None or _check_ip_literal(ip)

    return check


def _check_uri_template(value: str) -> bool:
    return _URI_TEMPLATE_RE.fullmatch(value) is not None


def _check_ascii_label(label: str) -> bool:
    """An RFC 1123 label; an A-label (``xn--``) must decode to a valid IDNA2008 U-label."""
    if _HOST_LABEL_RE.fullmatch(label) is None:
        return False
    if label[2:4] != "--":
        return True
    if label[:4].lower() != "xn--":
        return False  # "--" in the 3rd and 4th position is reserved for A-labels (RFC 5891)
    import idna

    try:
        idna.decode(label)
    except (idna.IDNAError, UnicodeError, ValueError):
        return False
    return True


def _check_hostname(value: str) -> bool:
    if not value.isascii() or len(value) > 253:
        return False
    return all(_check_ascii_label(label) for label in value.split("."))


def _check_idn_hostname(value: str) -> bool:
    import idna

    labels = _IDN_DOTS.split(value)
    if not value or any(not label for label in labels):
        return False  # empty labels, including a trailing dot
    try:
        encoded = [
            label if label.isascii() else idna.alabel(label).decode("ascii") for label in labels
        ]
        if any(_has_rtl(label) for label in labels):
            # RFC 5893: once one label is right-to-left, the Bidi rule applies to every label.
            for label in labels:
                idna.check_bidi(label, check_ltr=True)
    except (idna.IDNAError, UnicodeError, ValueError):
        return False
    return all(_check_ascii_label(label) for label in encoded) and len(".".join(encoded)) <= 253


def _has_rtl(label: str) -> bool:
    import unicodedata

    return any(unicodedata.bidirectional(c) in ("R", "AL", "AN") for c in label)


def _check_email(value: str, *, idn: bool = False) -> bool:
    """RFC 5321 ``Mailbox`` (RFC 6531 with non-ASCII text when ``idn``)."""
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        return False
    atom, quoted = (_IDN_DOT_ATOM_RE, _IDN_QUOTED_RE) if idn else (_DOT_ATOM_RE, _QUOTED_RE)
    if atom.fullmatch(local) is None and quoted.fullmatch(local) is None:
        return False
    if domain.startswith("[") and domain.endswith("]"):
        literal = domain[1:-1]
        if literal[:5].lower() == "ipv6:":
            return _check_ipv6(literal[5:])
        if re.fullmatch(r"[0-9.]+", literal):
            return _check_ipv4(literal)
        return _GENERAL_LITERAL_RE.fullmatch(literal) is not None
    if not idn:
        return _check_hostname(domain)
    import unicodedata

    # RFC 6531 domains are compared after normalization: a decomposed "é" is the same label.
    return _check_idn_hostname(unicodedata.normalize("NFC", domain))


def _check_idn_email(value: str) -> bool:
    return _check_email(value, idn=True)


#: Format name -> check of a string value; other values always pass (JSON Schema §7.1).
_FORMAT_CHECKS: Mapping[str, Callable[[str], bool]] = {
    "date": _check_date,
    "time": _check_time,
    "date-time": _check_date_time,
    "duration": _check_duration,
    "uuid": _check_uuid,
    "json-pointer": _check_json_pointer,
    "relative-json-pointer": _check_relative_json_pointer,
    "ipv4": _check_ipv4,
    "ipv6": _check_ipv6,
    "uri": _uri_check(_URI_RE),
    "uri-reference": _uri_check(_URI_REFERENCE_RE),
    "iri": _uri_check(_IRI_RE),
    "iri-reference": _uri_check(_IRI_REFERENCE_RE),
    "uri-template": _check_uri_template,
    "hostname": _check_hostname,
    "idn-hostname": _check_idn_hostname,
    "email": _check_email,
    "idn-email": _check_idn_email,
    "regex": is_ecma_regex,
}


# --------------------------------------------------------------------------- violations

# Keywords whose value maps names (of properties, patterns, definitions) to subschemas: in a
# schema path, the part after one of them is a name, not a keyword.
_NAMED_SUBSCHEMAS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies"}
)
# Followed, never reported: the keyword that fails is the one in the schema the $ref reaches.
_REFERENCES = frozenset({"$ref", "$dynamicRef", "$recursiveRef"})


def keyword_of(schema_path: Iterable[str | int]) -> str:
    """The keyword that failed, from the schema path of a failure.

    The last keyword on the path, skipping array indexes, the names under ``properties``-like
    keywords and ``$ref``s: ``["properties", "n", "minimum"]`` -> ``minimum``;
    ``["properties", "x"]`` (a ``false`` subschema) -> ``properties``; ``[]`` (the root schema is
    ``false``) -> ``false``. Both backends report through this, so the keyword, a metric label
    and a dead-letter field, never depends on the backend or on a property's name.
    """
    keyword, name_next = "", False
    for part in schema_path:
        if name_next:
            name_next = False
        elif isinstance(part, str) and part not in _REFERENCES:
            keyword = part
            name_next = part in _NAMED_SUBSCHEMAS
    return keyword or "false"


def too_deep_violation() -> Violation:
    """The violation of a payload nested past ``MAX_DEPTH`` for a schema that can recurse."""
    return Violation("", "maxDepth", f"payload nests deeper than {MAX_DEPTH} levels; not validated")


def not_json_violation(exc: BaseException) -> Violation:
    """The violation of a payload holding values JSON cannot (a set, an int dict key, ...)."""
    return Violation("", "type", _short(f"payload is not JSON data: {exc}"))


def _recursion_violation(payload: Any) -> Violation:
    if exceeds_depth(payload):
        return too_deep_violation()
    # A shallow payload: the schema recursed on its own ($refs the cycle check cannot follow).
    return Violation("", "$ref", "the schema's references recurse without end; not validated")


class CompiledSchema:
    """A validator compiled once per (schema, track, version) and reused for every payload."""

    __slots__ = (
        "_iter_errors",
        "_unresolvable",
        "_violations_of",
        "backend",
        "depth_guard",
        "is_valid",
        "quick_is_valid",
        "source",
    )

    def __init__(
        self,
        source: SchemaDocument,
        backend: Backend,
        is_valid: Callable[[Any], bool],
        iter_errors: Callable[[Any], Iterator[Any]],
        violations_of: Callable[[Iterator[Any]], tuple[Violation, ...]],
        depth_guard: bool,
        unresolvable: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.source = source
        self.backend = backend
        #: Fast yes/no; may raise on values that are not JSON data (see ``violations``).
        self.is_valid = is_valid
        self._iter_errors = iter_errors
        self._violations_of = violations_of
        self.depth_guard = depth_guard
        # The backend's "a $ref could not be resolved while validating" exceptions.
        self._unresolvable = unresolvable
        #: The hot path's yes/no: ``is_valid`` itself when the schema cannot recurse, else with
        #: the depth guard in front. May raise on values that are not JSON data.
        self.quick_is_valid: Callable[[Any], bool] = (
            self._guarded_is_valid if depth_guard else is_valid
        )

    def _guarded_is_valid(self, payload: Any) -> bool:
        return not exceeds_depth(payload) and self.is_valid(payload)

    def violations(self, payload: Any) -> tuple[Violation, ...]:
        """Up to ``MAX_VIOLATIONS`` violations of ``payload`` (empty when it is valid).

        Never raises: a payload the validator cannot even read (too deep, not JSON data) is one
        violation at the root that says so.
        """
        if self.depth_guard and exceeds_depth(payload):
            return (too_deep_violation(),)
        try:
            return self._violations_of(self._iter_errors(payload))
        except RecursionError:
            return (_recursion_violation(payload),)
        except self._unresolvable as exc:
            return (
                Violation("", "$ref", _short(f"unresolvable $ref (nothing is fetched): {exc}")),
            )
        except (ValueError, TypeError, OverflowError) as exc:
            return (not_json_violation(exc),)

    def check(self, payload: Any) -> tuple[Violation, ...]:
        """``()`` for a valid payload, else its violations: the hot path's single call."""
        if self.depth_guard and exceeds_depth(payload):
            return (too_deep_violation(),)
        try:
            if self.is_valid(payload):
                return ()
        except RecursionError:
            return (_recursion_violation(payload),)
        except self._unresolvable:
            pass  # reported by violations()
        except (ValueError, TypeError, OverflowError) as exc:
            return (not_json_violation(exc),)
        return self.violations(payload) or (
            Violation("", "invalid", "the validator rejected the payload without a reason"),
        )


# --------------------------------------------------------------------------- rust backend


def _refuse_retrieval(uri: str) -> Any:
    raise InvalidSchemaError(
        f"$ref {uri!r} is not in the schema or its registry references; nothing is fetched"
    )


def _rust_violations(errors: Iterator[Any]) -> tuple[Violation, ...]:
    return tuple(
        # evaluation_path goes through $refs as jsonschema's schema paths do; schema_path is
        # where the failing keyword sits in the document, which differs behind a $ref.
        Violation(
            json_pointer(err.instance_path), keyword_of(err.evaluation_path), _short(err.message)
        )
        for err in islice(errors, MAX_VIOLATIONS)
    )


def _compile_rust(doc: SchemaDocument, dialect: Dialect) -> CompiledSchema:
    try:
        # Inside the try: building the registry already resolves the references' own $refs.
        registry = None
        if doc.references:
            registry = jsonschema_rs.Registry(
                list(doc.references.items()),
                draft=_RUST_DRAFTS[dialect.version],
                retriever=_refuse_retrieval,
            )
        validator = jsonschema_rs.validator_for(
            doc.document,
            validate_formats=True,
            retriever=_refuse_retrieval,
            registry=registry,
        )
    except (jsonschema_rs.ValidationError, ValueError) as exc:
        raise _invalid(doc, str(exc)) from exc
    return CompiledSchema(
        doc,
        "rust",
        validator.is_valid,
        validator.iter_errors,
        _rust_violations,
        can_recurse(doc.document),
    )


# --------------------------------------------------------------------------- python backend
#
# jsonschema's own keywords search patterns with Python's ``re`` (``pattern``,
# ``patternProperties``, and inside ``additionalProperties`` and ``unevaluatedProperties``) and
# lose the instance path of a ``false`` subschema; the keywords below replace them. They take
# jsonschema's (validator, value, instance, schema) arguments.


def _error(message: str) -> Any:
    from jsonschema.exceptions import ValidationError

    return ValidationError(message)


def _is_valid_under(validator: Any, instance: Any, schema: Any) -> bool:
    return next(validator.descend(instance, schema), None) is None


def _descend(
    validator: Any, instance: Any, schema: Any, path: str | int, schema_path: str | int | None
) -> Iterator[Any]:
    """``validator.descend``, but a ``false`` subschema's failure keeps its instance path."""
    if schema is not False:
        yield from validator.descend(instance, schema, path=path, schema_path=schema_path)
        return
    from jsonschema.exceptions import ValidationError

    error = ValidationError(
        f"False schema does not allow {instance!r}", instance=instance, schema=schema
    )
    error.relative_path.appendleft(path)
    if schema_path is not None:
        error.relative_schema_path.appendleft(schema_path)
    yield error


def _matches(pattern: str, text: str) -> bool:
    return compile_ecma_regex(pattern).search(text) is not None


def _listed(keys: Iterable[Any]) -> str:
    keys = sorted(keys, key=str)
    return f"{', '.join(repr(k) for k in keys)} {'was' if len(keys) == 1 else 'were'}"


def _kw_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    if isinstance(instance, str) and not _matches(pattern, instance):
        yield _error(f"{instance!r} does not match {pattern!r}")


def _kw_properties(validator: Any, properties: Any, instance: Any, schema: Any) -> Iterator[Any]:
    if isinstance(instance, dict):
        for name, subschema in properties.items():
            if name in instance:
                yield from _descend(validator, instance[name], subschema, name, name)


def _kw_pattern_properties(
    validator: Any, patterns: Any, instance: Any, schema: Any
) -> Iterator[Any]:
    if isinstance(instance, dict):
        for pattern, subschema in patterns.items():
            for name, value in instance.items():
                if _matches(pattern, name):
                    yield from _descend(validator, value, subschema, name, pattern)


def _kw_additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Any
) -> Iterator[Any]:
    if not isinstance(instance, dict):
        return
    properties = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extras = [
        name
        for name in instance
        if name not in properties and not any(_matches(p, name) for p in patterns)
    ]
    if additional is False:
        if extras:
            yield _error(f"Additional properties are not allowed ({_listed(extras)} unexpected)")
        return
    for name in extras:
        yield from _descend(validator, instance[name], additional, name, None)


def _kw_items(validator: Any, items: Any, instance: Any, schema: Any) -> Iterator[Any]:
    """2020-12 ``items``: one schema for every item after the ``prefixItems``."""
    if isinstance(instance, list):
        for index in range(len(schema.get("prefixItems", ())), len(instance)):
            yield from _descend(validator, instance[index], items, index, None)


def _kw_items_legacy(validator: Any, items: Any, instance: Any, schema: Any) -> Iterator[Any]:
    """``items`` before 2020-12: one schema for every item, or a list of schemas by position."""
    if not isinstance(instance, list):
        return
    if isinstance(items, list):
        for index, (item, subschema) in enumerate(zip(instance, items, strict=False)):
            yield from _descend(validator, item, subschema, index, index)
    else:
        for index, item in enumerate(instance):
            yield from _descend(validator, item, items, index, None)


def _kw_prefix_items(validator: Any, prefix: Any, instance: Any, schema: Any) -> Iterator[Any]:
    if isinstance(instance, list):
        for index, (item, subschema) in enumerate(zip(instance, prefix, strict=False)):
            yield from _descend(validator, item, subschema, index, index)


def _kw_additional_items(
    validator: Any, additional: Any, instance: Any, schema: Any
) -> Iterator[Any]:
    items = schema.get("items")  # absent, it is the empty schema: nothing is "additional"
    if not isinstance(instance, list) or not isinstance(items, list):
        return
    if additional is False:
        if len(instance) > len(items):
            extras = _listed(instance[len(items) :])
            yield _error(f"Additional items are not allowed ({extras} unexpected)")
        return
    for index in range(len(items), len(instance)):
        yield from _descend(validator, instance[index], additional, index, None)


def _kw_dependencies(
    validator: Any, dependencies: Any, instance: Any, schema: Any
) -> Iterator[Any]:
    """Draft 7's ``dependencies``, also under 2019-09 and 2020-12 (as jsonschema-rs does)."""
    if not isinstance(instance, dict):
        return
    for name, dependency in dependencies.items():
        if name not in instance:
            continue
        if isinstance(dependency, list):
            for each in dependency:
                if each not in instance:
                    yield _error(f"{each!r} is a dependency of {name!r}")
        else:
            yield from validator.descend(instance, dependency, schema_path=name)


def _evaluated_keys(validator: Any, instance: dict[str, Any], schema: Any) -> set[str]:
    """The properties of ``instance`` that ``schema`` evaluates (for ``unevaluatedProperties``)."""
    if not isinstance(schema, dict):
        return set()
    keys: set[str] = set()
    for keyword in ("$ref", "$dynamicRef", "$recursiveRef"):
        reference = schema.get(keyword)
        if not isinstance(reference, str):
            continue
        if keyword == "$recursiveRef":
            from referencing.jsonschema import lookup_recursive_ref

            resolved = lookup_recursive_ref(validator._resolver)
        else:
            resolved = validator._resolver.lookup(reference)
        keys |= _evaluated_keys(
            validator.evolve(schema=resolved.contents, _resolver=resolved.resolver),
            instance,
            resolved.contents,
        )
    properties = schema.get("properties")
    if isinstance(properties, dict):
        keys |= properties.keys() & instance.keys()
    for keyword in ("additionalProperties", "unevaluatedProperties"):
        if keyword in schema:
            keys |= {
                name
                for name, value in instance.items()
                if _is_valid_under(validator, value, schema[keyword])
            }
    patterns = schema.get("patternProperties")
    if isinstance(patterns, dict):
        keys |= {name for name in instance if any(_matches(p, name) for p in patterns)}
    dependent = schema.get("dependentSchemas")
    if isinstance(dependent, dict):
        for name, subschema in dependent.items():
            if name in instance:
                keys |= _evaluated_keys(validator, instance, subschema)
    for keyword in ("allOf", "oneOf", "anyOf"):
        for subschema in schema.get(keyword, ()):
            if _is_valid_under(validator, instance, subschema):
                keys |= _evaluated_keys(validator, instance, subschema)
    if "if" in schema:
        if _is_valid_under(validator, instance, schema["if"]):
            keys |= _evaluated_keys(validator, instance, schema["if"])
            keys |= _evaluated_keys(validator, instance, schema.get("then"))
        else:
            keys |= _evaluated_keys(validator, instance, schema.get("else"))
    return keys


def _kw_unevaluated_properties(
    validator: Any, unevaluated: Any, instance: Any, schema: Any
) -> Iterator[Any]:
    if not isinstance(instance, dict):
        return
    evaluated = _evaluated_keys(validator, instance, schema)
    failing = [
        name
        for name in instance
        if name not in evaluated and not _is_valid_under(validator, instance[name], unevaluated)
    ]
    if failing and unevaluated is False:
        yield _error(f"Unevaluated properties are not allowed ({_listed(failing)} unexpected)")
    elif failing:
        yield _error(
            "Unevaluated properties are not valid under the given schema "
            f"({_listed(failing)} unevaluated and invalid)"
        )


def _decode_base64(text: str) -> bytes | None:
    import base64
    import binascii

    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _kw_content_encoding(
    validator: Any, encoding: Any, instance: Any, schema: Any
) -> Iterator[Any]:
    """Draft 6/7 ``contentEncoding``: a ``base64`` string must decode (jsonschema-rs asserts it)."""
    if isinstance(instance, str) and encoding == "base64" and _decode_base64(instance) is None:
        yield _error(f"{instance!r} is not base64-encoded")


def _kw_content_media_type(
    validator: Any, media_type: Any, instance: Any, schema: Any
) -> Iterator[Any]:
    """Draft 6/7 ``contentMediaType``: an ``application/json`` string must parse as JSON."""
    if not isinstance(instance, str) or media_type != "application/json":
        return
    import json

    text: str | bytes = instance
    if schema.get("contentEncoding") == "base64":
        decoded = _decode_base64(instance)
        if decoded is None:
            return  # contentEncoding reports it
        text = decoded
    try:
        json.loads(text)
    except ValueError:
        yield _error(f"{instance!r} is not a JSON document")


def _kw_ignored(validator: Any, value: Any, instance: Any, schema: Any) -> Iterator[Any]:
    """A keyword of a vocabulary the schema's meta-schema does not list: it does nothing."""
    return iter(())


_PYTHON_KEYWORDS: Mapping[str, Callable[..., Iterator[Any]]] = {
    "pattern": _kw_pattern,
    "properties": _kw_properties,
    "patternProperties": _kw_pattern_properties,
    "additionalProperties": _kw_additional_properties,
}


@functools.cache
def _python_class(dialect: Dialect) -> Any:
    """jsonschema's validator class for ``dialect``, with this module's keywords in place."""
    import jsonschema

    base = {
        4: jsonschema.Draft4Validator,
        6: jsonschema.Draft6Validator,
        7: jsonschema.Draft7Validator,
        2019: jsonschema.Draft201909Validator,
        2020: jsonschema.Draft202012Validator,
    }[dialect.version]
    keywords: dict[str, Callable[..., Iterator[Any]]] = dict(_PYTHON_KEYWORDS)
    if dialect.version >= 2019:
        keywords["unevaluatedProperties"] = _kw_unevaluated_properties
        keywords["dependencies"] = _kw_dependencies
    if dialect.version == 2020:
        keywords["items"] = _kw_items
        keywords["prefixItems"] = _kw_prefix_items
    else:
        keywords["items"] = _kw_items_legacy
        keywords["additionalItems"] = _kw_additional_items
    if dialect.version in (6, 7):
        keywords["contentEncoding"] = _kw_content_encoding
        keywords["contentMediaType"] = _kw_content_media_type
    if dialect.vocabularies is not None:
        listed = {k for v in dialect.vocabularies for k in _VOCABULARIES[v]}
        known = {k for keywords_ in _VOCABULARIES.values() for k in keywords_}
        for keyword in set(base.VALIDATORS) & known - listed:
            keywords[keyword] = _kw_ignored
    extend: Any = jsonschema.validators.extend  # untyped in jsonschema's stubs
    return extend(base, keywords)


@functools.cache
def _format_checkers() -> tuple[Any, Any]:
    """(every format, only ``regex``): for payloads, and for schemas against their meta-schema."""
    import jsonschema

    def checker(formats: Mapping[str, Callable[[str], bool]]) -> Any:
        found = jsonschema.FormatChecker(formats=())
        for name, check in formats.items():
            found.checks(name)(functools.partial(_check_string, check))
        return found

    return checker(_FORMAT_CHECKS), checker({"regex": is_ecma_regex})


def _check_string(check: Callable[[str], bool], value: object) -> bool:
    return not isinstance(value, str) or check(value)


def _python_violations(errors: Iterator[Any]) -> tuple[Violation, ...]:
    return tuple(
        Violation(
            json_pointer(err.absolute_path),
            keyword_of(err.absolute_schema_path),
            _short(err.message),
        )
        for err in islice(errors, MAX_VIOLATIONS)
    )


def _compile_python(doc: SchemaDocument, dialect: Dialect) -> CompiledSchema:
    import jsonschema
    import referencing
    import referencing.exceptions
    import referencing.jsonschema

    specification = referencing.jsonschema.specification_with(_DIALECT_URIS[dialect.version])
    cls = _python_class(dialect)
    payload_formats, schema_formats = _format_checkers()
    try:
        resources = [
            (uri, specification.detect(body).create_resource(body))
            for uri, body in doc.references.items()
        ]
        registry: referencing.Registry[Any] = referencing.Registry(
            retrieve=_refuse_python  # type: ignore[call-arg]
        ).with_resources(resources)
        cls.check_schema(doc.document, format_checker=schema_formats)
        validator = cls(doc.document, registry=registry, format_checker=payload_formats)
        # Resolve every $ref and compile every pattern now, so a schema pointing outside or
        # holding a regex Python cannot run fails here, not per payload.
        _probe(validator._resolver, doc.document, specification)
        for uri, body in doc.references.items():
            resolved = validator._resolver.lookup(uri)
            _probe(resolved.resolver, body, specification.detect(body), follow_refs=False)
    except referencing.exceptions.Unresolvable as exc:
        raise _invalid(
            doc, f"$ref {exc} is not in the schema or its registry references; nothing is fetched"
        ) from exc
    except (jsonschema.SchemaError, EcmaRegexError, UnsupportedRegexError) as exc:
        raise _invalid(doc, str(exc)) from exc
    return CompiledSchema(
        doc,
        "python",
        validator.is_valid,
        validator.iter_errors,
        _python_violations,
        can_recurse(doc.document),
        (referencing.exceptions.Unresolvable,),
    )


def _refuse_python(uri: str) -> Any:
    import referencing.exceptions

    raise referencing.exceptions.NoSuchResource(ref=uri)  # type: ignore[call-arg]


def _probe(resolver: Any, document: Any, specification: Any, *, follow_refs: bool = True) -> None:
    """Resolve each ``$ref`` and compile each pattern in ``document``, in its ``$id`` scope.

    Walks the subschemas the dialect defines (not ``const``/``enum`` values), entering each
    subschema's ``$id`` before resolving its ``$ref``: a nested or URN ``$id`` resolves as the
    validator will resolve it. A registry reference's own ``$ref``s (``follow_refs=False``) are
    left to validation time: the reference may be written in another dialect than the schema
    that uses it, and only the parts a ``$ref`` reaches are ever read.
    """
    import referencing.jsonschema

    stack: list[tuple[Any, Any, Any]] = [(document, resolver, specification)]
    while stack:
        node, scope, spec = stack.pop()
        if not isinstance(node, dict):
            continue
        if node is not document and isinstance(node.get("$schema"), str):
            spec = referencing.jsonschema.specification_with(node["$schema"], default=spec)
        scope = scope.in_subresource(spec.create_resource(node))
        if follow_refs and isinstance(node.get("$ref"), str):
            scope.lookup(node["$ref"])
        if isinstance(node.get("pattern"), str):
            compile_ecma_regex(node["pattern"])
        if isinstance(node.get("patternProperties"), dict):
            for pattern in node["patternProperties"]:
                compile_ecma_regex(pattern)
        stack.extend((child, scope, spec) for child in spec.subresources_of(node))


# --------------------------------------------------------------------------- compile

_COMPILERS: Mapping[Backend, Callable[[SchemaDocument, Dialect], CompiledSchema]] = {
    "rust": _compile_rust,
    "python": _compile_python,
}


def compile_schema(doc: SchemaDocument, backend: Backend = "rust") -> CompiledSchema:
    """Compile ``doc`` with ``backend``; ``InvalidSchemaError`` if it is not a usable schema."""
    try:
        compiler = _COMPILERS[backend]
    except KeyError:
        raise ValueError(f"unknown validator backend {backend!r}; use one of {BACKENDS}") from None
    dialect = dialect_of(doc)
    cycle = endless_ref_cycle(doc.document, dialect.version)
    if cycle is not None:
        raise _invalid(
            doc,
            f"$ref cycle {' -> '.join(cycle)} never reaches into the payload: validating with "
            "it could not end",
        )
    return compiler(doc, dialect)
