"""Compiled validators and violations as data (SPEC §4), for both backends.

One table of (schema, payload, valid) cases runs against the ``rust`` (jsonschema-rs) and the
``python`` (jsonschema) backend: both must give the expected answer, and report the same
(path, keyword) violations. ``tests/conformance`` runs the official JSON Schema Test Suite.
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from policy_engine.decision import MAX_VIOLATIONS
from policy_engine.errors import InvalidSchemaError
from policy_engine.settings import BACKENDS
from policy_engine.sources import SchemaDocument
from policy_engine.validate import (
    MAX_DEPTH,
    MAX_MESSAGE_CHARS,
    CompiledSchema,
    EcmaRegexError,
    can_recurse,
    compile_schema,
    endless_ref_cycle,
    exceeds_depth,
    is_ecma_regex,
    json_pointer,
    keyword_of,
    known_dialect,
    translate_ecma_regex,
)

UUID = "123e4567-e89b-12d3-a456-426614174000"
TREE = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "children": {"type": "array", "items": {"$ref": "#"}},
    },
}
POSITIVE = {
    "$defs": {"pos": {"type": "integer", "minimum": 1}},
    "properties": {"n": {"$ref": "#/$defs/pos"}},
}
IF_TRADE = {
    "if": {"properties": {"kind": {"const": "trade"}}, "required": ["kind"]},
    "then": {"required": ["price"]},
    "else": {"not": {"required": ["price"]}},
}
ARRAY = {"type": "array", "items": {"type": "integer"}, "minItems": 1, "uniqueItems": True}
NESTED = {
    "type": "object",
    "properties": {
        "source": {
            "type": "object",
            "properties": {"id": {"type": "string", "minLength": 1}},
            "required": ["id"],
        }
    },
    "required": ["source"],
}
CLOSED = {"properties": {"a": {}}, "additionalProperties": False}
DRAFT7 = {"$schema": "http://json-schema.org/draft-07/schema#", "exclusiveMinimum": 0}


def _tree(depth: int, leaf_name: object) -> dict[str, Any]:
    node: dict[str, Any] = {"name": leaf_name}
    for _ in range(depth):
        node = {"name": "n", "children": [node]}
    return node


# (id, schema, payload, valid): each row worked out from the JSON Schema specification.
CASES: list[tuple[str, Any, Any, bool]] = [
    ("integer ok", {"type": "integer"}, 3, True),
    ("integer as float 1.0", {"type": "integer"}, 1.0, True),
    ("integer big", {"type": "integer"}, 2**70, True),
    ("integer not float", {"type": "integer"}, 3.5, False),
    ("integer not string", {"type": "integer"}, "3", False),
    ("integer not bool", {"type": "integer"}, True, False),
    ("number int", {"type": "number"}, 1, True),
    ("string not null", {"type": "string"}, None, False),
    ("type list", {"type": ["string", "null"]}, None, True),
    ("required missing", {"type": "object", "required": ["a"]}, {}, False),
    ("required present", {"type": "object", "required": ["a"]}, {"a": None}, True),
    ("enum miss", {"enum": ["warn", "strict"]}, "off", False),
    ("enum hit", {"enum": ["warn", "strict"]}, "warn", True),
    ("const", {"const": {"a": [1]}}, {"a": [1]}, True),
    ("minimum below", {"minimum": 0}, -1, False),
    ("minimum equal", {"minimum": 0}, 0, True),
    ("maximum above", {"maximum": 10}, 10.5, False),
    ("exclusiveMinimum equal", {"exclusiveMinimum": 0}, 0, False),
    ("exclusiveMinimum above", {"exclusiveMinimum": 0}, 0.001, True),
    ("draft-07 exclusiveMinimum", DRAFT7, 0, False),
    ("maxLength counts code points", {"maxLength": 2}, "東京", True),
    ("maxLength over", {"maxLength": 3}, "abcd", False),
    ("pattern hit", {"pattern": "^[A-Z]{2,5}$"}, "AAPL", True),
    ("pattern miss", {"pattern": "^[A-Z]{2,5}$"}, "aapl", False),
    ("pattern is a search", {"pattern": "[0-9]"}, "abc1def", True),
    ("additionalProperties extra", CLOSED, {"a": 1, "b": 2}, False),
    ("additionalProperties none", CLOSED, {"a": 1}, True),
    ("array ok", ARRAY, [1, 2], True),
    ("array empty", ARRAY, [], False),
    ("array item type", ARRAY, [1, "2"], False),
    ("array unique", ARRAY, [1, 1], False),
    ("nested missing", NESTED, {"source": {}}, False),
    ("nested empty id", NESTED, {"source": {"id": ""}}, False),
    ("nested ok", NESTED, {"source": {"id": "p-42"}}, True),
    ("$defs/$ref low", POSITIVE, {"n": 0}, False),
    ("$defs/$ref ok", POSITIVE, {"n": 1}, True),
    ("recursive $ref ok", TREE, _tree(20, "leaf"), True),
    ("recursive $ref deep error", TREE, _tree(20, 7), False),
    ("date-time ok", {"format": "date-time"}, "2026-12-01T00:00:00Z", True),
    ("date-time offset", {"format": "date-time"}, "2026-12-01T00:00:00.5+01:00", True),
    ("date-time bad", {"format": "date-time"}, "2026-13-45T99:00:00Z", False),
    ("date-time date only", {"format": "date-time"}, "2026-12-01", False),
    ("format ignores non-strings", {"format": "date-time"}, 42, True),
    ("email ok", {"format": "email"}, "ops@example.com", True),
    ("email bad", {"format": "email"}, "not-an-email", False),
    ("uuid ok", {"format": "uuid"}, UUID, True),
    ("uuid bad", {"format": "uuid"}, "123e4567", False),
    ("ipv4 ok", {"format": "ipv4"}, "192.168.0.1", True),
    ("ipv4 octet", {"format": "ipv4"}, "256.1.1.1", False),
    ("ipv4 short", {"format": "ipv4"}, "1.2.3", False),
    ("if/then needs price", IF_TRADE, {"kind": "trade"}, False),
    ("if/then ok", IF_TRADE, {"kind": "trade", "price": 1}, True),
    ("if/else ok", IF_TRADE, {"kind": "quote"}, True),
    ("if/else forbids price", IF_TRADE, {"kind": "quote", "price": 1}, False),
    ("oneOf both", {"oneOf": [{"type": "integer"}, {"minimum": 0}]}, 1, False),
    ("anyOf one", {"anyOf": [{"type": "string"}, {"minimum": 0}]}, 1, True),
    ("boolean schema true", True, {"anything": 1}, True),
    ("boolean schema false", False, {}, False),
]


def _compile(schema: Any, backend: str, **refs: Any) -> CompiledSchema:
    doc = SchemaDocument("test.Schema", "v1", "1", schema, references=refs)
    return compile_schema(doc, backend)  # type: ignore[arg-type]


def test_table_is_large_enough():
    """The shared table has at least 25 cases, some valid and some invalid."""
    assert len(CASES) >= 25
    assert {valid for *_, valid in CASES} == {True, False}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("schema", "payload", "valid"), [pytest.param(*c[1:], id=c[0]) for c in CASES]
)
def test_backend_gives_the_expected_answer(backend: str, schema: Any, payload: Any, valid: bool):
    """Both backends accept valid and reject invalid payloads, in ``check`` and ``violations``."""
    compiled = _compile(schema, backend)
    assert (compiled.check(payload) == ()) is valid
    assert (compiled.violations(payload) == ()) is valid


def test_both_backends_exist():
    """The two backends are "rust" and "python"."""
    assert set(BACKENDS) == {"rust", "python"}


def test_unknown_backend_is_a_value_error():
    """Asking for a backend that does not exist is a ``ValueError`` naming it."""
    with pytest.raises(ValueError, match="java"):
        compile_schema(SchemaDocument("s", "v1", "1", {}), "java")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- violations


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_date_time_is_a_format_violation(backend: str):
    """An impossible date-time is rejected with the keyword "format" at its path."""
    compiled = _compile({"properties": {"at": {"format": "date-time"}}}, backend)
    [violation] = compiled.check({"at": "2026-13-45T99:00:00Z"})
    assert (violation.path, violation.keyword) == ("/at", "format")


KEYWORD_CASES = [
    ("minimum", {"properties": {"n": {"minimum": 1}}}, {"n": 0}, "/n"),
    ("required", {"required": ["id"]}, {}, ""),
    ("additionalProperties", CLOSED, {"a": 1, "zz": 2}, ""),
    ("pattern", {"items": {"pattern": "^x"}}, ["x", "y"], "/1"),
    ("enum", {"properties": {"m": {"enum": ["warn"]}}}, {"m": "loud"}, "/m"),
    ("maxItems", {"maxItems": 1}, [1, 2], ""),
    ("type", NESTED, {"source": {"id": 5}}, "/source/id"),
    ("minimum", POSITIVE, {"n": -3}, "/n"),
    ("format", {"properties": {"u": {"format": "uuid"}}}, {"u": "x"}, "/u"),
    ("const", {"const": 1}, 2, ""),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("keyword", "schema", "payload", "path"),
    KEYWORD_CASES,
    ids=[f"{c[0]}{c[3]}" for c in KEYWORD_CASES],
)
def test_violation_names_keyword_and_path(
    backend: str, keyword: str, schema: Any, payload: Any, path: str
):
    """A single failure is reported with the failing keyword and the JSON Pointer of the value."""
    [violation] = _compile(schema, backend).check(payload)
    assert (violation.path, violation.keyword) == (path, keyword)
    assert violation.message


@pytest.mark.parametrize("backend", BACKENDS)
def test_violation_paths_escape_tilde_and_slash(backend: str):
    """Paths are RFC 6901 JSON Pointers: "~" is written "~0", "/" is "~1", array items by index."""
    schema = {
        "properties": {
            "a/b": {"type": "integer"},
            "c~d": {"type": "integer"},
            "~/": {"type": "integer"},
            "list": {"items": {"type": "integer"}},
        }
    }
    payload = {"a/b": "x", "c~d": "y", "~/": "z", "list": [1, 2, "w"]}
    found = {(v.path, v.keyword) for v in _compile(schema, backend).check(payload)}
    assert found == {
        ("/a~1b", "type"),
        ("/c~0d", "type"),
        ("/~0~1", "type"),
        ("/list/2", "type"),
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_at_most_20_violations(backend: str):
    """A payload with 50 errors yields exactly 20 violations."""
    schema = {"properties": {f"p{i}": {"type": "integer"} for i in range(50)}}
    payload = {f"p{i}": "not a number" for i in range(50)}
    compiled = _compile(schema, backend)
    assert MAX_VIOLATIONS == 20
    assert len(compiled.check(payload)) == 20
    assert len(compiled.violations(payload)) == 20


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("schema", "payload"),
    [
        ({"maxLength": 5}, "x" * 100_000),
        ({"enum": ["v" * 500, "w" * 500]}, "u" * 5_000),
        ({"type": "integer"}, {f"k{i}": "v" * 100 for i in range(1000)}),
    ],
    ids=["long string", "long enum", "big object"],
)
def test_messages_quoting_huge_values_are_cut(backend: str, schema: Any, payload: Any):
    """A violation message that would quote a huge value is cut to at most 300 characters."""
    violations = _compile(schema, backend).check(payload)
    assert violations
    assert MAX_MESSAGE_CHARS == 300
    assert all(len(v.message) <= 300 for v in violations)


@pytest.mark.parametrize("backend", BACKENDS)
def test_valid_payload_has_no_violations(backend: str):
    """A valid payload yields an empty tuple from ``check`` and ``violations``."""
    compiled = _compile(NESTED, backend)
    assert compiled.check({"source": {"id": "p-42"}}) == ()
    assert compiled.violations({"source": {"id": "p-42"}}) == ()


def test_violation_to_dict_has_the_spec_fields():
    """A violation's JSON form has exactly path, keyword and message (SPEC §6)."""
    [violation] = _compile({"minimum": 1}, "rust").check(0)
    assert set(violation.to_dict()) == {"path", "keyword", "message"}


# --------------------------------------------------------------------------- no remote $ref


class _RecordingHandler(http.server.BaseHTTPRequestHandler):
    hits: list[str]

    def do_GET(self) -> None:
        self.hits.append(self.path)
        body = b'{"type": "integer", "$defs": {"id": {"type": "integer"}}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def recording_server() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server that serves a JSON Schema for any path and records every request."""
    hits: list[str] = []
    handler = type("Handler", (_RecordingHandler,), {"hits": hits})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "shape",
    [
        lambda url: {"$ref": f"{url}/x.json"},
        lambda url: {"properties": {"a": {"$ref": f"{url}/x.json#/$defs/id"}}},
        lambda url: {"$id": f"{url}/root.json", "properties": {"a": {"$ref": "other.json"}}},
    ],
    ids=["root", "nested", "relative to $id"],
)
def test_remote_ref_is_refused_and_never_fetched(
    backend: str, shape: Any, recording_server: tuple[str, list[str]]
):
    """A ``$ref`` to a URL outside the schema fails to compile, and nothing is requested."""
    url, hits = recording_server
    with pytest.raises(InvalidSchemaError):
        _compile(shape(url), backend)
    assert hits == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_ref_to_a_registry_reference_resolves_without_fetching(
    backend: str, recording_server: tuple[str, list[str]]
):
    """A ``$ref`` to a supplied registry reference uses that document, even if its URL is live."""
    url, hits = recording_server
    common = {"$defs": {"id": {"type": "string", "minLength": 3}}}
    schema = {"properties": {"id": {"$ref": f"{url}/common.json#/$defs/id"}}}
    compiled = _compile(schema, backend, **{f"{url}/common.json": common})
    assert compiled.check({"id": "p-42"}) == ()
    [violation] = compiled.check({"id": "p"})
    assert (violation.path, violation.keyword) == ("/id", "minLength")
    assert hits == []


# --------------------------------------------------------------------------- depth


def _deep(depth: int) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    for _ in range(depth):
        payload = {"a": payload}
    return payload


@pytest.fixture(scope="module")
def very_deep() -> dict[str, Any]:
    """A payload nested 100 000 objects deep."""
    return _deep(100_000)


@pytest.mark.parametrize("backend", BACKENDS)
def test_recursive_schema_with_a_very_deep_payload_is_a_max_depth_violation(
    backend: str, very_deep: dict[str, Any]
):
    """A recursive schema meets a 100 000-deep payload with a ``maxDepth`` violation, no crash."""
    compiled = _compile({"type": "object", "additionalProperties": {"$ref": "#"}}, backend)
    assert compiled.depth_guard
    for violations in (compiled.check(very_deep), compiled.violations(very_deep)):
        assert [(v.path, v.keyword) for v in violations] == [("", "maxDepth")]


@pytest.mark.parametrize("backend", BACKENDS)
def test_recursive_schema_validates_payloads_up_to_the_depth_limit(backend: str):
    """A payload exactly ``MAX_DEPTH`` deep is validated normally under a recursive schema."""
    compiled = _compile({"type": "object", "additionalProperties": {"$ref": "#"}}, backend)
    assert MAX_DEPTH == 128
    assert compiled.check(_deep(MAX_DEPTH - 1)) == ()
    assert [v.keyword for v in compiled.check(_deep(MAX_DEPTH + 1))] == ["maxDepth"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_recursive_schema_ignores_a_very_deep_unvalidated_part(
    backend: str, very_deep: dict[str, Any]
):
    """A schema without cycles validates a payload with a 100 000-deep ignored property fine."""
    compiled = _compile({"type": "object", "properties": {"x": {"type": "integer"}}}, backend)
    assert not compiled.depth_guard
    assert compiled.check({"x": 1, "ignored": very_deep}) == ()
    [violation] = compiled.check({"x": "one", "ignored": very_deep})
    assert (violation.path, violation.keyword) == ("/x", "type")


def test_exceeds_depth_counts_containers():
    """``exceeds_depth`` is true only past the limit, counting nested objects and arrays."""
    assert not exceeds_depth(_deep(3), limit=4)
    assert not exceeds_depth(_deep(4), limit=5)
    assert exceeds_depth(_deep(5), limit=5)
    assert exceeds_depth([[[[1]]]], limit=3)
    assert not exceeds_depth("scalar", limit=0)


# --------------------------------------------------------------------------- not JSON data


NOT_JSON = [
    ({"properties": {"x": {"type": "integer"}}}, {"x": {1, 2}}),
    ({"type": "object"}, {1, 2}),
    ({"type": "object", "required": ["a"]}, {1: "x"}),
    ({"type": "array", "items": {"type": "integer"}}, [1, object()]),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("schema", "payload"), NOT_JSON, ids=["set", "root set", "int key", "object"]
)
def test_payload_that_is_not_json_data_is_a_violation_not_an_exception(
    backend: str, schema: Any, payload: Any
):
    """A payload holding what JSON cannot (sets, int keys, objects) yields violations, no raise."""
    compiled = _compile(schema, backend)
    assert compiled.check(payload)
    assert compiled.violations(payload)


# --------------------------------------------------------------------------- can_recurse


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"type": "object"}, False),
        (True, False),
        ({"$ref": "#"}, True),
        ({"additionalProperties": {"$ref": "#"}}, True),
        (TREE, True),
        (POSITIVE, False),
        ({"$ref": "#/$defs/a", "$defs": {"a": {"type": "integer"}}}, False),
        # a chain without a cycle: a -> b -> c
        (
            {
                "$defs": {
                    "a": {"$ref": "#/$defs/b"},
                    "b": {"items": {"$ref": "#/$defs/c"}},
                    "c": {"type": "integer"},
                },
                "properties": {"x": {"$ref": "#/$defs/a"}, "y": {"$ref": "#/$defs/c"}},
            },
            False,
        ),
        # a -> b -> a
        (
            {
                "$defs": {
                    "a": {"items": {"$ref": "#/$defs/b"}},
                    "b": {"items": {"$ref": "#/$defs/a"}},
                },
                "$ref": "#/$defs/a",
            },
            True,
        ),
        ({"$defs": {"node": {"properties": {"next": {"$ref": "#/$defs/node"}}}}}, True),
        ({"$defs": {"a/b": {"items": {"$ref": "#/$defs/a~1b"}}}}, True),
        ({"$ref": "other.json"}, True),
        ({"$ref": "#anchor", "$defs": {"a": {"$anchor": "anchor"}}}, True),
        ({"$dynamicRef": "#meta"}, True),
        ({"properties": {"$ref": {"type": "string"}}}, False),
    ],
    ids=[
        "no refs",
        "boolean",
        "root self",
        "additionalProperties self",
        "tree",
        "defs once",
        "root to defs",
        "chain",
        "mutual",
        "linked list",
        "escaped pointer",
        "external",
        "anchor",
        "dynamic",
        "property named $ref",
    ],
)
def test_can_recurse(document: Any, expected: bool):
    """``can_recurse`` is true exactly for schemas whose $ref graph can cycle (or is unknown)."""
    assert can_recurse(document) is expected


@pytest.mark.parametrize(
    ("parts", "pointer"),
    [
        ([], ""),
        (["bars", 3, "close"], "/bars/3/close"),
        (["a/b", "c~d", ""], "/a~1b/c~0d/"),
        (["~1"], "/~01"),
    ],
)
def test_json_pointer_escapes_per_rfc6901(parts: list[Any], pointer: str):
    """``json_pointer`` writes RFC 6901 pointers, escaping "~" before "/"."""
    assert json_pointer(parts) == pointer


# --------------------------------------------------------------------------- invalid schemas


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "schema",
    [
        {"type": "nonsense"},
        {"pattern": "("},
        {"minimum": "zero"},
        {"required": "id"},
        {"properties": {"a": {"$ref": "#/$defs/missing"}}},
    ],
    ids=["type", "pattern", "minimum", "required", "dangling ref"],
)
def test_invalid_schema_is_refused_at_compile_time(backend: str, schema: Any):
    """A schema that is not usable raises ``InvalidSchemaError`` naming schema and track."""
    with pytest.raises(InvalidSchemaError) as info:
        _compile(schema, backend)
    assert (info.value.schema, info.value.track) == ("test.Schema", "v1")


# --------------------------------------------------------------------------- one answer, one report

FALSE_SUBSCHEMAS = [
    ("false property", {"properties": {"x": False}}, {"x": 1}, [("/x", "properties")]),
    ("false root", False, 1, [("", "false")]),
    ("false items", {"items": False}, [1, 2], [("/0", "items"), ("/1", "items")]),
    ("false prefixItems", {"prefixItems": [False]}, [1], [("/0", "prefixItems")]),
    (
        "false patternProperties",
        {"patternProperties": {"^x": False}},
        {"xa": 1},
        [("/xa", "patternProperties")],
    ),
    (
        "false behind a $ref",
        {"$defs": {"no": False}, "properties": {"x": {"$ref": "#/$defs/no"}}},
        {"x": 1},
        [("/x", "properties")],
    ),
    (
        "false dependentSchemas",
        {"dependentSchemas": {"a": False}},
        {"a": 1},
        [("", "dependentSchemas")],
    ),
    (
        "false additionalProperties",
        {"additionalProperties": False},
        {"a": 1, "b": 2},
        [("", "additionalProperties")],
    ),
    (
        "false additionalItems",
        {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "items": [{}],
            "additionalItems": False,
        },
        [1, 2],
        [("", "additionalItems")],
    ),
    (
        "property named like a keyword",
        {"properties": {"minimum": {"type": "string"}}},
        {"minimum": 1},
        [("/minimum", "type")],
    ),
]


def _reported(schema: Any, payload: Any, backend: str) -> list[tuple[str, str]]:
    return sorted({(v.path, v.keyword) for v in _compile(schema, backend).check(payload)})


@pytest.mark.parametrize(
    ("schema", "payload"),
    [pytest.param(*c[1:3], id=c[0]) for c in CASES]
    + [pytest.param(*c[1:3], id=f"{c[0]}{c[3]}") for c in KEYWORD_CASES]
    + [pytest.param(*c[1:3], id=c[0]) for c in FALSE_SUBSCHEMAS],
)
def test_both_backends_report_the_same_paths_and_keywords(schema: Any, payload: Any):
    """Every row of the case tables gives the same (path, keyword) violations on both backends."""
    assert _reported(schema, payload, "rust") == _reported(schema, payload, "python")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("schema", "payload", "expected"),
    [pytest.param(*c[1:], id=c[0]) for c in FALSE_SUBSCHEMAS],
)
def test_false_subschema_is_reported_under_the_keyword_that_holds_it(
    backend: str, schema: Any, payload: Any, expected: list[tuple[str, str]]
):
    """A ``false`` subschema fails under its keyword at the value's path; a false root: "false"."""
    assert _reported(schema, payload, backend) == expected


@pytest.mark.parametrize(
    ("path", "keyword"),
    [
        (["properties", "n", "minimum"], "minimum"),
        (["properties", "x"], "properties"),
        (["properties", "properties", "type"], "type"),
        (["allOf", 1, "$ref", "required"], "required"),
        (["$defs", "a", "$ref"], "$defs"),
        ([], "false"),
    ],
)
def test_keyword_of_skips_names_indexes_and_refs(path: list[str | int], keyword: str):
    """``keyword_of`` names the last keyword on a schema path, never a property name or a $ref."""
    assert keyword_of(path) == keyword


# --------------------------------------------------------------------------- $ref scope and cycles


NESTED_ID = {
    "$id": "http://example.com/a.json",
    "properties": {
        "foo": {"$id": "b.json", "$defs": {"i": {"type": "string"}}, "$ref": "#/$defs/i"}
    },
}
URN_ID = {
    "$id": "urn:uuid:deadbeef-1234-0000-0000-4321feebdaed",
    "properties": {"foo": {"$ref": "urn:uuid:deadbeef-1234-0000-0000-4321feebdaed#/$defs/bar"}},
    "$defs": {"bar": {"type": "string"}},
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("schema", [NESTED_ID, URN_ID], ids=["nested $id", "URN $id"])
def test_refs_resolve_in_their_id_scope(backend: str, schema: Any):
    """A ``$ref`` under a nested or URN ``$id`` compiles and validates (it was refused before)."""
    compiled = _compile(schema, backend)
    assert compiled.check({"foo": "x"}) == ()
    assert [(v.path, v.keyword) for v in compiled.check({"foo": 1})] == [("/foo", "type")]


MUTUAL = {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "schema",
    [
        {**MUTUAL, "$ref": "#/$defs/a"},
        {**MUTUAL, "properties": {"x": {"$ref": "#/$defs/a"}}},
        {"$ref": "#"},
        {"anyOf": [{"type": "string"}, {"$ref": "#"}]},
        {
            "$defs": {"a": {"allOf": [{"$ref": "#/$defs/b"}]}, "b": {"not": {"$ref": "#/$defs/a"}}},
            "$ref": "#/$defs/a",
        },
    ],
    ids=[
        "mutual at the root",
        "mutual under a property",
        "self",
        "self in anyOf",
        "through allOf/not",
    ],
)
def test_refs_that_loop_on_the_same_value_are_refused(backend: str, schema: Any):
    """A ``$ref`` loop that never moves into the payload is an unusable schema, on both backends."""
    with pytest.raises(InvalidSchemaError, match=r"\$ref cycle .* never reaches into the payload"):
        _compile(schema, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "schema",
    [MUTUAL, TREE, {"$defs": {"a": {"items": {"$ref": "#/$defs/a"}}}, "$ref": "#/$defs/a"}],
    ids=["unused loop", "tree", "loop through items"],
)
def test_refs_that_move_into_the_payload_or_are_unused_compile(backend: str, schema: Any):
    """A recursion that descends into the payload, or a loop nothing uses, is a usable schema."""
    compiled = _compile(schema, backend)
    assert [v.keyword for v in compiled.check({"name": "x", "children": []})] != ["maxDepth"]
    assert "maxDepth" not in [v.keyword for v in compiled.check([[[]]])]


def test_endless_ref_cycle_names_the_loop():
    """``endless_ref_cycle`` returns the loop's pointers, first one repeated."""
    assert endless_ref_cycle({**MUTUAL, "$ref": "#/$defs/a"}) == [
        "#/$defs/a",
        "#/$defs/b",
        "#/$defs/a",
    ]
    assert endless_ref_cycle(TREE) is None


# --------------------------------------------------------------------------- dialects


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "uri",
    [
        "http://json-schema.org/draft-07/schema#",
        "https://json-schema.org/draft-07/schema#",
        "https://json-schema.org/draft-07/schema",
    ],
)
def test_draft_07_is_read_as_draft_07_whatever_the_scheme(backend: str, uri: str):
    """``exclusiveMinimum: true`` is draft-04 only: a draft-07 schema must refuse it, by any URI."""
    assert known_dialect(uri) == 7
    with pytest.raises(InvalidSchemaError):
        _compile({"$schema": uri, "minimum": 0, "exclusiveMinimum": True}, backend)
    [violation] = _compile({"$schema": uri, "exclusiveMinimum": 0}, backend).check(0)
    assert violation.keyword == "exclusiveMinimum"


@pytest.mark.parametrize("backend", BACKENDS)
def test_unknown_meta_schema_is_refused(backend: str):
    """A ``$schema`` that is no draft and no registry reference is refused, not guessed."""
    with pytest.raises(InvalidSchemaError):
        _compile({"$schema": "https://example.com/my-meta", "type": "object"}, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dependencies_is_enforced_under_2020_12(backend: str):
    """Draft 7's ``dependencies`` is enforced by both backends under 2020-12 too."""
    compiled = _compile({"dependencies": {"a": ["b"], "c": {"required": ["d"]}}}, backend)
    assert compiled.check({"a": 1, "b": 2, "c": 3, "d": 4}) == ()
    assert {v.keyword for v in compiled.check({"a": 1, "c": 3})} == {"dependencies", "required"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_reference_without_schema_is_read_in_the_referencing_dialect(backend: str):
    """A draft-07 schema's reference without ``$schema`` is draft-07 (``$id: "#foo"`` anchors)."""
    common = {"definitions": {"A": {"$id": "#foo", "type": "integer"}}}
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$ref": "http://example.com/common.json#foo",
    }
    compiled = _compile(schema, backend, **{"http://example.com/common.json": common})
    assert compiled.check(1) == ()
    assert [v.keyword for v in compiled.check("one")] == ["type"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_custom_meta_schema_vocabularies_pick_the_keywords(backend: str):
    """A custom meta-schema without the validation vocabulary turns ``minimum`` off."""
    meta = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "http://example.com/meta/no-validation",
        "$vocabulary": {
            "https://json-schema.org/draft/2020-12/vocab/applicator": True,
            "https://json-schema.org/draft/2020-12/vocab/core": True,
        },
        "allOf": [
            {"$ref": "https://json-schema.org/draft/2020-12/meta/applicator"},
            {"$ref": "https://json-schema.org/draft/2020-12/meta/core"},
        ],
    }
    schema = {
        "$schema": "http://example.com/meta/no-validation",
        "properties": {"bad": False, "n": {"minimum": 10}},
    }
    compiled = _compile(schema, backend, **{"http://example.com/meta/no-validation": meta})
    assert compiled.check({"n": 1}) == ()
    assert [v.keyword for v in compiled.check({"bad": 1})] == ["properties"]


# --------------------------------------------------------------------------- ECMA-262 patterns

PATTERNS = [
    (r"^\p{Letter}+$", "élan", True),
    (r"^\p{Letter}+$", "42", False),
    (r"^\p{L}\p{Nd}$", "ক২", True),
    (r"^\P{Lu}$", "a", True),
    (r"^\cC$", "\x03", True),
    (r"^\d$", "\u09ea", False),  # BENGALI DIGIT FOUR is not \d in ECMA-262
    (r"^\D$", "\u09ea", True),
    (r"^\w$", "é", False),
    (r"^\W$", "é", True),
    (r"^\s$", "\ufeff", True),
    (r"^\s$", "\u0085", False),
    (r"^\S$", "\u0085", True),
    (r"^a$", "a\n", False),  # ECMA $ is the end, not "before a final newline"
    (r"^.$", "\n", False),
    (r"^.$", "\u2028", False),
    (r"^.$", "😀", True),
    (r"^\u{1F600}$", "😀", True),
    (r"^[^\]]$", "x", True),
    (r"^(?i:ab)$", "AB", True),
    (r"a{2}", "aa", True),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("pattern", "text", "matches"), PATTERNS, ids=[repr(p[:2]) for p in PATTERNS]
)
def test_patterns_match_as_ecma_262(backend: str, pattern: str, text: str, matches: bool):
    """``pattern`` is an ECMA-262 regex on both backends (``\\d``, ``\\w``, ``$``, ``.``, ...)."""
    assert (_compile({"pattern": pattern}, backend).check(text) == ()) is matches


@pytest.mark.parametrize(
    "pattern",
    [
        r"(?P<name>x)",
        r"(?P=name)",
        r"(?#comment)",
        r"(?i)x",
        r"\Z",
        r"\A",
        r"\a",
        r"x{2,1}",
        r"\1",
        r"a**",
        r"(?=a)*",
        r"[z-a]",
        r"[\d-z]",
        "{1}",
        "]",
        "(",
        r"\k<none>",
        r"\p{NoSuchProperty}",
        r"\c1",
        r"\u12",
        r"(?<a>x)(?<a>y)",
    ],
)
def test_python_regex_syntax_is_not_ecma_262(pattern: str):
    """Syntax ECMA-262 (Unicode mode) refuses is refused, also where Python's ``re`` accepts it."""
    assert not is_ecma_regex(pattern)
    with pytest.raises(EcmaRegexError):
        translate_ecma_regex(pattern)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pattern", [r"\Z", "(", "x{2,1}"])
def test_schema_with_a_non_ecma_pattern_is_refused(backend: str, pattern: str):
    """A schema whose ``pattern`` is not ECMA-262 fails to compile on both backends."""
    with pytest.raises(InvalidSchemaError):
        _compile({"pattern": pattern}, backend)


# Where jsonschema-rs departs from ECMA-262 (docs/validation.md, "Patterns"): (pattern, text,
# ECMA-262's answer = the python backend's, jsonschema-rs's answer; None = schema refused).
RUST_PATTERN_DEPARTURES = [
    (r"\bé", "é", False, True),  # ECMA's \b knows only ASCII word characters
    (r"^(?<y>\d)-\k<y>$", "1-1", True, None),  # named backreference
    (r"^\x41\0$", "A\x00", True, None),  # \0 is NUL
    (r"(?P<n>x)", "x", None, True),  # Python's named group is not ECMA-262
]


@pytest.mark.parametrize(
    ("pattern", "text", "ecma", "rust"),
    RUST_PATTERN_DEPARTURES,
    ids=[repr(p[0]) for p in RUST_PATTERN_DEPARTURES],
)
def test_documented_pattern_departures_of_the_rust_backend(
    pattern: str, text: str, ecma: bool | None, rust: bool | None
):
    """The python backend follows ECMA-262 where jsonschema-rs does not (listed in the docs)."""

    def answer(backend: str) -> bool | None:
        try:
            compiled = _compile({"pattern": pattern}, backend)
        except InvalidSchemaError:
            return None
        return compiled.check(text) == ()

    assert (answer("python"), answer("rust")) == (ecma, rust)


@pytest.mark.parametrize("pattern", [r"\p{Script=Greek}", r"\p{Alphabetic}", r"(?<=a+)b"])
def test_python_backend_refuses_what_re_cannot_run(pattern: str):
    """Valid ECMA-262 the python backend cannot run (scripts, variable lookbehind) is refused."""
    assert is_ecma_regex(pattern)
    with pytest.raises(InvalidSchemaError, match="python backend"):
        _compile({"pattern": pattern}, "python")


# --------------------------------------------------------------------------- formats

FORMATS = [
    ("email", "joe.bloggs@example.com", True),
    ("email", '"joe bloggs"@example.com', True),
    ("email", "joe.bloggs@[IPv6:::1]", True),
    ("email", "joe.bloggs@", False),
    ("email", "@example.com", False),
    ("email", "te..st@example.com", False),
    ("email", "joe.bloggs@invalid=domain.com", False),
    ("date-time", "1998-12-31T23:59:60Z", True),
    ("date-time", "1998-12-31T15:59:60.123-08:00", True),
    ("date-time", "1998-12-31T23:58:60Z", False),
    ("date-time", "2026-12-01T00:00:00Z\n", False),
    ("date-time", "2026-02-29T00:00:00Z", False),
    ("date-time", "2028-02-29T00:00:00Z", True),
    ("time", "23:59:60Z", True),
    ("hostname", "example.com", True),
    ("hostname", "example.com.", False),
    ("hostname", "-example.com", False),
    ("hostname", "ab--cd.example", False),
    ("hostname", "xn--X", False),
    ("hostname", "xn--bcher-kva.example", True),
    ("idn-hostname", "bücher.example", True),
    ("idn-hostname", "example。", False),
    ("duration", "P4DT12H30M5S", True),
    ("duration", "P2W", True),
    ("duration", "PT0.5S", False),
    ("duration", "P1Y2W", False),
    ("duration", "-P1D", False),
    ("uuid", UUID, True),
    ("uuid", UUID + "-", False),
    ("uri", "https://[::1]:8080/a?b#c", True),
    ("uri", "//example.com", False),
    ("uri-reference", "//example.com", True),
    ("iri", "https://例え.jp/パス", True),
    ("uri-template", "http://example.com/{term:1}/{term}", True),
    ("uri-template", "{var=def}", False),
    ("relative-json-pointer", "100", True),
    ("relative-json-pointer", "01/a", False),
    ("regex", r"^\p{Letter}$", True),
    ("regex", r"(?P<n>x)", False),
    ("ipv4", "192.168.0.1", True),
    ("ipv4", "১২৭.0.0.1", False),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("fmt", "value", "valid"), FORMATS, ids=[f"{f[0]}:{f[1]!r}" for f in FORMATS]
)
def test_formats_follow_their_rfcs_on_both_backends(
    backend: str, fmt: str, value: str, valid: bool
):
    """Each format check follows its RFC, as the JSON Schema Test Suite reads it, on both."""
    assert (_compile({"format": fmt}, backend).check(value) == ()) is valid


# --------------------------------------------------------------------------- lazy imports


def test_jsonschema_is_imported_only_for_the_python_backend():
    """Evaluating with the default backend never imports jsonschema or referencing (~1 s)."""
    code = (
        "import sys\n"
        "from policy_engine import PolicyEngine, Settings\n"
        "from policy_engine.sources import SchemaDocument\n"
        "from policy_engine.validate import compile_schema\n"
        "doc = SchemaDocument('s', 'v1', '1', {'pattern': '^x', 'format': 'email'})\n"
        "compile_schema(doc).check('y')\n"
        "print(sorted(m for m in ('jsonschema', 'referencing') if m in sys.modules))\n"
        "compile_schema(doc, 'python').check('y')\n"
        "print(sorted(m for m in ('jsonschema', 'referencing') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split("\n")[:2] == ["[]", "['jsonschema', 'referencing']"]
