"""The ``rust`` backend, the default: jsonschema-rs.

About 100x faster than a fresh validator per payload. Nothing is fetched: a ``$ref`` outside
the schema and its registry references fails to compile.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from itertools import islice
from typing import Any

import jsonschema_rs

from policy_engine.decision import MAX_VIOLATIONS, Violation
from policy_engine.errors import InvalidSchemaError
from policy_engine.sources import SchemaDocument
from policy_engine.validate.compiled import (
    CompiledSchema,
    invalid_schema,
    json_pointer,
    keyword_of,
    shorten,
)
from policy_engine.validate.dialects import Dialect
from policy_engine.validate.refs import can_recurse

# jsonschema-rs's draft for each dialect version.
_RUST_DRAFTS: Mapping[int, int] = {
    4: jsonschema_rs.Draft4,
    6: jsonschema_rs.Draft6,
    7: jsonschema_rs.Draft7,
    2019: jsonschema_rs.Draft201909,
    2020: jsonschema_rs.Draft202012,
}


def _refuse_retrieval(uri: str) -> Any:
    raise InvalidSchemaError(
        f"$ref {uri!r} is not in the schema or its registry references; nothing is fetched"
    )


def _rust_violations(errors: Iterator[Any]) -> tuple[Violation, ...]:
    return tuple(
        # evaluation_path goes through $refs as jsonschema's schema paths do; schema_path is
        # where the failing keyword sits in the document, which differs behind a $ref.
        Violation(
            json_pointer(err.instance_path), keyword_of(err.evaluation_path), shorten(err.message)
        )
        for err in islice(errors, MAX_VIOLATIONS)
    )


def compile_rust(doc: SchemaDocument, dialect: Dialect) -> CompiledSchema:
    """``doc`` compiled with jsonschema-rs; ``InvalidSchemaError`` when it does not compile."""
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
        raise invalid_schema(doc, str(exc)) from exc
    return CompiledSchema(
        doc,
        "rust",
        validator.is_valid,
        validator.iter_errors,
        _rust_violations,
        can_recurse(doc.document),
    )
